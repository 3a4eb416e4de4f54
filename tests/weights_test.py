"""Tests for bittensor_jax.weights (SPEC.md §4.2), mirroring bittensor.utils.weight_utils."""
import importlib
import json
import os
import subprocess
import sys
import textwrap

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


def sdk_convert_weights_and_uids_for_emit(uids, weights_):
  """The SDK's `convert_weights_and_uids_for_emit` (SPEC.md §4.2.3) in Python floats (float64).

  The SDK raises on an empty list (`min([])`); here empty gives empty, like an all-zero vector.
  """
  w, u = np.asarray(weights_).tolist(), np.asarray(uids).tolist()
  if not w or sum(w) == 0:
    return [], []
  max_weight = float(max(w))
  w = [float(v) / max_weight for v in w]
  vals = [round(float(v) * int(65535)) for v in w]
  return [i for i, v in zip(u, vals) if v != 0], [v for v in vals if v != 0]


def sdk_process_weights(uids, weights_, n, min_allowed_weights, max_weight_limit,
                        exclude_quantile=0):
  """The SDK's `process_weights` body (SPEC.md §4.2.1), which first casts the weights to float32."""
  weights_ = weights_.astype(np.float32)
  nz = np.argwhere(weights_ > 0).squeeze(axis=1)
  nz_uids, nz_weights = uids[nz], weights_[nz]
  if nz_weights.size == 0 or n < min_allowed_weights:
    final = np.ones(n, dtype=np.int64) / n if n else np.ones(0)
    return np.arange(len(final)), final
  if nz_weights.size < min_allowed_weights:
    w = np.ones(n, dtype=np.int64) * 1e-5
    w[nz] += nz_weights
    normalized = sdk_normalize_max_weight(w, max_weight_limit)
    return np.arange(len(normalized)), normalized
  max_exclude = max(0, len(nz_weights) - min_allowed_weights) / len(nz_weights)
  lowest = np.quantile(nz_weights, min(exclude_quantile / 65535, max_exclude))
  nz_uids, nz_weights = nz_uids[lowest <= nz_weights], nz_weights[lowest <= nz_weights]
  return nz_uids, sdk_normalize_max_weight(nz_weights, max_weight_limit)


def sdk_vectors(count, seed, max_len=256):
  """Random weight vectors: sizes 0..max_len, zeros, ties, huge ranges and exact .5 u16 ties."""
  rng = np.random.default_rng(seed)
  out = []
  for t in range(count):
    n = int(rng.integers(0, max_len + 1))
    kind = t % 5
    if kind == 0:
      x = rng.random(n)
    elif kind == 1:  # many zeros and ties
      x = rng.integers(0, 4, n) / rng.integers(1, 8)
    elif kind == 2:  # huge range
      x = 10.0 ** rng.uniform(-30, 30, n) * (rng.random(n) < 0.8)
    elif kind == 3:  # exact ties x / max * 65535 = k + 1/2
      scale = 2.0 ** int(rng.integers(-20, 20))
      x = (2 * rng.integers(0, 65535, n) + 1) * scale
      if n:
        x[rng.integers(0, n)] = 131070 * scale
    else:  # float32 inputs
      x = (rng.random(n) * (rng.random(n) < 0.7)).astype(np.float32)
    out.append(np.asarray(x, x.dtype if x.dtype == np.float32 else np.float64))
  return out


def sdk_mismatches(vectors, limits):
  """Counts where bittensor_jax differs from the SDK reference, in the current JAX mode.

  `to_u16` must give the SDK's integers for numpy input and for jax input (float32 when x64 is
  off); numpy `normalize_max_weight` and `process_weights` must equal the SDK bit for bit.
  """
  counts = dict(vectors=len(vectors), to_u16_numpy=0, to_u16_jax=0, normalize_numpy=0,
                process_weights=0)
  width = max(len(x) for x in vectors) + 1
  pad = np.zeros((len(vectors), width), np.float32 if not jax.config.jax_enable_x64 else float)
  for i, x in enumerate(vectors):
    pad[i, :len(x)] = x
  jax_values, jax_present = jax.jit(jax.vmap(weights.to_u16))(jnp.asarray(pad))
  jax_values, jax_present = np.asarray(jax_values), np.asarray(jax_present)
  for i, (x, limit) in enumerate(zip(vectors, limits)):
    uids = np.arange(len(x))
    want = sdk_convert_weights_and_uids_for_emit(uids, x)
    values, present = (np.asarray(a) for a in weights.to_u16(x))
    counts["to_u16_numpy"] += (np.flatnonzero(present).tolist(), values[present].tolist()) != want
    x_dev = pad[i, :len(x)]  # what the device sees (float32 without x64)
    want_dev = sdk_convert_weights_and_uids_for_emit(uids, x_dev)
    got_dev = (np.flatnonzero(jax_present[i]).tolist(), jax_values[i][jax_present[i]].tolist())
    counts["to_u16_jax"] += got_dev != want_dev
    y = weights.normalize_max_weight(x, limit)
    want_y = sdk_normalize_max_weight(x, limit)
    counts["normalize_numpy"] += not (y.dtype == want_y.dtype and np.array_equal(y, want_y))
    n = len(x) + int(limit * 4)
    min_allowed = i % 9
    got_u, got_w = weights.process_weights(uids, x, n, min_allowed, limit)
    want_u, want_w = sdk_process_weights(uids, x, n, min_allowed, limit)
    counts["process_weights"] += not (np.array_equal(got_u, want_u) and np.array_equal(got_w, want_w))
  return counts


def sdk_limits(count, seed):
  return np.random.default_rng(seed).choice([0.0, 0.01, 0.05, 0.1, 0.3, 0.5, 1.0], count).tolist()


def test_matches_sdk_reference_x64_on():
  vectors = sdk_vectors(2000, 0)
  counts = sdk_mismatches(vectors, sdk_limits(len(vectors), 0))
  assert counts == dict(vectors=len(vectors), to_u16_numpy=0, to_u16_jax=0, normalize_numpy=0,
                        process_weights=0)


def test_matches_sdk_reference_x64_off():
  """The same comparison in a fresh interpreter with jax_enable_x64 off (a user's default)."""
  code = textwrap.dedent("""
      import json, sys
      sys.path[:0] = sys.argv[1:]
      import jax
      assert not jax.config.jax_enable_x64
      import weights_test as t
      vectors = t.sdk_vectors(2000, 1)
      print(json.dumps(t.sdk_mismatches(vectors, t.sdk_limits(len(vectors), 1))))
  """)
  here = os.path.dirname(os.path.abspath(__file__))
  env = {**os.environ, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  run = subprocess.run([sys.executable, "-c", code, here, os.path.dirname(here)], env=env,
                       capture_output=True, text=True, timeout=600, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  counts = json.loads(run.stdout.strip().splitlines()[-1])
  assert counts == dict(vectors=2000, to_u16_numpy=0, to_u16_jax=0, normalize_numpy=0,
                        process_weights=0)


def test_unclipped_normalize_is_x_over_sum_exactly():
  """The SDK's own test: with limit 1, `normalize_max_weight(x, 1.0)` is `x / x.sum()` bit for bit."""
  rng = np.random.default_rng(3)
  for dtype in (np.float64, np.float32):
    for n in (1, 7, 100, 256):
      x = rng.random(n).astype(dtype)
      y = weights.normalize_max_weight(x, 1.0)
      assert y.dtype == dtype
      np.testing.assert_array_equal(y, x / x.sum())
  x = jnp.asarray(rng.random(33))  # on device: a true division by the device's own sum
  np.testing.assert_array_equal(_normalize_jit(x, 1.0), np.asarray(x) / float(jax.jit(jnp.sum)(x)))


def test_empty_inputs_give_empty_results():
  assert weights.normalize_max_weight([]).shape == (0,)
  assert weights.normalize_max_weight(np.zeros(0), 0.5).shape == (0,)
  assert _normalize_jit(jnp.zeros(0), 0.5).shape == (0,)
  for x in ([], np.zeros(0), jnp.zeros(0)):
    values, present = weights.to_u16(x)
    assert values.shape == present.shape == (0,)
  uids, w = weights.process_weights([], [], 4, 1, 0.5)  # no entries: uniform over n, as the SDK
  np.testing.assert_array_equal(uids, np.arange(4))
  np.testing.assert_array_equal(w, np.full(4, 0.25))
  uids, w = weights.process_weights([], [], 0, 0, 0.5)
  assert uids.shape == w.shape == (0,)
  assert weights.process_weights_dense(jnp.zeros(0), 1, 0.5).shape == (0,)


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
  np.testing.assert_array_equal(w, sdk_normalize_max_weight(raw[uids].astype(np.float32), 0.4))
  dense = np.asarray(_dense_jit(jnp.asarray(raw, jnp.float32), 2, 0.4))
  np.testing.assert_allclose(dense[uids], w, rtol=1e-6)
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
  dense = np.asarray(_dense_jit(jnp.asarray(x, jnp.float32), min_allowed, limit))
  want = np.zeros(n)
  want[uids] = w
  np.testing.assert_allclose(dense, want, rtol=1e-6, atol=1e-9)  # float32, like the SDK
  np.testing.assert_allclose(dense.sum(), 1.0, rtol=1e-6)


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
  try:
    importlib.import_module("bittensor")
  except ImportError:
    pytest.skip("bittensor (the SDK) is not installed")
  except Exception as err:  # noqa: BLE001  (a broken install raises at import)
    pytest.skip(f"bittensor does not import: {err}")
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
