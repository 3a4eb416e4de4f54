"""An independent NumPy float64 oracle of the Subtensor epoch, for differential tests.

Written from /work/shared/spec/SPEC.md (sections 1, 4.2 step 4, 5, 6, Appendix A, pitfalls of 11) and
scenarios/FORMAT.md only, not from `bittensor_jax.chain`: a second, plain reading of the rules to
replay the same scenario files. Loops are fine; clarity over speed.

Fixed point is modelled where SPEC says it decides a result:
  * S and a are I32F32 (SPEC 1.3, 1.5): kept as raw integers `x * 2**32`, truncated, so a share
    below 2**-32 is 0 and a sole share is exactly 1;
  * the consensus median compares cumulative I32F32 stakes with kappa exactly (SPEC 1.7, 1.14);
  * set_weights stores the chain's I32F32 max-upscale with rounding (SPEC 4.2 step 4);
  * integer hyperparameters enter as exact fractions (bonds_moving_average 1e6 gives alpha = 0,
    bonds_penalty 65535 gives beta = 1, and the limits are taken exactly);
  * stored bonds are Q16 = floor(65535 x); amounts are floor(x E).
Everything else is float64.

Usage: `run(doc)` returns one dict per epoch event with the keys of `bittensor_jax.replay.run`
(stake, active, active_stake, validator_permit, consensus, validator_trust, incentive, dividends,
server_emission, validator_emission, emission, bonds), plus `block`, and `rejected`, the list of
(event index, reason) for the extrinsics the chain refuses.
"""
from __future__ import annotations

import copy
import math
from fractions import Fraction
from typing import Callable

import numpy as np

U16 = 65535
ONE = 1 << 32          # I32F32 one
COMMIT_SLOTS = 4

# FORMAT.md hyperparameters and their storage defaults (SPEC section 6, FORMAT.md table).
DEFAULTS = {
    "tempo": 360, "activity_cutoff_factor_milli": 13889, "kappa": 32767,
    "bonds_moving_average": 900000, "bonds_penalty": 65535, "yuma3_enabled": False,
    "liquid_alpha_enabled": False, "alpha_low": 45875, "alpha_high": 58982,
    "alpha_sigmoid_steepness": 1000, "max_allowed_validators": 128, "stake_threshold": 0,
    "immunity_period": 4096, "min_non_immune_uids": 10, "bonds_reset_enabled": False,
    "subnet_owner_uid": None, "weights_set_rate_limit": 0, "min_allowed_weights": 0,
    "max_weights_limit": 65535, "commit_reveal_weights_enabled": False,
    "reveal_period_epochs": 1,
}


def u16_max_upscale(values: list[int]) -> list[int]:
  """`vec_u16_max_upscale_to_u16` in I32F32 (SPEC 4.2 step 4): the largest becomes 65535.

  Max > 32768: ratio = 65535/max (I32F32, truncated), then round(ratio * e); else
  round(e * 65535 / max). Rounding is half away from zero (all values are >= 0).
  """
  if not values:
    return []
  mx = max(values)
  if mx == 0:
    return list(values)
  out = []
  for e in values:
    if mx > 32768:
      raw = ((U16 * ONE) // mx) * e
    else:
      raw = (e * U16 * ONE) // mx
    out.append((raw + ONE // 2) >> 32)
  return out


def _fix_normalize(raw: list[int]) -> list[int]:
  """I32F32 normalization of nonnegative raw values: floor(x * 2^32 / sum); zeros if sum is 0."""
  tot = sum(raw)
  if tot == 0:
    return [0] * len(raw)
  return [(x * ONE) // tot for x in raw]


def _normalize(x: np.ndarray) -> np.ndarray:
  s = x.sum()
  return x / s if s != 0 else x.copy()


def _colnorm(m: np.ndarray) -> np.ndarray:
  s = m.sum(axis=0)
  return np.where(s[None, :] != 0, m / np.where(s == 0, 1, s)[None, :], 0.0)


def _q16(x: np.ndarray) -> np.ndarray:
  return np.floor(U16 * np.clip(x, 0.0, 1.0)).astype(np.int64)


class Oracle:
  """The subnet state of a scenario replay, advanced event by event (SPEC 1, 4.2, 5)."""

  def __init__(self, doc: dict):
    hyper = dict(DEFAULTS)
    hyper.update(doc.get("hyperparameters", {}))
    self.h = hyper
    neurons = doc["neurons"]
    self.cap = int(hyper.get("max_allowed_uids", len(neurons)))
    self.owner = hyper["subnet_owner_uid"]
    n = len(neurons)
    self.n = n
    self.stake = [float(x["stake"]) for x in neurons]
    self.reg = [int(x["registered_at"]) for x in neurons]
    self.upd = [int(x["last_update"]) for x in neurons]
    self.permit = [bool(x.get("validator_permit", False)) for x in neurons]
    self.emission = [0] * n                              # last epoch's amounts (pruning key)
    self.weights: list[dict[int, int]] = [{} for _ in range(n)]   # row -> {col: u16}, presence
    self.bonds = np.zeros((self.cap, self.cap), np.int64)         # stored u16
    self.commits: list[list[tuple]] = [[] for _ in range(n)]      # (values dict, block, count)
    self.last_epoch_block = 0
    self.epoch_count = 0
    self.block = 0

  # ---- extrinsics ---------------------------------------------------------------------------
  def _weights_check(self, uid: int, uids: list[int], values: list[int]) -> str | None:
    """The chain's set_weights checks (SPEC 4.2 step 4); None when the call is accepted."""
    h, n = self.h, self.n
    if not 0 <= uid < n:
      return "hotkey not registered"
    if self.stake[uid] < h["stake_threshold"]:
      return "not enough stake to set weights"
    limit = int(h["weights_set_rate_limit"])
    if limit and self.block - self.upd[uid] < limit:
      return "rate limit"
    self_only = len(uids) == 1 and uids[0] == uid
    if not (self.permit[uid] or self_only or uid == self.owner):
      return "no validator permit"
    if len(set(uids)) != len(uids):
      return "duplicate uids"
    if any(not 0 <= j < n for j in uids):
      return "uid not registered"
    if not self_only and len(uids) < min(n, int(h["min_allowed_weights"])):
      return "weight vector too short"
    mwl = int(h["max_weights_limit"])
    tot = sum(values)
    if mwl != U16 and not self_only and tot > 0 and max(values) * U16 > mwl * tot:
      return "max weight limit exceeded"
    return None

  def _store_row(self, uid: int, uids: list[int], values: list[int]) -> None:
    self.weights[uid] = dict(zip(uids, u16_max_upscale(list(values))))

  def set_weights(self, uid: int, uids: list[int], values: list[int]) -> str | None:
    if self.h["commit_reveal_weights_enabled"]:
      return "commit-reveal is enabled; use commit_weights"
    reason = self._weights_check(uid, uids, values)
    if reason is None:
      self._store_row(uid, uids, values)
      self.upd[uid] = self.block
    return reason

  def commit_weights(self, uid: int, uids: list[int], values: list[int]) -> str | None:
    if not self.h["commit_reveal_weights_enabled"]:
      return "commit-reveal is disabled"
    reason = self._weights_check(uid, uids, values)
    if reason is None:
      if len(self.commits[uid]) >= COMMIT_SLOTS:
        return "too many unrevealed commits"
      self.commits[uid].append((list(uids), list(values), self.block, self.epoch_count))
      self.upd[uid] = self.block
    return reason

  def add_stake(self, uid: int, amount: float) -> str | None:
    if not 0 <= uid < self.n:
      return "hotkey not registered"
    self.stake[uid] = self.stake[uid] + float(amount)
    return None

  def reset_bonds(self, uid: int) -> str | None:
    if not self.h["bonds_reset_enabled"]:
      return "bonds reset disabled"
    if not 0 <= uid < self.n:
      return "hotkey not registered"
    self.bonds[:, uid] = 0
    return None

  def _neuron_to_prune(self) -> int | None:
    """SPEC 5.2 (current): lowest (Emission, r, uid); non-immune only above the floor."""
    b, h = self.block, self.h
    non_immune, immune = [], []
    for j in range(self.n):
      if self.owner is not None and j == self.owner:
        continue                                          # immortal owner hotkey
      key = (self.emission[j], self.reg[j], j)
      (immune if b - self.reg[j] < int(h["immunity_period"]) else non_immune).append(key)
    if len(non_immune) > int(h["min_non_immune_uids"]):
      return min(non_immune)[2]
    if immune:
      return min(immune)[2]
    return None

  def register(self, stake: float) -> tuple[int | None, str | None]:
    b = self.block
    if self.n < self.cap:
      uid = self.n
      self.n += 1
      self.stake.append(float(stake))
      self.reg.append(b)
      self.upd.append(b)
      self.permit.append(False)
      self.emission.append(0)
      self.weights.append({})
      self.commits.append([])
      self.bonds[uid, :] = 0
      self.bonds[:, uid] = 0
      return uid, None
    uid = self._neuron_to_prune()
    if uid is None:
      return None, "no uid available"
    # SPEC 5.3: replace_neuron / clear_neuron.
    self.stake[uid] = float(stake)
    self.reg[uid] = b
    self.upd[uid] = b
    self.permit[uid] = False
    self.emission[uid] = 0
    self.weights[uid] = {}
    self.commits[uid] = []
    self.bonds[uid, :] = 0
    for row in self.weights:
      if uid in row:
        row[uid] = 0                                       # entries kept, value 0
    return uid, None

  # ---- the epoch ------------------------------------------------------------------------------
  def _reveal(self) -> None:
    """CR v4 automatic reveal before an epoch (brief: commit-reveal rule)."""
    period = int(self.h["reveal_period_epochs"])
    for uid in range(self.n):
      keep = []
      for c in self.commits[uid]:
        if self.epoch_count - c[3] >= period:
          self._store_row(uid, c[0], c[1])
        else:
          keep.append(c)
      self.commits[uid] = keep

  def epoch(self, emission: int) -> dict:
    h, n, b = self.h, self.n, self.block
    cr_on = bool(h["commit_reveal_weights_enabled"])
    if cr_on:
      self._reveal()
    owner = self.owner if self.owner is not None and self.owner < n else None
    uids = range(n)

    # 1.2 activity
    cutoff = max((int(h["activity_cutoff_factor_milli"]) * int(h["tempo"])) // 1000, 1)
    active = [self.upd[i] + cutoff >= b for i in uids]

    # 1.3 stake: threshold (owner exempt), I64F64 normalize truncated to I32F32
    theta = h["stake_threshold"]
    s = [Fraction(0) if (i != owner and math.floor(self.stake[i]) < theta)
         else Fraction(self.stake[i]) for i in uids]
    tot = sum(s)
    S_raw = [int((x * ONE) // tot) if tot else 0 for x in s]
    # Diagnostic only: would a float64 ratio s_i / sum(s) land on another I32F32 grid point?
    ftot = float(np.sum(np.array([float(x) for x in s])))
    share_rounding = any(math.floor(float(x) / ftot * ONE) != r for x, r in zip(s, S_raw)
                         ) if ftot else False

    # 1.4 permits
    p = list(self.permit)
    if owner is not None:
      p[owner] = True
    K = int(h["max_allowed_validators"])
    order = sorted(uids, key=lambda i: S_raw[i])        # stable ascending
    drop = set(order[:max(n - K, 0)]) if n >= K else set()
    p_new = [(i not in drop) and S_raw[i] != 0 for i in uids]
    if owner is not None:
      p_new[owner] = True

    # 1.5 active stake
    a_raw = _fix_normalize([S_raw[i] if (active[i] and p[i]) else 0 for i in uids])
    a = np.array(a_raw, np.float64) / ONE
    S = np.array(S_raw, np.float64) / ONE

    # 1.6 weights: masks and row normalization (presence M)
    commit_blk = [min((c[2] for c in self.commits[i]), default=None) if cr_on else None
                  for i in uids]
    M = np.zeros((n, n), bool)
    Wv = np.zeros((n, n), np.float64)
    for i in uids:
      if not p[i]:
        continue
      for j, v in self.weights[i].items():
        if j >= n:
          continue
        if i == j and i != owner:
          continue
        if self.upd[i] <= self.reg[j]:
          continue
        if commit_blk[i] is not None and commit_blk[i] < self.reg[j]:
          continue
        M[i, j] = True
        Wv[i, j] = v
    rs = Wv.sum(axis=1)
    W = np.where(rs[:, None] > 0, Wv / np.where(rs > 0, rs, 1)[:, None], 0.0)

    # 1.7 consensus: stake-weighted median in exact I32F32 cumulative stake
    part = [i for i in uids if a_raw[i] > 0]
    C = np.zeros(n)
    if part:
      sig = _fix_normalize([a_raw[i] for i in part])
      kappa_raw = (int(h["kappa"]) * ONE) // U16
      minority = sum(sig) - kappa_raw
      for j in uids:
        col = sorted(range(len(part)), key=lambda k: W[part[k], j])
        c, val = 0, W[part[col[-1]], j]
        for k in col:
          c += sig[k]
          if c > minority:
            val = W[part[k], j]
            break
        C[j] = val

    # 1.8 clip, trust, incentive
    Wc = np.minimum(W, C[None, :])
    Mc = M & ~((W > C[None, :]) & (C[None, :] <= 0))
    Wc = np.where(Mc, Wc, 0.0)
    Tv = Wc.sum(axis=1)
    R = a @ Wc
    I = _normalize(R)

    # 1.9 bonds penalty
    bp = int(h["bonds_penalty"])
    if bp == 0:
      Wb, Mb = W.copy(), M.copy()
    elif bp == U16:
      Wb, Mb = Wc.copy(), Mc.copy()
    else:
      beta = bp / U16
      Wb = W + beta * (Wc - W)
      Mb = M & (Wb > 0)
      Wb = np.where(Mb, Wb, 0.0)

    # 1.10 bonds
    t0 = self.last_epoch_block + 1 if self.last_epoch_block else max(b - int(h["tempo"]), 0)
    recent = np.array([t0 <= self.reg[j] for j in uids])
    Bq = np.where(recent[None, :], 0, self.bonds[:n, :n])
    bma = int(h["bonds_moving_average"])
    # above 1e6 alpha < 0 and the chain's sparse EMA keeps only positive entries (SPEC 1.10 as
    # the chain's mat_ema_sparse implements it)
    alpha = Fraction(1_000_000 - bma, 1_000_000)
    if not h["yuma3_enabled"]:
      dB = _colnorm(a[:, None] * Wb)
      if alpha == 0:
        Bn = Bq.astype(np.float64)        # colnorm drops out; the stored values never move
      elif alpha == 1:
        Bn = dB
      else:
        Bn = float(alpha) * dB + float(1 - alpha) * _colnorm(Bq.astype(np.float64))
      Bn = _colnorm(np.maximum(Bn, 0.0))
      D = _normalize(Bn @ I)
      if alpha == 0:                      # exact: floor(65535 Bq / colmax Bq)
        cm = Bq.max(axis=0)
        stored = np.where(cm[None, :] > 0, (U16 * Bq) // np.where(cm > 0, cm, 1)[None, :], 0)
      else:
        cm = Bn.max(axis=0)
        ratio = np.where(cm[None, :] > 0, Bn / np.where(cm > 0, cm, 1)[None, :], 0.0)
        stored = _q16(ratio)
    else:
      B0 = Bq / U16
      if h["liquid_alpha_enabled"] and np.any(C != 0):
        lo, hi = int(h["alpha_low"]) / U16, int(h["alpha_high"]) / U16
        steep = int(h["alpha_sigmoid_steepness"]) / 100
        buy = Wb >= B0
        d = np.where(buy, np.clip(Wb - C[None, :], 0, 1), np.clip(B0 - Wb, 0, 1))
        x = np.clip(-steep * (d - 0.5), -20, 20)
        sg = 1.0 / (1.0 + np.exp(x))
        A = np.clip(lo + sg * (hi - lo), lo, hi)
        Bn = np.where(Mb, np.minimum(1.0, (1 - A) * B0 + np.maximum(A * Wb, 0)), 0.0)
        stored = _q16(Bn)
      else:
        if alpha == 0:
          Bn = B0
          stored = Bq.copy()
        elif alpha == 1:
          Bn = Wb.copy()
          stored = _q16(Bn)
        else:
          Bn = np.maximum(float(alpha) * Wb + float(1 - alpha) * B0, 0.0)
          stored = _q16(Bn)
      tb = _colnorm(Bn) @ I
      D = _normalize(a * tb)
    for i in uids:
      if p_new[i]:
        self.bonds[i, :n] = stored[i]
      elif p[i]:
        self.bonds[i, :n] = 0

    # 1.11 emission split
    e = I + D
    tot_e = e.sum()
    if tot_e > 0:
      server, validator, combined = I / tot_e, D / tot_e, _normalize(e)
    else:
      server = np.zeros(n)
      validator = a.copy() if a_raw and any(a_raw) else S.copy()
      combined = validator
    amt = lambda x: [int(math.floor(v * emission)) for v in x]
    out = {
        "block": b, "stake": S.tolist(), "active": list(active), "active_stake": a.tolist(),
        "validator_permit": list(p_new), "consensus": C.tolist(), "validator_trust": Tv.tolist(),
        "incentive": I.tolist(), "dividends": D.tolist(), "server_emission": amt(server),
        "validator_emission": amt(validator), "emission": amt(combined),
        "bonds": self.bonds[:n, :n].tolist(), "share_rounding": share_rounding}
    self.permit = list(p_new)
    self.emission = list(out["emission"])       # copies: later events must not alias the output
    self.last_epoch_block = b
    self.epoch_count += 1
    return out


def run(doc: dict, *, sync_bonds: Callable[[int, list], list] | None = None) -> list[dict]:
  """Replays a FORMAT.md scenario; returns one output dict per epoch event.

  Args:
    doc: the parsed scenario (FORMAT.md), assumed valid.
    sync_bonds: optional `f(epoch_index, bonds) -> bonds`; its result replaces the stored bonds
      after each epoch (a differential test uses it to continue from the other replay's stored
      u16 bonds once they agree within 1 LSB, so floor-boundary drift does not compound).

  Returns:
    A list of dicts (keys of `bittensor_jax.replay.run`, plus `block`; `rejected`: the
    (event index, reason) pairs of refused extrinsics up to that epoch; `share_rounding`: whether
    a float64 stake ratio would round onto a different I32F32 value than the exact one).
  """
  doc = copy.deepcopy(doc)
  st = Oracle(doc)
  outs, rejected = [], []
  for k, ev in enumerate(doc["events"]):
    st.block = int(ev["block"])
    kind = next(x for x in ev if x != "block")
    body = ev[kind]
    reason = None
    if kind == "set_weights":
      reason = st.set_weights(int(body["uid"]), list(body["uids"]), list(body["values"]))
    elif kind == "commit_weights":
      reason = st.commit_weights(int(body["uid"]), list(body["uids"]), list(body["values"]))
    elif kind == "register":
      _, reason = st.register(float(body.get("stake", 0)))
    elif kind == "add_stake":
      reason = st.add_stake(int(body["uid"]), body["amount"])
    elif kind == "reset_bonds":
      reason = st.reset_bonds(int(body["uid"]))
    elif kind == "epoch":
      out = st.epoch(int(body["emission"]))
      out["rejected"] = list(rejected)
      if sync_bonds is not None:
        new = np.asarray(sync_bonds(len(outs), out["bonds"]), np.int64)
        st.bonds[:st.n, :st.n] = new
      outs.append(out)
    else:
      raise ValueError(f"events[{k}]: unknown event {kind!r}")
    if reason is not None:
      rejected.append((k, reason))
  return outs
