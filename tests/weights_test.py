"""Tests for bittensor_jax.weights (SPEC.md §4.2), mirroring bittensor.utils.weight_utils."""
import importlib

import chex
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from bittensor_jax import weights

_normalize_jit = jax.jit(weights.normalize_max_weight)
_to_u16_jit = jax.jit(weights.to_u16)
_dense_jit = jax.jit(weights.process_weights_dense)


def sdk_normalize_max_weight(x, limit=0.1):
  """Line-by-line transcription of the SDK `normalize_max_weight` (SPEC.md §4.2.2), the oracle."""
  epsilon = 1e-7
  weights_ = x.copy()
  values = np.sort(weights_)
  if x.sum() == 0 or x.shape[0] * limit <= 1:
    return np.ones_like(x) / x.shape[0]
  estimation = values / values.sum()
  if estimation.max() <= limit:
    return weights_ / weights_.sum()
  cumsum = np.cumsum(estimation, 0)
  estimation_sum = np.array([(len(values) - i - 1) * estimation[i] for i in range(len(values))])
  n_values = (estimation / (estimation_sum + cumsum + epsilon) < limit).sum()
  cutoff_scale = (limit * cumsum[n_values - 1] - epsilon) / (1 - (limit * (len(estimation) - n_values)))
  cutoff = cutoff_scale * values.sum()
  weights_[weights_ > cutoff] = cutoff
  return weights_ / weights_.sum()


weight_vectors = hnp.arrays(
    np.float64, st.integers(1, 12),
    elements=st.one_of(st.just(0.0), st.floats(1e-3, 100.0)))
limits = st.floats(0.0, 1.0)


@settings(max_examples=100, deadline=None)
@given(weight_vectors, limits)
def test_normalize_max_weight_properties(x, limit):
  y = np.asarray(weights.normalize_max_weight(x, limit))
  np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-9)
  if len(x) * limit > 1:
    assert y.max() <= limit + 1e-6
  order = np.argsort(x, kind="stable")
  assert (np.diff(y[order]) >= -1e-12).all()  # order preserved (ties stay tied)
  np.testing.assert_allclose(np.asarray(_normalize_jit(jnp.asarray(x), limit)), y, rtol=1e-12, atol=0)
  np.testing.assert_allclose(y, sdk_normalize_max_weight(x, limit), rtol=1e-12, atol=1e-15)


@settings(max_examples=5, deadline=None)
@given(weight_vectors, limits)
def test_normalize_max_weight_jit_equals_eager(x, limit):
  with jax.disable_jit():
    eager = np.asarray(weights.normalize_max_weight(jnp.asarray(x), limit))
  np.testing.assert_allclose(np.asarray(_normalize_jit(jnp.asarray(x), limit)), eager, rtol=1e-12)


def test_normalize_max_weight_examples():
  """The two worked examples of SPEC.md 4.2 item 2 (printed there to 5 decimals), zeros ->
  uniform (same item), and a case of exactly len * limit = 1."""
  np.testing.assert_allclose(weights.normalize_max_weight(np.array([1., 2, 3, 4]), 0.3),
                             [0.13333, 0.26667, 0.3, 0.3], atol=1e-5)
  np.testing.assert_allclose(weights.normalize_max_weight(np.array([1., 1, 1, 10]), 0.4),
                             [0.2, 0.2, 0.2, 0.4], atol=1e-5)
  np.testing.assert_allclose(weights.normalize_max_weight(np.zeros(4), 0.4), [0.25] * 4)
  np.testing.assert_allclose(weights.normalize_max_weight(np.array([1., 9]), 0.5), [0.5, 0.5], atol=1e-6)
  x32 = np.array([1, 2, 3, 4], np.float32)
  y32 = weights.normalize_max_weight(x32, 0.3)
  assert y32.dtype == jnp.float32
  np.testing.assert_allclose(y32, sdk_normalize_max_weight(x32, 0.3), rtol=1e-6)


@settings(max_examples=100, deadline=None)
@given(weight_vectors)
def test_to_u16(x):
  values, present = (np.asarray(a) for a in weights.to_u16(x))
  jit_values, jit_present = (np.asarray(a) for a in _to_u16_jit(jnp.asarray(x)))
  np.testing.assert_array_equal(values, jit_values)
  np.testing.assert_array_equal(present, jit_present)
  if x.sum() == 0:
    assert not present.any()
    return
  assert values.max() == 65535 and (values[present] > 0).all() and (values[~present] == 0).all()
  want = [round(float(v) / float(x.max()) * 65535) for v in x]  # the SDK's Python loop
  np.testing.assert_array_equal(values, want)
  np.testing.assert_array_equal(present, np.array(want) != 0)


def test_to_u16_example():
  """The worked example of SPEC.md 4.2 item 3, and an entry that rounds to 0 and is dropped."""
  values, present = weights.to_u16(np.array([0.1, 0.2, 0.3, 0.4]))
  chex.assert_trees_all_equal(values, jnp.array([16384, 32768, 49151, 65535], jnp.int32))
  assert bool(present.all())
  values, present = weights.to_u16(np.array([1e-6, 1.0]))
  assert present.tolist() == [False, True] and values.tolist() == [0, 65535]


def test_process_weights_all_zero_is_uniform():
  uids, w = weights.process_weights(np.arange(3), np.zeros(3), n=5, min_allowed_weights=1,
                                    max_weight_limit=0.5)
  np.testing.assert_array_equal(uids, np.arange(5))
  np.testing.assert_allclose(w, np.full(5, 0.2))
  np.testing.assert_allclose(_dense_jit(jnp.zeros(5), 1, 0.5), np.full(5, 0.2))


def test_process_weights_n_below_min_allowed_is_uniform():
  uids, w = weights.process_weights(np.arange(4), np.array([1., 2, 3, 4]), n=4,
                                    min_allowed_weights=8, max_weight_limit=0.5)
  np.testing.assert_array_equal(uids, np.arange(4))
  np.testing.assert_allclose(w, np.full(4, 0.25))


def test_process_weights_fewer_than_min_allowed():
  raw = np.array([0., 0., 1., 3., 0.])
  uids, w = weights.process_weights(np.arange(5), raw, n=5, min_allowed_weights=3, max_weight_limit=0.5)
  np.testing.assert_array_equal(uids, np.arange(5))
  want = sdk_normalize_max_weight(raw + 1e-5, 0.5)
  np.testing.assert_allclose(w, want, rtol=1e-12)
  assert (w > 0).all() and w.max() <= 0.5
  np.testing.assert_allclose(_dense_jit(jnp.asarray(raw), 3, 0.5), want, rtol=1e-12)


def test_process_weights_keeps_nonzero_and_quantile():
  raw = np.array([0., 2., 1., 3., 0., 4.])
  uids, w = weights.process_weights(np.arange(6), raw, n=6, min_allowed_weights=2, max_weight_limit=0.4)
  np.testing.assert_array_equal(uids, [1, 2, 3, 5])
  np.testing.assert_allclose(w, sdk_normalize_max_weight(raw[uids], 0.4), rtol=1e-12)
  dense = np.asarray(_dense_jit(jnp.asarray(raw), 2, 0.4))
  np.testing.assert_allclose(dense[uids], w, rtol=1e-12)
  assert (dense[[0, 4]] == 0).all()
  # exclude_quantile in u16 units: drop the lowest, but keep at least min_allowed_weights.
  uids, _ = weights.process_weights(np.arange(6), raw, 6, 2, 0.4, exclude_quantile=65535 // 4)
  np.testing.assert_array_equal(uids, [1, 3, 5])
  uids, _ = weights.process_weights(np.arange(6), raw, 6, 3, 0.4, exclude_quantile=65535)
  assert len(uids) == 3


@settings(max_examples=60, deadline=None)
@given(weight_vectors, st.integers(0, 14), limits)
def test_dense_matches_array_level(x, min_allowed, limit):
  n = len(x)
  uids, w = weights.process_weights(np.arange(n), x, n, min_allowed, limit)
  dense = np.asarray(_dense_jit(jnp.asarray(x), min_allowed, limit))
  want = np.zeros(n)
  want[uids] = w
  np.testing.assert_allclose(dense, want, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(dense.sum(), 1.0, rtol=1e-9)


def test_dense_vmaps_over_validators():
  w_VxN = jax.random.uniform(jax.random.key(0), (4, 8)) * (jnp.arange(8) % 3 != 0)
  limit_V = jnp.array([0.2, 0.3, 0.5, 1.0])
  out = jax.jit(jax.vmap(weights.process_weights_dense, in_axes=(0, None, 0)))(w_VxN, 2, limit_V)
  chex.assert_shape(out, (4, 8))
  for v in range(4):
    np.testing.assert_allclose(out[v], weights.process_weights_dense(w_VxN[v], 2, float(limit_V[v])),
                               rtol=1e-6)


def test_bad_input_raises():
  with pytest.raises(ValueError, match="x"):
    weights.normalize_max_weight(np.array([1.0, np.nan]), 0.5)
  with pytest.raises(ValueError, match="limit"):
    weights.normalize_max_weight(np.array([1.0, 2.0]), 1.5)
  with pytest.raises(ValueError, match="x"):
    weights.to_u16(np.array([1.0, -2.0]))
  with pytest.raises(ValueError, match="weights"):
    weights.process_weights(np.arange(2), np.array([1.0, -1.0]), 2, 1, 0.5)
  with pytest.raises(ValueError, match="weights"):
    weights.process_weights(np.arange(2), np.array([1.0, np.nan]), 2, 1, 0.5)
  with pytest.raises(ValueError, match="uids"):
    weights.process_weights(np.arange(3), np.array([1.0, 2.0]), 3, 1, 0.5)
  with pytest.raises(ValueError, match="uids"):
    weights.process_weights(np.array([-1, 0]), np.array([1.0, 2.0]), 3, 1, 0.5)
  with pytest.raises(ValueError, match="max_weight_limit"):
    weights.process_weights(np.arange(2), np.array([1.0, 2.0]), 2, 1, -0.1)


def _sdk_module(name):
  """A module of the optional `bittensor` SDK, or a skip when it is absent or does not import."""
  pytest.importorskip("bittensor")
  try:
    return importlib.import_module(name)
  except Exception as err:  # noqa: BLE001  (torch/numpy mismatches, SDK layout changes etc.)
    pytest.skip(f"{name} does not import: {err}")


def test_against_sdk():
  wu = _sdk_module("bittensor.utils.weight_utils")  # SDK before 11.x
  rng = np.random.default_rng(0)
  for _ in range(50):
    n = int(rng.integers(1, 20))
    x = (rng.random(n) * (rng.random(n) > 0.3)).astype(np.float32)
    limit = float(rng.choice([0.05, 0.1, 0.3, 0.5, 1.0]))
    np.testing.assert_allclose(weights.normalize_max_weight(x, limit),
                               wu.normalize_max_weight(x.copy(), limit), rtol=1e-5, atol=1e-7)
    sdk_uids, sdk_vals = wu.convert_weights_and_uids_for_emit(np.arange(n), x.copy())
    values, present = weights.to_u16(x)
    assert list(np.flatnonzero(np.asarray(present))) == list(sdk_uids)
    assert list(np.asarray(values)[np.asarray(present)]) == list(sdk_vals)
    if not hasattr(wu, "process_weights"):
      continue
    min_allowed = int(rng.integers(0, 8))
    sdk_u, sdk_w = wu.process_weights(np.arange(n), x.copy(), n, min_allowed, limit)
    u, w = weights.process_weights(np.arange(n), x, n, min_allowed, limit)
    np.testing.assert_array_equal(np.asarray(u), np.asarray(sdk_u))
    np.testing.assert_allclose(np.asarray(w), np.asarray(sdk_w), rtol=1e-5, atol=1e-7)


def test_against_sdk_11_intents():
  iw = _sdk_module("bittensor.intents.weights")  # SDK 11.x (SPEC.md section 4.2)
  rng = np.random.default_rng(1)
  for _ in range(200):
    n = int(rng.integers(1, 30))
    x = rng.random(n) * (rng.random(n) > 0.3)
    x[rng.integers(0, n)] += 0.01  # never all zero: the SDK refuses that
    sdk_uids, sdk_vals = iw.normalize(list(range(n)), x.tolist())
    values, present = weights.to_u16(x)
    assert np.flatnonzero(np.asarray(present)).tolist() == sdk_uids
    assert np.asarray(values)[np.asarray(present)].tolist() == sdk_vals
    limit = float(rng.choice([0.05, 0.1, 0.3, 0.5, 1.0]))
    np.testing.assert_allclose(weights.normalize_max_weight(x, limit),
                               iw.clip_to_max_weight(x.tolist(), limit), rtol=1e-9, atol=1e-12)
