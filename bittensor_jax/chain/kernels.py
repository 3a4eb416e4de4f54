"""Small pure array functions of the chain's epoch math (docs/chain.md §0, §1, §7, §11).

Every function works under jit and vmap and in float32 or float64 (the dtype of its input).
Sparse chain matrices are dense arrays here plus, where it matters, a boolean presence mask.

Exactness rule (where the chain is exact, this float code is exact too). The chain computes in
fixed point (I32F32, I64F64, I96F32): additions are exact, divisions and products truncate. Some
results are therefore exact in the chain: x / x = 1 (a vector with one nonzero entry normalizes to
exactly 1), u16 / 65535 is exactly 0 and 1 at the ends, 1 - 1000000/1e6 = 0, W + 1 (C - W) = C,
and the floors that follow (Q16, I32F32 truncation, `floor(x E)` amounts) land exactly on the
integer. A float re-implementation misses these by an ulp, which a floor or a renormalization
then turns into a whole u16 step, a rao or a 1.0 (docs/chain.md §1.14). Three rules restore them:
  1. Divisions are true IEEE divisions (`exact_div`): XLA otherwise rewrites `x / broadcast(s)`
     into `x * (1 / s)`, which is off by an ulp for ~15% of `s` (x / x != 1). A correctly
     rounded quotient is exact whenever the exact quotient is representable: x / x = 1, 1 / 2,
     3 / 4, and every u16 / 65535 at 0 and 1 (`u16_proportion`).
  2. Hyperparameters stored as integers are converted from integers: alpha = (1e6 - bma) / 1e6 and
     1 - alpha = bma / 1e6 each from its integer numerator (`ppm_proportions`), so bma = 1e6 gives
     alpha = 0 and 1 - alpha = 1 exactly; an interpolation at r = 0 or 1 returns its end exactly.
  3. Every floor or round onto an integer grid snaps first (`floor_snap`, `round_half_away`): a
     value within `SNAP_ULPS` ulps (of its own magnitude, in its own dtype) below an integer, or of
     a half-integer for rounding, is taken as that point. The chain's value there is exact; a float
     value that close to a grid point is that point plus rounding noise. Values farther away are
     floored unchanged, so a genuinely non-integer product keeps the chain's truncation.
The float32 simulation mode follows the same rules with float32's ulp.

Not reproduced: the chain's truncation of values that are *not* exact. It stores u16 / 65535 as
floor(v 2^32 / 65535) / 2^32 and truncates each product, so for instance a Yuma3 bond re-read and
re-stored with alpha = 0 can lose one LSB per epoch on chain, where this code keeps it (docs/chain.md
§1.14 observes such 1-LSB drifts); these stay inside the 1-LSB tolerance of the vectors.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import jax
import jax.numpy as jnp

U16_MAX = 65535
PPM = 1_000_000
SNAP_ULPS = 8
_TWO32 = 2.0**32


def exact_div(x: jax.Array, y: jax.Array) -> jax.Array:
  """x / y as a true, correctly rounded IEEE division (exactness rule 1 above).

  XLA rewrites a division by a broadcast scalar or row into a multiplication by its reciprocal,
  which is not correctly rounded (x / x can give 1 - ulp). The divisor is broadcast to the full
  shape behind an optimization barrier, so the compiler sees a plain elementwise divide.
  """
  x, y = jnp.asarray(x), jnp.asarray(y)
  shape = jnp.broadcast_shapes(x.shape, y.shape)
  dt = jnp.result_type(x, y)
  return jnp.broadcast_to(x, shape).astype(dt) / jax.lax.optimization_barrier(
      jnp.broadcast_to(y, shape).astype(dt))


def _snap_tol(y: jax.Array) -> jax.Array:
  return SNAP_ULPS * jnp.finfo(y.dtype).eps * jnp.maximum(jnp.abs(y), 1)


def floor_snap(y: jax.Array) -> jax.Array:
  """floor(y), except that y within `SNAP_ULPS` ulps below an integer gives that integer.

  Exactness rule 3 above: `floor(65535 * (1 - ulp))` is 65534 in floats but 65535 in the chain.
  The window is `SNAP_ULPS * eps * |y|`: for Q16 (y <= 65535) it is 1.2e-10, below the chain's
  own resolution there (65535 * 2^-32 steps), so a genuine fixed-point value is never moved; for
  amounts `floor(x E)` it is 1.8e-15 E, so a half rao stays a half (floored) while E < 2.8e14
  (a 360-block epoch at 1 TAO per block is 3.6e11).

  Args:
    y: float array (float32 or float64).

  Returns:
    floor(y) with the snap, same dtype.
  """
  up = jnp.ceil(y)
  return jnp.where(up - y <= _snap_tol(y), up, jnp.floor(y))


def u16_proportion(v: jax.Array, dt) -> jax.Array:
  """A stored u16 proportion v / 65535 (kappa, bonds_penalty, alpha bounds, Yuma3 bonds) in `dt`.

  One correctly rounded division (rule 1): exactly 0 at 0 and exactly 1 at 65535.
  """
  return exact_div(jnp.asarray(v).astype(dt), jnp.asarray(U16_MAX, dt))


def ppm_proportions(ppm: jax.Array, dt) -> tuple[jax.Array, jax.Array]:
  """(1 - ppm / 1e6, ppm / 1e6) from the integer ppm (rule 2), e.g. (alpha, 1 - alpha) of bma.

  Each is one division of an exact integer numerator, so ppm = 1e6 gives exactly (0, 1) and
  ppm = 0 exactly (1, 0), where `1 - ppm / 1e6` in floats leaves a 4.5e-17 residue.
  """
  ppm = jnp.asarray(ppm)
  one = jnp.asarray(PPM, dt)
  return exact_div((PPM - ppm).astype(dt), one), exact_div(ppm.astype(dt), one)


def normalize(x: jax.Array, axis: int | None = None) -> jax.Array:
  """x / sum(x), or x unchanged where the sum is 0 (docs/chain.md §0)."""
  total = x.sum(axis=axis, keepdims=axis is not None)
  return jnp.where(total != 0, exact_div(x, jnp.where(total != 0, total, 1)), x)


def row_normalize(M: jax.Array) -> jax.Array:
  """Each row divided by its sum; zero rows stay zero."""
  return normalize(M, axis=-1)


def col_normalize(M: jax.Array) -> jax.Array:
  """Each column divided by its sum; zero columns stay zero."""
  return normalize(M, axis=-2)


def col_max_upscale(M: jax.Array) -> jax.Array:
  """Each column divided by its maximum; zero columns stay zero."""
  mx = M.max(axis=-2, keepdims=True)
  # The maximum, and every entry equal to it, maps to exactly 1 (rule 1 makes M / mx exact too).
  return jnp.where(mx != 0, jnp.where(M == mx, 1, exact_div(M, jnp.where(mx != 0, mx, 1))), 0)


def vecdiv(x: jax.Array, y: jax.Array) -> jax.Array:
  """Elementwise x / y with x / 0 = 0."""
  return jnp.where(y != 0, exact_div(x, jnp.where(y != 0, y, 1)), 0)


def truncate_i32f32(x: jax.Array) -> jax.Array:
  """Truncates a nonnegative proportion to 32 fractional bits, as I64F64 -> I32F32 does (docs/chain.md §1.3).

  The floor snaps (rule 3), so a share that is exactly 1 in the chain stays 1 here.
  """
  return floor_snap(x * _TWO32) / _TWO32


def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth's TwoSum)."""
  s = a + b
  bb = s - a
  return s, (a - (s - bb)) + (b - bb)


def _two_prod(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(p, e) with p = fl(a b) and p + e = a b exactly (Dekker's product, Veltkamp's split)."""
  def split(x):
    c = 134217729.0 * x  # 2^27 + 1
    hi = c - (c - x)
    return hi, x - hi
  p = a * b
  ah, al = split(a)
  bh, bl = split(b)
  return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _exact_total(x_N: jax.Array) -> tuple[jax.Array, jax.Array]:
  """sum(x_N) as an unevaluated pair hi + lo: pairwise TwoSum, the rounding errors summed apart.

  Exact when the errors add without rounding, e.g. for integer entries (stake in rao) while the
  total stays below 2^106: the chain's own stake total is an exact u64 sum.
  """
  n = x_N.shape[-1]
  size = 1 << max(n - 1, 0).bit_length()
  hi = jnp.concatenate([x_N, jnp.zeros((size - n,), x_N.dtype)])
  lo = jnp.zeros_like(hi)
  while hi.shape[-1] > 1:
    hi, err = _two_sum(hi[0::2], hi[1::2])
    lo = lo[0::2] + lo[1::2] + err
  return _two_sum(hi[0], lo[0])


def i32f32_shares(x_N: jax.Array) -> jax.Array:
  """normalize(x_N) truncated to I32F32, as the chain's I64F64 division then I32F32 cast gives.

  The chain's share is floor(2^32 x_i / sum(x)) / 2^32 with the exact quotient (docs/chain.md
  §1.3), and that is what float64 input gets here: the total is summed exactly (`_exact_total`),
  the quotient estimated in float and the floor decided by the exact sign of
  2^32 x_i - q sum(x) for the candidates next to the estimate. A ratio that float64 rounds to 1
  (1e18 against 1e18 + 1) therefore gives 1 - 2^-32, as on chain, not 1. float32 input (the
  simulation mode) is normalized and truncated in floats (`truncate_i32f32`). A zero total leaves
  x unchanged, like `normalize`.

  Args:
    x_N: nonnegative finite stakes (or shares), shape [N].

  Returns:
    The I32F32 shares, shape [N], dtype of x_N.
  """
  if x_N.dtype != jnp.float64:
    return truncate_i32f32(normalize(x_N))
  t_hi, t_lo = _exact_total(x_N)
  safe_hi = jnp.where(t_hi > 0, t_hi, 1)
  scaled_N = x_N * _TWO32  # exact: a power-of-two scaling
  q0_N = jnp.floor(exact_div(x_N, safe_hi) * _TWO32)

  def remainder_sign(q_N):  # sign of 2^32 x - q (t_hi + t_lo), computed exactly
    p, e = _two_prod(q_N, jnp.broadcast_to(safe_hi, q_N.shape))
    p2, e2 = _two_prod(q_N, jnp.broadcast_to(t_lo, q_N.shape))
    d, ed = _two_sum(scaled_N, -p)
    t, r1 = _two_sum(d, -e)
    t, r2 = _two_sum(t, -p2)
    t, r3 = _two_sum(t, -e2)
    t, r4 = _two_sum(t, ed)
    return jnp.sign(t + (((r1 + r2) + r3) + r4))

  q_N = jnp.where(remainder_sign(q0_N + 1) >= 0, q0_N + 1,
                  jnp.where(remainder_sign(q0_N) >= 0, q0_N, q0_N - 1))
  q_N = jnp.clip(q_N, 0, _TWO32)
  return jnp.where(t_hi > 0, q_N / _TWO32, x_N)


def q16(x: jax.Array) -> jax.Array:
  """Proportion -> stored u16, truncating like `fixed_proportion_to_u16` (docs/chain.md §0)."""
  return floor_snap(U16_MAX * jnp.clip(x, 0, 1)).astype(jnp.int32)


def round_half_away(x: jax.Array) -> jax.Array:
  """Rounds half away from zero, like the chain's fixed-point `round`; the floor snaps (rule 3)."""
  return jnp.sign(x) * floor_snap(jnp.abs(x) + 0.5)


def max_upscale_u16(x: jax.Array) -> jax.Array:
  """Scales so the largest entry becomes 65535, rounding half away from zero.

  The chain has two branches (`vec_max_upscale_to_u16`): above 32768 it multiplies by the ratio
  65535/max, else it divides e*65535 by max. Zero or empty input gives zeros.
  """
  if x.shape[-1] == 0:
    return jnp.zeros(x.shape, jnp.int32)
  mx = x.max(axis=-1, keepdims=True)
  safe = jnp.where(mx > 0, mx, 1)
  big = x * exact_div(jnp.asarray(U16_MAX, x.dtype), safe)
  small = exact_div(x * U16_MAX, safe)
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


def weighted_median_col(stake_V: jax.Array, score_VxK: jax.Array, kappa: jax.Array, *,
                        unit_interval: bool = False, sigma_V: jax.Array | None = None,
                        minority: jax.Array | None = None) -> jax.Array:
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

  With `unit_interval` (scores in [0, 1], as the epoch's row-normalized weights) float64 searches
  the chain's I32F32 grid instead (docs/chain.md §1.14: the epoch's matrices are I32F32): 33 steps
  over the keys floor(2^32 v) find the grid cell of the answer, and a bisection on the float bits
  inside that cell, which runs only while some column holds two different scores in it, finds the
  score itself. The answer is the same as the 64-step search.

  Args:
    stake_V: f[V] stake per row (only its sign matters when `sigma_V` is given).
    score_VxK: f[V, K] scores.
    kappa: the majority fraction (u16 proportion).
    unit_interval: the scores lie in [0, 1] (static).
    sigma_V, minority: the renormalized stake of the participating rows and m, when the caller
      computed them over a larger set of rows (the epoch on R < N rows, docs/chain.md §1.15).

  Returns:
    f[K] the median of each column, dtype of `score_VxK`.
  """
  part_V = stake_V > 0
  if sigma_V is None:
    sigma_V = normalize(jnp.where(part_V, stake_V, 0))
  if minority is None:
    minority = sigma_V.sum() - kappa
  dt = score_VxK.dtype

  def support(v_K):
    return sigma_V @ (score_VxK <= v_K[None, :]).astype(sigma_V.dtype)

  def bisect(_, lo_hi):
    lo, hi = lo_hi
    mid = lo + (hi - lo) // 2
    above = support(_key_float(mid, dt)) > minority
    return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

  if unit_interval and dt == jnp.float64:
    # 1. the I32F32 cell: the smallest key k with sum of stake of rows with key <= k above m
    key_VxK = jnp.floor(score_VxK * _TWO32).astype(jnp.int64)  # exact scaling, monotone
    lo_K = jnp.where(part_V[:, None], key_VxK, 2**34).min(axis=0) - 1
    hi_K = jnp.where(part_V[:, None], key_VxK, -1).max(axis=0)

    def cell_step(_, lo_hi):
      lo, hi = lo_hi
      mid = lo + (hi - lo) // 2
      above = sigma_V @ (key_VxK <= mid[None, :]).astype(sigma_V.dtype) > minority
      return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    _, cell_K = jax.lax.fori_loop(0, 33, cell_step, (lo_K, hi_K))
    # 2. inside the cell: F at the cell's lower edge is <= m and at its largest score is > m
    # (or that is the column's largest score), so bisect the float bits between them
    in_cell = part_V[:, None] & (key_VxK == cell_K[None, :])
    lo_f = _float_key(jnp.where(in_cell, score_VxK, jnp.inf).min(axis=0)) - 1
    hi_f = _float_key(jnp.where(in_cell, score_VxK, -jnp.inf).max(axis=0))
    any_part = part_V.any()
    lo_f = jnp.where(any_part, lo_f, 0)
    hi_f = jnp.where(any_part, hi_f, 1)
    _, hi_K = jax.lax.while_loop(lambda lh: (lh[1] - lh[0] > 1).any(),
                                 lambda lh: bisect(0, lh), (lo_f, hi_f))
  else:
    lo_K = _float_key(jnp.where(part_V[:, None], score_VxK, jnp.inf).min(axis=0)) - 1
    hi_K = _float_key(jnp.where(part_V[:, None], score_VxK, -jnp.inf).max(axis=0))
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
  """A + r (B - A), elementwise; exactly A at r = 0 and exactly B at r = 1 (rule 2).

  In fixed point W + 1 (C - W) is C; in floats it can miss C by an ulp, so two weights clipped to
  the same consensus would give different bonds.
  """
  return jnp.where(r == 1, B, jnp.where(r == 0, A, A + r * (B - A)))


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
