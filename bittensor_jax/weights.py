"""SDK-side weight processing before `set_weights` (docs/chain.md §4.2).

Mirrors `bittensor.utils.weight_utils` of the SDK: `normalize_max_weight`, the value part of
`convert_weights_and_uids_for_emit`, and `process_weights`. The array functions are jittable and
written without Python control flow on values, so validators can call them under `vmap`; the
numpy/Python entry points check their inputs and raise `ValueError` naming the bad argument.

Bit for bit, whatever the JAX mode. numpy/list inputs are computed on the host with NumPy,
exactly as the SDK computes them (float64 for the u16 conversion, the input's dtype for
`normalize_max_weight`), so `jax_enable_x64` does not matter. jax-array inputs are computed on
device: under x64 in float64 with true divisions (the SDK's operations, in its order); without
x64, `to_u16` uses an exact float32 formulation (`_to_u16_f32`) that gives the same integers as
the SDK's float64 arithmetic. Empty inputs are valid and give empty results.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bittensor_jax.chain.kernels import exact_div

U16_MAX = 65535
EPSILON = 1e-7            # SDK `normalize_max_weight` epsilon
MIN_WEIGHT = 1e-5         # SDK floor weight when fewer than `min_allowed_weights` are nonzero


def _is_host(x: Any) -> bool:
  """True for numpy/Python inputs, which get validated (jax arrays may be traced)."""
  return not isinstance(x, jax.Array)


def _check_weights(name: str, x: Any) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
  if np.issubdtype(x.dtype, np.floating) and np.isnan(x).any():
    raise ValueError(f"{name} contains NaN")
  if (x < 0).any():
    raise ValueError(f"{name} contains negative values")
  return x


def _check_limit(name: str, limit: Any) -> None:
  if not 0.0 <= float(limit) <= 1.0:
    raise ValueError(f"{name} must be in [0, 1], got {limit}")


def _float(x: Any) -> jax.Array:
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


@jax.jit
def _normalize_max_weight_masked(x_N: jax.Array, present_N: jax.Array, limit: Any) -> jax.Array:
  """SDK `normalize_max_weight` on the entries in `present_N` only; absent entries give 0.

  Absent entries are zeroed, so they sort first and leave every SDK quantity of the present
  entries unchanged (the `len - i - 1` factors and `len - n_values` count only what follows them);
  only the uniform case needs the present count instead of the full length.
  """
  if x_N.shape[0] == 0:
    return x_N
  x_N = jnp.where(present_N, x_N, 0)
  count = present_N.sum()
  values_N = jnp.sort(x_N)
  total = values_N.sum()
  uniform_N = jnp.where(present_N, exact_div(1, jnp.maximum(count, 1).astype(x_N.dtype)), 0
                        ).astype(x_N.dtype)
  safe_total = jnp.where(total == 0, 1, total)
  estimation_N = exact_div(values_N, safe_total)
  cumsum_N = jnp.cumsum(estimation_N)
  n = x_N.shape[0]
  estimation_sum_N = (n - jnp.arange(n) - 1) * estimation_N
  n_values = (estimation_N / (estimation_sum_N + cumsum_N + EPSILON) < limit).sum()
  cutoff_scale = (limit * cumsum_N[jnp.mod(n_values - 1, n)] - EPSILON) / (
      1 - (limit * (n - n_values)))
  cutoff = cutoff_scale * total
  clipped_N = jnp.where(x_N > cutoff, cutoff, x_N).astype(x_N.dtype)
  clipped_total = clipped_N.sum()
  clipped_N = exact_div(clipped_N, jnp.where(clipped_total == 0, 1, clipped_total))
  plain_total = x_N.sum()  # the SDK divides by the unsorted sum here
  plain_N = exact_div(x_N, jnp.where(plain_total == 0, 1, plain_total))
  out_N = jnp.where(estimation_N.max() <= limit, plain_N, clipped_N)
  return jnp.where((total == 0) | (count * limit <= 1), uniform_N, out_N)


def _sdk_normalize_max_weight(x: np.ndarray, limit: float) -> np.ndarray:
  """The SDK's `normalize_max_weight` on the host in NumPy float64, with the SDK's arithmetic.

  Every floating-point operation is the one the SDK performs, in the same order (sort, shares of
  the sorted values, running sum, tail weights, cutoff count, cutoff), so the result is equal bit
  for bit; only the bookkeeping is written differently.
  """
  n = x.shape[0]
  if x.sum() == 0 or n * limit <= 1:
    return np.ones_like(x) / n if n else x.copy()
  sorted_x = np.sort(x)
  share = sorted_x / sorted_x.sum()
  if share.max() <= limit:
    return x / x.sum()
  running = np.cumsum(share, 0)
  tail = np.array([(n - k - 1) * share[k] for k in range(n)])
  kept = (share / (tail + running + EPSILON) < limit).sum()  # np.int64, as the SDK's count
  scale = (limit * running[kept - 1] - EPSILON) / (1 - (limit * (n - kept)))
  cap = scale * sorted_x.sum()
  clipped = np.where(x > cap, cap, x).astype(x.dtype)  # the cap is stored in x's dtype, as the SDK's
  return clipped / clipped.sum()


def normalize_max_weight(x: Any, limit: Any = 0.1) -> Any:
  """Weights summing to 1 with no entry above `limit` (docs/chain.md §4.2 item 2).

  Exactly the SDK algorithm: uniform when the sum is 0 or `len * limit <= 1`; `x / sum(x)` when
  that already satisfies the limit; otherwise clip at a cutoff found from the sorted cumulative
  shares (with the SDK's epsilon 1e-7, so the max ends slightly below `limit`) and renormalize.

  Args:
    x: nonnegative weights, shape [N], N >= 0 (numpy, list or jax array; jittable).
    limit: the max weight, a proportion in [0, 1].

  Returns:
    Normalized weights, shape [N] (empty for empty `x`). numpy/list input: a numpy array computed
    on the host exactly as the SDK does (the float dtype of `x`, float64 for integers), so
    `normalize_max_weight(x, 1.0)` is bit for bit `x / x.sum()`. jax input: a jax array of the
    float dtype of `x`, computed on device.

  Raises:
    ValueError: for NaN/negative `x` or `limit` outside [0, 1] (numpy/Python inputs only).
  """
  if _is_host(limit):
    _check_limit("limit", limit)
  if _is_host(x):
    x = _check_weights("x", x)
    if not np.issubdtype(x.dtype, np.floating):
      x = x.astype(np.float64)
    return _sdk_normalize_max_weight(x, float(limit) if _is_host(limit) else np.asarray(limit))
  x_N = _float(x)
  return _normalize_max_weight_masked(x_N, jnp.ones(x_N.shape, bool), limit)


def _sdk_to_u16(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`convert_weights_and_uids_for_emit` on the host in float64, like the SDK's Python floats."""
  x64 = x.astype(np.float64)
  if x64.size == 0 or x64.sum() == 0:
    return np.zeros(x64.shape, np.int32), np.zeros(x64.shape, bool)
  values = np.round(x64 / x64.max() * U16_MAX).astype(np.int32)  # numpy divides exactly
  return values, values != 0


def to_u16(x: Any) -> tuple[jax.Array, jax.Array]:
  """Value part of SDK `convert_weights_and_uids_for_emit` (docs/chain.md §4.2 item 3).

  Max-upscale `w / max(w)`, `round(. * 65535)` (half to even, like Python `round`, on the SDK's
  float64 values), and drop the entries that became 0, so explicit zeros are never sent. All
  entries are absent when the sum is 0 or `x` is empty. The integers equal the SDK's in either
  JAX mode: numpy/list input is converted on the host in float64; a jax array is converted in
  float64 under x64 and by the exact float32 formulation `_to_u16_f32` without it.

  Args:
    x: nonnegative weights, shape [N], N >= 0 (jittable for jax arrays).

  Returns:
    (values_N int32 u16 values, 0 where absent; present_N bool mask of the entries sent).
  """
  if _is_host(x):
    values, present = _sdk_to_u16(_check_weights("x", x))
    return jnp.asarray(values), jnp.asarray(present)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.result_type(float))
  if x.shape[-1] == 0:
    return jnp.zeros(x.shape, jnp.int32), jnp.zeros(x.shape, bool)
  if jax.config.jax_enable_x64:
    return _to_u16_f64(x.astype(jnp.float64))
  return _to_u16_f32(x.astype(jnp.float32))


@jax.jit
def _to_u16_f64(x_N: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The SDK's float64 operations in its order: a true division, a product, round half to even."""
  peak = x_N.max()
  values_N = jnp.round(exact_div(x_N, jnp.where(peak == 0, 1, peak)) * U16_MAX).astype(jnp.int32)
  present_N = (values_N != 0) & (peak != 0)
  return jnp.where(present_N, values_N, 0), present_N


def _sdk_tie_rounds_up() -> np.ndarray:
  """For k in 0..65534: does the SDK round an exact tie 65535 x / m = k + 1/2 up?

  At an exact tie x / m is the rational (2k+1) / 131070 whatever x and m are, so the SDK's two
  float64 roundings (of the quotient, then of the product) and its half-to-even `round` depend on
  k alone: one table, built once with the SDK's own float64 operations.
  """
  k = np.arange(U16_MAX, dtype=np.int64)
  q = (2 * k + 1) / np.float64(2 * U16_MAX)   # correctly rounded, as float(x) / float(m) is
  return np.round(q * U16_MAX).astype(np.int64) > k


_TIE_UP_K = _sdk_tie_rounds_up()


def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Knuth's error-free sum: a + b = s + err exactly (round to nearest, no reassociation)."""
  s = a + b
  b_virtual = s - a
  err = (a - (s - b_virtual)) + (b - b_virtual)
  return s, err


def _sign_of_exact_sum(terms: list[jax.Array]) -> jax.Array:
  """Exact sign (-1, 0, 1) of a sum of floats, by Shewchuk's grow-expansion.

  The expansion is nonoverlapping with increasing magnitude, so the sign of the sum is the sign
  of its largest (last) nonzero component.
  """
  expansion: list[jax.Array] = []
  for t in terms:
    q, grown = t, []
    for h in expansion:
      q, err = _two_sum(q, h)
      grown.append(err)
    expansion = grown + [q]
  sign = jnp.zeros_like(terms[0])
  for h in expansion:
    sign = jnp.where(h != 0, jnp.sign(h), sign)
  return sign


@jax.jit
def _to_u16_f32(x_N: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The SDK's integers `round(float64(x / m) * 65535)` from float32 `x`, in float32 only.

  For float32 inputs the SDK's float64 value is within 1e-11 of the exact real 65535 x / m, while
  any non-tie real value is at least 2^-26 (relative) away from a rounding boundary k + 1/2: so
  the SDK rounds like the exact value except at exact ties. Here:
    1. m is scaled to [1, 2) and x with it (powers of two: exact);
    2. a float32 estimate v (error < 0.05) gives the only boundary that can matter, K + 1/2 with
       K = floor(v);
    3. the sign of 131070 x - (2K + 1) m is found exactly: both products are split into six
       products of at most 21 significant bits (exact in float32) and summed as an expansion;
    4. above: K + 1; below: K; an exact tie: the SDK's own float64 outcome for K (a table).
  """
  peak = x_N.max()
  safe = jnp.where(peak > 0, peak, 1)
  _, e = jnp.frexp(safe)
  m = jnp.ldexp(safe, 1 - e)                          # in [1, 2)
  x = jnp.ldexp(x_N, 1 - e)                           # x <= m
  v = exact_div(x, m) * U16_MAX
  K = jnp.clip(jnp.floor(v), 0, U16_MAX)
  c = 2 * K + 1                                       # odd, <= 131071: exact
  c_hi = jnp.floor(c / 512)
  c_lo = c - 512 * c_hi                               # c = 512 c_hi + c_lo, 9 bits each
  m_hi = jnp.floor(m * 2048) / 2048                   # top 12 of m's 24 significant bits
  m_lo = m - m_hi                                     # the other 12
  terms = [131072 * x, -2 * x, -512 * c_hi * m_hi, -512 * c_hi * m_lo, -c_lo * m_hi, -c_lo * m_lo]
  sign = _sign_of_exact_sum(terms)
  tie_up = jnp.asarray(_TIE_UP_K)[jnp.minimum(K, U16_MAX - 1).astype(jnp.int32)]
  values_N = (K + (sign > 0) + ((sign == 0) & tie_up)).astype(jnp.int32)
  present_N = (values_N != 0) & (peak > 0)
  return jnp.where(present_N, values_N, 0), present_N


def process_weights_dense(weights_N: jax.Array, min_allowed_weights: Any,
                          max_weight_limit: Any) -> jax.Array:
  """Dense, jittable `process_weights` over uids 0..N-1, exclude_quantile 0 (chain.md §4.2 item 1).

  Args:
    weights_N: nonnegative raw weights, one per uid of the subnet (N = subnet size `n`).
    min_allowed_weights: the subnet's `MinAllowedWeights`.
    max_weight_limit: `MaxWeightsLimit` as a proportion in [0, 1].

  Returns:
    Processed weights, shape [N], summing to 1; 0 for uids the SDK would not send. Like the SDK's
    arrays, float64 under x64 (the uniform and floored branches are float64 in the SDK; the clipped
    branch is computed in the input's dtype and widened: pass float32 to follow the SDK's cast).
  """
  w_N = _float(weights_N)
  n = w_N.shape[0]
  out_dt = jnp.result_type(w_N.dtype, float)
  if n == 0:
    return w_N.astype(out_dt)
  nonzero_N = w_N > 0
  nonzero = nonzero_N.sum()
  uniform_N = jnp.full((n,), 1 / n, out_dt)
  floored_N = jnp.where(nonzero_N, w_N, 0) + jnp.asarray(MIN_WEIGHT, jnp.result_type(float))
  few_N = _normalize_max_weight_masked(floored_N, jnp.ones(n, bool), max_weight_limit)
  enough_N = _normalize_max_weight_masked(w_N, nonzero_N, max_weight_limit)
  out_N = jnp.where(nonzero < min_allowed_weights, few_N.astype(out_dt), enough_N.astype(out_dt))
  return jnp.where((nonzero == 0) | (n < min_allowed_weights), uniform_N, out_N)


def process_weights(uids: Any, weights: Any, n: int, min_allowed_weights: int,
                    max_weight_limit: float,
                    exclude_quantile: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """SDK `process_weights` (docs/chain.md §4.2 item 1), array level, on numpy, bit for bit.

  - cast the weights to float32, as the SDK does first;
  - keep the nonzero weights;
  - none left (no entries at all included), or `n < min_allowed_weights`: uniform 1/n over all
    uids 0..n-1 (empty when `n` is 0);
  - fewer nonzero than `min_allowed_weights`: every uid gets 1e-5 plus its weight, then
    `normalize_max_weight` over all uids (like the SDK, a weight is added at its *position* in
    `weights`, which is its uid when `uids` is `0..n-1`, the usual call);
  - else drop the weights below the `exclude_quantile / 65535` quantile (at most
    `len - min_allowed_weights` of them), then `normalize_max_weight`.

  Args:
    uids: uids, shape [M] nonnegative ints.
    weights: weights for `uids`, shape [M], nonnegative.
    n: number of neurons in the subnet (>= 0).
    min_allowed_weights: the subnet's `MinAllowedWeights`.
    max_weight_limit: `MaxWeightsLimit` as a proportion in [0, 1].
    exclude_quantile: quantile of the lowest weights to drop, in u16 units like the SDK.

  Returns:
    (uids, weights) numpy arrays to pass to `to_u16`.

  Raises:
    ValueError: on NaN/negative weights, negative uids, mismatched lengths, a limit outside
      [0, 1], or `n < 0`.
  """
  uids = np.asarray(uids, dtype=np.int64) if len(uids) == 0 else np.asarray(uids)
  weights = _check_weights("weights", weights).astype(np.float32)  # the SDK's first step
  if uids.shape != weights.shape:
    raise ValueError(f"uids and weights lengths differ: {uids.shape} vs {weights.shape}")
  if (uids < 0).any():
    raise ValueError("uids contains negative values")
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  _check_limit("max_weight_limit", max_weight_limit)
  keep = np.flatnonzero(weights > 0)
  nz_uids, nz_weights = uids[keep], weights[keep]
  if nz_weights.size == 0 or n < min_allowed_weights:
    return np.arange(n), (np.ones(n, dtype=np.int64) / n if n else np.ones(0))
  if nz_weights.size < min_allowed_weights:
    floored = np.ones(n, dtype=np.int64) * MIN_WEIGHT
    floored[keep] += nz_weights
    return np.arange(n), np.asarray(normalize_max_weight(floored, max_weight_limit))
  max_exclude = max(0, nz_weights.size - min_allowed_weights) / nz_weights.size
  lowest = np.quantile(nz_weights, min(exclude_quantile / U16_MAX, max_exclude))
  kept = lowest <= nz_weights
  return nz_uids[kept], np.asarray(normalize_max_weight(nz_weights[kept], max_weight_limit))
