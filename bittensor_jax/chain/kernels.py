"""Small pure array functions of the chain's epoch math (docs/chain.md §0, §1, §7, §11).

Every function works under jit and vmap and in float32 or float64 (the dtype of its input).
Sparse chain matrices are dense arrays here plus, where it matters, a boolean presence mask.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import jax
import jax.numpy as jnp

U16_MAX = 65535
_TWO32 = 2.0**32


def normalize(x: jax.Array, axis: int | None = None) -> jax.Array:
  """x / sum(x), or x unchanged where the sum is 0 (docs/chain.md §0)."""
  total = x.sum(axis=axis, keepdims=axis is not None)
  return jnp.where(total != 0, x / jnp.where(total != 0, total, 1), x)


def row_normalize(M: jax.Array) -> jax.Array:
  """Each row divided by its sum; zero rows stay zero."""
  return normalize(M, axis=-1)


def col_normalize(M: jax.Array) -> jax.Array:
  """Each column divided by its sum; zero columns stay zero."""
  return normalize(M, axis=-2)


def col_max_upscale(M: jax.Array) -> jax.Array:
  """Each column divided by its maximum; zero columns stay zero."""
  mx = M.max(axis=-2, keepdims=True)
  # The maximum maps to exactly 1 (XLA may divide by multiplying with a reciprocal).
  return jnp.where(mx != 0, jnp.where(M == mx, 1, M / jnp.where(mx != 0, mx, 1)), 0)


def vecdiv(x: jax.Array, y: jax.Array) -> jax.Array:
  """Elementwise x / y with x / 0 = 0."""
  return jnp.where(y != 0, x / jnp.where(y != 0, y, 1), 0)


def truncate_i32f32(x: jax.Array) -> jax.Array:
  """Truncates a nonnegative proportion to 32 fractional bits, as I64F64 -> I32F32 does.

  Source: docs/chain.md §1.3 and §1.14.
  """
  return jnp.floor(x * _TWO32) / _TWO32


def q16(x: jax.Array) -> jax.Array:
  """Proportion -> stored u16, truncating like `fixed_proportion_to_u16` (docs/chain.md §0)."""
  return jnp.floor(U16_MAX * jnp.clip(x, 0, 1)).astype(jnp.int32)


def round_half_away(x: jax.Array) -> jax.Array:
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def max_upscale_u16(x: jax.Array) -> jax.Array:
  """Scales so the largest entry becomes 65535, rounding half away from zero.

  The chain has two branches (`vec_max_upscale_to_u16`): above 32768 it multiplies by the ratio
  65535/max, else it divides e*65535 by max. Zero or empty input gives zeros.
  """
  if x.shape[-1] == 0:
    return jnp.zeros(x.shape, jnp.int32)
  mx = x.max(axis=-1, keepdims=True)
  safe = jnp.where(mx > 0, mx, 1)
  big = x * (U16_MAX / safe)
  small = (x * U16_MAX) / safe
  out = round_half_away(jnp.where(mx > 32768, big, small))
  return jnp.where(mx > 0, jnp.clip(out, 0, U16_MAX), 0).astype(jnp.int32)


def check_max_limited(values: jax.Array, limit: jax.Array, present: jax.Array | None = None):
  """True when max(values / sum(values)) <= limit / 65535 (`check_vec_max_limited`).

  A limit of 65535 means no limit; empty (or all-absent) vectors pass.
  """
  v = values.astype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
  if present is not None:
    v = jnp.where(present, v, 0)
  share = normalize(v, axis=-1)
  return (limit == U16_MAX) | (share.max(axis=-1, initial=0) <= limit / U16_MAX)


def is_topk(x: jax.Array, k: jax.Array, valid: jax.Array | None = None) -> jax.Array:
  """Top-k by value with a stable ascending sort: ties at the boundary, lower uids lose.

  `valid` marks the entries that take part (the others count as absent and are never chosen).
  """
  n_all = x.shape[-1]
  valid = jnp.ones(x.shape, bool) if valid is None else valid
  key = jnp.where(valid, x, -jnp.inf)
  order = jnp.argsort(key, axis=-1, stable=True)
  rank = jnp.zeros_like(order).at[order].set(jnp.arange(n_all))
  n = valid.sum()
  drop = (n_all - n) + jnp.maximum(n - k, 0)
  return valid & (rank >= drop)


def is_topk_nonzero(x: jax.Array, k: jax.Array, valid: jax.Array | None = None) -> jax.Array:
  """`is_topk` that also requires x != 0 (`topk_nonzero`, docs/chain.md §1.4)."""
  return is_topk(x, k, valid) & (x != 0)


def _float_key(x: jax.Array) -> jax.Array:
  """Order-preserving map of floats to signed integers of the same width."""
  it = jnp.int64 if x.dtype == jnp.float64 else jnp.int32
  i = jax.lax.bitcast_convert_type(x, it)
  return jnp.where(i >= 0, i, jnp.iinfo(it).min - i)


def _key_float(k: jax.Array, dt) -> jax.Array:
  i = jnp.where(k >= 0, k, jnp.iinfo(k.dtype).min - k)
  return jax.lax.bitcast_convert_type(i, dt)


def weighted_median_col(stake_V: jax.Array, score_VxK: jax.Array, kappa: jax.Array) -> jax.Array:
  """Stake-weighted median of each column over the rows with stake > 0 (docs/chain.md §1.7).

  Rows with positive stake take part, with their stake renormalized; minority m = sum - kappa.
  The result is the smallest score v of the column whose support F(v) = sum of the stake of rows
  scoring <= v exceeds m (the largest participating score if none does); columns with no
  participating rows give 0. This is the chain's definition, and equals the sort-and-cumsum form of
  docs/chain.md §11 item 11.

  F is a step function that jumps only at the column's scores, so the smallest float with
  F(v) > m is itself a score. It is found by bisection on the bit patterns of the floats (32 steps
  in float32, 64 in float64), each step one compare and one matrix-vector product: several times
  faster than sorting every column, which XLA does slowly on CPU.
  """
  part_V = stake_V > 0
  sigma_V = normalize(jnp.where(part_V, stake_V, 0))
  minority = sigma_V.sum() - kappa
  dt = score_VxK.dtype
  lo_K = _float_key(jnp.where(part_V[:, None], score_VxK, jnp.inf).min(axis=0)) - 1
  hi_K = _float_key(jnp.where(part_V[:, None], score_VxK, -jnp.inf).max(axis=0))

  def support(v_K):
    return sigma_V @ (score_VxK <= v_K[None, :]).astype(sigma_V.dtype)

  def bisect(_, lo_hi):
    lo, hi = lo_hi
    mid = lo + (hi - lo) // 2
    above = support(_key_float(mid, dt)) > minority
    return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

  bits = 64 if dt == jnp.float64 else 32
  _, hi_K = jax.lax.fori_loop(0, bits, bisect, (lo_K, hi_K))
  # Snap to the column's own score: XLA on CPU flushes subnormal floats to zero, so a bisection
  # point just below 0 compares like 0; the smallest participating score >= it is the answer.
  v_K = _key_float(hi_K, dt)
  snapped_K = jnp.where(part_V[:, None] & (score_VxK >= v_K[None, :]), score_VxK, jnp.inf).min(0)
  med_K = jnp.where(jnp.isfinite(snapped_K), snapped_K, v_K)
  return jnp.where(part_V.any(), med_K, 0).astype(dt)


def weighted_median(stake: jax.Array, score: jax.Array, minority: jax.Array) -> jax.Array:
  """1-D stake-weighted median with an explicit minority (`tests/math.rs::weighted_median`)."""
  if score.shape[-1] == 0:
    return jnp.zeros((), score.dtype)
  sigma = normalize(stake)
  kappa = sigma.sum() - minority
  return weighted_median_col(sigma, score[:, None], kappa)[0]


def col_clip(M: jax.Array, threshold_K: jax.Array, present: jax.Array | None = None):
  """min(M_ij, threshold_j); with presence, an entry above a threshold <= 0 is removed."""
  out = jnp.minimum(M, threshold_K[None, :])
  if present is None:
    return out
  gone = (M > threshold_K[None, :]) & (threshold_K[None, :] <= 0)
  return out, present & ~gone


def interpolate(A: jax.Array, B: jax.Array, r: jax.Array) -> jax.Array:
  """A + r (B - A), elementwise."""
  return A + r * (B - A)


def interpolate_sparse(A: jax.Array, B: jax.Array, r: jax.Array):
  """`interpolate`, keeping only entries with a positive result (returns values, presence)."""
  out = interpolate(A, B, r)
  keep = out > 0
  return jnp.where(keep, out, 0), keep


def mat_ema_alpha(new: jax.Array, old: jax.Array, alpha: jax.Array) -> jax.Array:
  """Dense per-entry EMA (1 - alpha) old + alpha new, clamped to [0, 1] (`mat_ema_alpha`)."""
  return jnp.clip((1 - alpha) * old + alpha * new, 0, 1)


def mat_ema_alpha_sparse(new: jax.Array, new_present: jax.Array, old: jax.Array,
                         alpha: jax.Array) -> jax.Array:
  """Sparse EMA: only entries present in `new` survive; an old entry with no new one is dropped.

  B* = min(1, (1 - alpha) old + max(alpha new, 0)) for present entries, 0 elsewhere
  (`math.rs::mat_ema_alpha_sparse`, docs/chain.md §1.10 B).
  """
  val = jnp.minimum(1, (1 - alpha) * old + jnp.maximum(alpha * new, 0))
  return jnp.where(new_present, val, 0)


def sigmoid_safe(x: jax.Array, rho: jax.Array, kappa: jax.Array) -> jax.Array:
  """1 / (1 + exp(-rho (x - kappa))) with the exponent clamped to [-20, 20] like the chain."""
  return 1 / (1 + jnp.exp(jnp.clip(-rho * (x - kappa), -20, 20)))
