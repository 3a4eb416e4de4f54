"""SDK-side weight processing before `set_weights` (docs/chain.md §4.2).

Mirrors `bittensor.utils.weight_utils` of the SDK: `normalize_max_weight`, the value part of
`convert_weights_and_uids_for_emit`, and `process_weights`. The array functions are jittable and
written without Python control flow on values, so validators can call them under `vmap`; the
numpy/Python entry points check their inputs and raise `ValueError` naming the bad argument.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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
  x_N = jnp.where(present_N, x_N, 0)
  count = present_N.sum()
  values_N = jnp.sort(x_N)
  total = values_N.sum()
  uniform_N = jnp.where(present_N, 1 / jnp.maximum(count, 1), 0).astype(x_N.dtype)
  safe_total = jnp.where(total == 0, 1, total)
  estimation_N = values_N / safe_total
  cumsum_N = jnp.cumsum(estimation_N)
  n = x_N.shape[0]
  estimation_sum_N = (n - jnp.arange(n) - 1) * estimation_N
  n_values = (estimation_N / (estimation_sum_N + cumsum_N + EPSILON) < limit).sum()
  cutoff_scale = (limit * cumsum_N[jnp.mod(n_values - 1, n)] - EPSILON) / (
      1 - (limit * (n - n_values)))
  cutoff = cutoff_scale * total
  clipped_N = jnp.where(x_N > cutoff, cutoff, x_N).astype(x_N.dtype)
  clipped_total = clipped_N.sum()
  clipped_N = clipped_N / jnp.where(clipped_total == 0, 1, clipped_total)
  plain_N = x_N / safe_total
  out_N = jnp.where(estimation_N.max() <= limit, plain_N, clipped_N)
  return jnp.where((total == 0) | (count * limit <= 1), uniform_N, out_N)


def normalize_max_weight(x: Any, limit: Any = 0.1) -> jax.Array:
  """Weights summing to 1 with no entry above `limit` (docs/chain.md §4.2 item 2).

  Exactly the SDK algorithm: uniform when the sum is 0 or `len * limit <= 1`; `x / sum(x)` when
  that already satisfies the limit; otherwise clip at a cutoff found from the sorted cumulative
  shares (with the SDK's epsilon 1e-7, so the max ends slightly below `limit`) and renormalize.

  Args:
    x: nonnegative weights, shape [N] (numpy, list or jax array; jittable).
    limit: the max weight, a proportion in [0, 1].

  Returns:
    Normalized weights, shape [N], float dtype of `x`.

  Raises:
    ValueError: for NaN/negative `x` or `limit` outside [0, 1] (numpy/Python inputs only).
  """
  if _is_host(x):
    x = _check_weights("x", x)
  if _is_host(limit):
    _check_limit("limit", limit)
  x_N = _float(x)
  return _normalize_max_weight_masked(x_N, jnp.ones(x_N.shape, bool), limit)


def to_u16(x: Any) -> tuple[jax.Array, jax.Array]:
  """Value part of SDK `convert_weights_and_uids_for_emit` (docs/chain.md §4.2 item 3).

  Max-upscale `w / max(w)`, `round(. * 65535)` (half to even, like Python `round`), and drop the
  entries that became 0, so explicit zeros are never sent. All entries are absent when the sum is 0.

  Args:
    x: nonnegative weights, shape [N] (jittable).

  Returns:
    (values_N int32 u16 values, 0 where absent; present_N bool mask of the entries sent).
  """
  if _is_host(x):
    x = _check_weights("x", x)
  return _to_u16(jnp.asarray(x).astype(jnp.result_type(float)))


@jax.jit
def _to_u16(x_N: jax.Array) -> tuple[jax.Array, jax.Array]:
  peak = x_N.max()
  values_N = jnp.round(x_N / jnp.where(peak == 0, 1, peak) * U16_MAX).astype(jnp.int32)
  present_N = (values_N != 0) & (x_N.sum() != 0)
  return jnp.where(present_N, values_N, 0), present_N


def process_weights_dense(weights_N: jax.Array, min_allowed_weights: Any,
                          max_weight_limit: Any) -> jax.Array:
  """Dense, jittable `process_weights` over uids 0..N-1, exclude_quantile 0 (chain.md §4.2 item 1).

  Args:
    weights_N: nonnegative raw weights, one per uid of the subnet (N = subnet size `n`).
    min_allowed_weights: the subnet's `MinAllowedWeights`.
    max_weight_limit: `MaxWeightsLimit` as a proportion in [0, 1].

  Returns:
    Processed weights, shape [N], summing to 1; 0 for uids the SDK would not send.
  """
  w_N = _float(weights_N)
  n = w_N.shape[0]
  nonzero_N = w_N > 0
  nonzero = nonzero_N.sum()
  uniform_N = jnp.full_like(w_N, 1 / n)
  floored_N = jnp.where(nonzero_N, w_N, 0) + jnp.asarray(MIN_WEIGHT, jnp.result_type(float))
  few_N = _normalize_max_weight_masked(floored_N, jnp.ones(n, bool), max_weight_limit)
  enough_N = _normalize_max_weight_masked(w_N, nonzero_N, max_weight_limit)
  out_N = jnp.where(nonzero < min_allowed_weights, few_N.astype(w_N.dtype), enough_N)
  return jnp.where((nonzero == 0) | (n < min_allowed_weights), uniform_N, out_N)


def process_weights(uids: Any, weights: Any, n: int, min_allowed_weights: int,
                    max_weight_limit: float,
                    exclude_quantile: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """SDK `process_weights` (docs/chain.md §4.2 item 1), array level, on numpy.

  - keep the nonzero weights;
  - none left, or `n < min_allowed_weights`: uniform 1/n over all uids 0..n-1;
  - fewer nonzero than `min_allowed_weights`: every uid gets 1e-5 plus its weight, then
    `normalize_max_weight` over all uids (like the SDK, a weight is added at its *position* in
    `weights`, which is its uid when `uids` is `0..n-1`, the usual call);
  - else drop the weights below the `exclude_quantile / 65535` quantile (at most
    `len - min_allowed_weights` of them), then `normalize_max_weight`.

  Args:
    uids: uids, shape [M] nonnegative ints.
    weights: weights for `uids`, shape [M], nonnegative.
    n: number of neurons in the subnet.
    min_allowed_weights: the subnet's `MinAllowedWeights`.
    max_weight_limit: `MaxWeightsLimit` as a proportion in [0, 1].
    exclude_quantile: quantile of the lowest weights to drop, in u16 units like the SDK.

  Returns:
    (uids, weights) numpy arrays to pass to `to_u16`.

  Raises:
    ValueError: on NaN/negative weights, negative uids, mismatched lengths, a limit outside
      [0, 1], or `n < 1`.
  """
  uids = np.asarray(uids)
  weights = _check_weights("weights", weights)
  if uids.shape != weights.shape:
    raise ValueError(f"uids and weights lengths differ: {uids.shape} vs {weights.shape}")
  if (uids < 0).any():
    raise ValueError("uids contains negative values")
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  _check_limit("max_weight_limit", max_weight_limit)
  keep = np.flatnonzero(weights > 0)
  nz_uids, nz_weights = uids[keep], weights[keep]
  if nz_weights.size == 0 or n < min_allowed_weights:
    return np.arange(n), np.ones(n, dtype=np.int64) / n
  if nz_weights.size < min_allowed_weights:
    floored = np.ones(n, dtype=np.int64) * MIN_WEIGHT
    floored[keep] += nz_weights
    return np.arange(n), np.asarray(normalize_max_weight(floored, max_weight_limit))
  max_exclude = max(0, nz_weights.size - min_allowed_weights) / nz_weights.size
  lowest = np.quantile(nz_weights, min(exclude_quantile / U16_MAX, max_exclude))
  kept = lowest <= nz_weights
  return nz_uids[kept], np.asarray(normalize_max_weight(nz_weights[kept], max_weight_limit))
