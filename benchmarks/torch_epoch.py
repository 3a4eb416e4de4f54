"""The NumPy baseline's epoch (`benchmarks/numpy_epoch.py`) in PyTorch: the `consensus` torch peer.

Researchers simulate Yuma today with torch code that runs one subnet at a time (bactensor's
yuma-simulation, SPEC.md section 8). That package is not installable here, so the peer is this
port: the same math as `numpy_epoch.epoch` (and so as `yuma.epoch`, variant "current": activity,
stake threshold, I32F32 shares, permits, masks, stake-weighted median, clipping, bonds penalty,
classic or Yuma3 bonds with liquid alpha, emission split), written with torch tensor ops, one
subnet per call, in float32 or float64, on the CPU. The benchmark checks that it gives the JAX
epoch's answers before it times anything, and pins torch to one thread (its default of one thread
per core collapses on a shared machine).

Needs the optional `bench` extra (`pip install -e ".[bench]"`); `available()` says whether torch
imports.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import numpy as np

U16 = 65535
TWO32 = 2.0**32


def available() -> bool:
  """True when torch imports (the `bench` extra is installed)."""
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


def _torch():
  import torch  # pylint: disable=import-outside-toplevel
  return torch


def _normalize(t, x, dim=None):
  tot = x.sum() if dim is None else x.sum(dim=dim, keepdim=True)
  return t.where(tot != 0, x / t.where(tot != 0, tot, t.ones_like(tot)), x)


def _floor_snap(t, y):
  up = t.ceil(y)
  tol = 8 * t.finfo(y.dtype).eps * t.clamp(y.abs(), min=1)
  return t.where(up - y <= tol, up, t.floor(y))


def _shares(t, x):
  """normalize then truncate to I32F32 (docs/chain.md §1.3)."""
  return _floor_snap(t, _normalize(t, x) * TWO32) / TWO32


def _topk_nonzero(t, x, k, valid):
  n_all = x.shape[0]
  order = t.sort(t.where(valid, x, t.full_like(x, -float("inf"))), stable=True).indices
  rank = t.empty(n_all, dtype=t.int64)
  rank[order] = t.arange(n_all)
  n = int(valid.sum())
  return valid & (rank >= (n_all - n) + max(n - k, 0)) & (x != 0)


def _median_col(t, a, W, kappa):
  """C_j: the score at the first position where the sorted column's stake cumsum exceeds m."""
  part = a > 0
  if not bool(part.any()):
    return t.zeros(W.shape[1], dtype=W.dtype)
  sigma = _normalize(t, a[part])
  m = sigma.sum() - kappa
  Wp = W[part]
  srt, order = t.sort(Wp, dim=0, stable=True)
  cum = t.cumsum(sigma[order], dim=0)
  over = cum > m
  first = t.argmax(over.to(t.int8), dim=0)
  first = t.where(over.any(dim=0), first, t.full_like(first, Wp.shape[0] - 1))
  return srt[first, t.arange(W.shape[1])]


def from_numpy(s: dict) -> dict:
  """`numpy_epoch.to_numpy`'s dict with its arrays as torch tensors (done once, outside timing)."""
  t = _torch()
  return {k: (v if k == "hyper" else t.as_tensor(np.array(v))) for k, v in s.items()}


def epoch(s: dict, emission: int, dtype=np.float64) -> dict:
  """One epoch of the subnet `s` (from `from_numpy`): the outputs of `yuma.epoch`, by name, as
  NumPy arrays."""
  t = _torch()
  dt = t.float64 if np.dtype(dtype) == np.float64 else t.float32
  h = s["hyper"]
  in_use = s["in_use_N"]
  N = in_use.shape[0]
  uid = t.arange(N)
  b = int(s["block"])
  owner = (uid == h["subnet_owner_uid"]) & in_use
  cutoff = max(h["activity_cutoff_factor_milli"] * h["tempo"] // 1000, 1)
  active = in_use & (s["last_update_N"] + cutoff >= b)
  stake = t.where(in_use, s["stake_N"], t.zeros_like(s["stake_N"]))
  stake = t.where((t.floor(stake) < h["stake_threshold"]) & ~owner, t.zeros_like(stake), stake)
  S = _shares(t, stake.to(dt))
  p = (s["permit_N"] & in_use) | owner
  p_new = _topk_nonzero(t, S, h["max_allowed_validators"], in_use) | owner
  a = _shares(t, S * active * p)

  eye = t.eye(N, dtype=t.bool)
  outdated = s["last_update_N"][:, None] <= s["registered_at_N"][None, :]
  live = in_use[:, None] & in_use[None, :]
  M = (s["has_weight_NxN"] & live & p[:, None] & ~(eye & ~(eye & owner[:, None])) & ~outdated)
  zero = t.zeros((), dtype=dt)
  W = _normalize(t, t.where(M, s["weights_NxN"].to(dt), zero), dim=1)
  kappa = t.tensor(h["kappa"], dtype=dt) / U16
  C = _median_col(t, a, W, kappa)
  Wc = t.minimum(W, C[None, :])
  Mc = M & ~((W > C[None, :]) & (C[None, :] <= 0))
  Tv = Wc.sum(dim=1)
  I = _normalize(t, a @ Wc)
  beta = t.tensor(h["bonds_penalty"], dtype=dt) / U16
  Wb = Wc if beta == 1 else (W if beta == 0 else W + beta * (Wc - W))
  Mb = M if beta == 0 else (Mc if beta == 1 else Wb > 0)

  t0 = int(s["last_epoch_block"]) + 1 if int(s["last_epoch_block"]) != 0 else max(b - h["tempo"], 0)
  keep_old = s["has_bond_NxN"] & ~(t0 <= s["registered_at_N"])[None, :] & live
  Bq = t.where(keep_old, s["bonds_NxN"].to(dt), zero)
  bma = h["bonds_moving_average"]
  alpha = t.tensor(1_000_000 - bma, dtype=dt) / 1e6
  keep = t.tensor(bma, dtype=dt) / 1e6
  if h["yuma3_enabled"]:
    B0 = Bq / U16
    if h["liquid_alpha_enabled"] and bool((C != 0).any()):
      lo = t.tensor(h["alpha_low"], dtype=dt) / U16
      hi = t.tensor(h["alpha_high"], dtype=dt) / U16
      steep = t.tensor(h["alpha_sigmoid_steepness"], dtype=dt) / 100
      d = t.where(Wb >= B0, t.clamp(Wb - C[None, :], 0, 1), t.clamp(B0 - Wb, 0, 1))
      x = t.clamp(-steep * (d - 0.5), -20, 20)
      al = t.minimum(t.maximum(lo + (hi - lo) / (1 + t.exp(x)), lo), hi)
      Bn = t.where(Mb, t.clamp((1 - al) * B0 + t.clamp(al * Wb, min=0), max=1), zero)
    else:
      Bn = alpha * Wb + keep * B0
    D = _normalize(t, a * (_normalize(t, Bn, dim=0) @ I))
    new_bonds = _floor_snap(t, U16 * t.clamp(Bn, 0, 1)).to(t.int32)
  else:
    Bn = _normalize(t, alpha * _normalize(t, a[:, None] * Wb, dim=0)
                    + keep * _normalize(t, Bq, dim=0), dim=0)
    D = _normalize(t, Bn @ I)
    mx = Bn.max(dim=0, keepdim=True).values
    up = t.where(mx != 0, t.where(Bn == mx, t.ones_like(Bn),
                                  Bn / t.where(mx != 0, mx, t.ones_like(mx))), zero)
    new_bonds = _floor_snap(t, U16 * t.clamp(up, 0, 1)).to(t.int32)
  lost = p & ~p_new
  bonds = t.where(p_new[:, None], new_bonds,
                  t.where(lost[:, None], t.zeros_like(new_bonds), s["bonds_NxN"].to(t.int32)))
  bonds = t.where(live, bonds, t.zeros_like(bonds))

  e = I + D
  tot = e.sum()
  fallback = a if a.sum() > 0 else S
  if tot > 0:
    server, validator, combined = I / tot, D / tot, _normalize(t, e)
  else:
    server, validator, combined = t.zeros_like(I), fallback, fallback
  amount = lambda x: _floor_snap(t, x.to(t.float64) * emission).to(t.int64)  # noqa: E731
  out = {"stake_N": S, "active_N": active, "active_stake_N": a, "validator_permit_N": p_new,
         "consensus_N": C, "validator_trust_N": Tv, "incentive_N": I, "dividends_N": D,
         "server_emission_N": amount(server), "validator_emission_N": amount(validator),
         "emission_N": amount(combined), "bonds_NxN": bonds}
  return {k: v.numpy() for k, v in out.items()}
