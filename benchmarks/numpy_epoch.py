"""The epoch of `bittensor_jax.chain.yuma` (variant "current") in plain vectorized NumPy.

The NumPy baseline of the `consensus` benchmark: the same math as `yuma.epoch` (docs/chain.md §1:
activity, stake threshold, I32F32 shares, permits, masks, stake-weighted median, clipping, bonds
penalty, classic or Yuma3 bonds with liquid alpha 2.0, emission split), one subnet per call, in
the dtype given. The median is the sort-and-cumsum form of docs/chain.md §11 item 11. The
benchmark checks that it gives the answers of the JAX epoch before it times anything.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import numpy as np

U16 = 65535
TWO32 = 2.0**32


def _normalize(x, axis=None):
  tot = x.sum(axis=axis, keepdims=axis is not None)
  return np.where(tot != 0, x / np.where(tot != 0, tot, 1), x)


def _floor_snap(y):
  up = np.ceil(y)
  tol = 8 * np.finfo(y.dtype).eps * np.maximum(np.abs(y), 1)
  return np.where(up - y <= tol, up, np.floor(y))


def _shares(x):
  """normalize then truncate to I32F32 (docs/chain.md §1.3)."""
  return _floor_snap(_normalize(x) * TWO32) / TWO32


def _topk_nonzero(x, k, valid):
  n_all = x.shape[0]
  order = np.argsort(np.where(valid, x, -np.inf), kind="stable")
  rank = np.empty(n_all, np.int64)
  rank[order] = np.arange(n_all)
  n = valid.sum()
  return valid & (rank >= (n_all - n) + max(n - k, 0)) & (x != 0)


def _median_col(a, W, kappa):
  """C_j: the score at the first position where the sorted column's stake cumsum exceeds m."""
  part = a > 0
  if not part.any():
    return np.zeros(W.shape[1], W.dtype)
  sigma = _normalize(a[part])
  m = sigma.sum() - kappa
  Wp = W[part]
  order = np.argsort(Wp, axis=0, kind="stable")
  srt = np.take_along_axis(Wp, order, 0)
  cum = np.cumsum(sigma[order], axis=0)
  first = np.argmax(cum > m, axis=0)
  first = np.where((cum > m).any(axis=0), first, Wp.shape[0] - 1)
  return srt[first, np.arange(W.shape[1])]


def to_numpy(subnet) -> dict:
  """The ledger fields the epoch reads, as host NumPy arrays (one subnet, no batch axis)."""
  h = subnet.hyper
  d = {k: np.asarray(getattr(subnet, k)) for k in (
      "in_use_N", "stake_N", "weights_NxN", "has_weight_NxN", "bonds_NxN", "has_bond_NxN",
      "last_update_N", "registered_at_N", "permit_N", "block", "last_epoch_block")}
  d["hyper"] = {k: np.asarray(getattr(h, k)).item() for k in (
      "tempo", "activity_cutoff_factor_milli", "kappa", "bonds_moving_average", "bonds_penalty",
      "yuma3_enabled", "liquid_alpha_enabled", "alpha_low", "alpha_high",
      "alpha_sigmoid_steepness", "max_allowed_validators", "stake_threshold",
      "subnet_owner_uid", "commit_reveal_weights_enabled")}
  if d["hyper"]["commit_reveal_weights_enabled"]:
    raise ValueError("commit_reveal_weights_enabled: the NumPy baseline has no commit-reveal mask")
  return d


def epoch(s: dict, emission: int, dtype=np.float64) -> dict:
  """One epoch of the subnet `s` (from `to_numpy`): the outputs of `yuma.epoch`, by name."""
  dt = np.dtype(dtype)
  h = s["hyper"]
  in_use = s["in_use_N"]
  N = in_use.shape[0]
  uid = np.arange(N)
  b = int(s["block"])
  owner = (uid == h["subnet_owner_uid"]) & in_use
  cutoff = max(h["activity_cutoff_factor_milli"] * h["tempo"] // 1000, 1)
  active = in_use & (s["last_update_N"] + cutoff >= b)
  stake = np.where(in_use, s["stake_N"], 0)
  stake = np.where((np.floor(stake) < h["stake_threshold"]) & ~owner, 0, stake)
  S = _shares(stake.astype(dt))
  p = (s["permit_N"] & in_use) | owner
  p_new = _topk_nonzero(S, h["max_allowed_validators"], in_use) | owner
  a = _shares(S * active * p)

  eye = np.eye(N, dtype=bool)
  outdated = s["last_update_N"][:, None] <= s["registered_at_N"][None, :]
  live = in_use[:, None] & in_use[None, :]
  M = (s["has_weight_NxN"] & live & p[:, None] & ~(eye & ~(eye & owner[:, None])) & ~outdated)
  W = _normalize(np.where(M, s["weights_NxN"].astype(dt), 0), axis=1)
  kappa = dt.type(h["kappa"]) / dt.type(U16)
  C = _median_col(a, W, kappa)
  Wc = np.minimum(W, C[None, :])
  Mc = M & ~((W > C[None, :]) & (C[None, :] <= 0))
  Tv = Wc.sum(axis=1)
  I = _normalize(a @ Wc)
  beta = dt.type(h["bonds_penalty"]) / dt.type(U16)
  Wb = Wc if beta == 1 else (W if beta == 0 else W + beta * (Wc - W))
  Mb = M if beta == 0 else (Mc if beta == 1 else Wb > 0)

  t0 = int(s["last_epoch_block"]) + 1 if s["last_epoch_block"] != 0 else max(b - h["tempo"], 0)
  keep_old = s["has_bond_NxN"] & ~(t0 <= s["registered_at_N"])[None, :] & live
  Bq = np.where(keep_old, s["bonds_NxN"].astype(dt), 0)
  bma = h["bonds_moving_average"]
  alpha, keep = dt.type(1_000_000 - bma) / dt.type(1e6), dt.type(bma) / dt.type(1e6)
  if h["yuma3_enabled"]:
    B0 = Bq / dt.type(U16)
    if h["liquid_alpha_enabled"] and (C != 0).any():
      lo, hi = dt.type(h["alpha_low"]) / dt.type(U16), dt.type(h["alpha_high"]) / dt.type(U16)
      steep = dt.type(h["alpha_sigmoid_steepness"]) / 100
      d = np.where(Wb >= B0, np.clip(Wb - C[None, :], 0, 1), np.clip(B0 - Wb, 0, 1))
      x = np.clip(-steep * (d - dt.type(0.5)), -20, 20)
      al = np.clip(lo + (hi - lo) / (1 + np.exp(x)), lo, hi)
      Bn = np.where(Mb, np.minimum(1, (1 - al) * B0 + np.maximum(al * Wb, 0)), 0)
    else:
      Bn = alpha * Wb + keep * B0
    D = _normalize(a * (_normalize(Bn, axis=0) @ I))
    new_bonds = _floor_snap(U16 * np.clip(Bn, 0, 1)).astype(np.int32)
  else:
    Bn = _normalize(alpha * _normalize(a[:, None] * Wb, axis=0)
                    + keep * _normalize(Bq, axis=0), axis=0)
    D = _normalize(Bn @ I)
    mx = Bn.max(axis=0, keepdims=True)
    up = np.where(mx != 0, np.where(Bn == mx, 1, Bn / np.where(mx != 0, mx, 1)), 0)
    new_bonds = _floor_snap(U16 * np.clip(up, 0, 1)).astype(np.int32)
  lost = p & ~p_new
  bonds = np.where(p_new[:, None], new_bonds, np.where(lost[:, None], 0, s["bonds_NxN"]))
  bonds = np.where(live, bonds, 0).astype(np.int32)

  e = I + D
  tot = e.sum()
  fallback = a if a.sum() > 0 else S
  if tot > 0:
    server, validator, combined = I / tot, D / tot, _normalize(e)
  else:
    server, validator, combined = np.zeros_like(I), fallback, fallback
  amount = lambda x: _floor_snap(x.astype(np.float64) * emission).astype(np.int64)
  return {"stake_N": S, "active_N": active, "active_stake_N": a, "validator_permit_N": p_new,
          "consensus_N": C, "validator_trust_N": Tv, "incentive_N": I, "dividends_N": D,
          "server_emission_N": amount(server), "validator_emission_N": amount(validator),
          "emission_N": amount(combined), "bonds_NxN": bonds}
