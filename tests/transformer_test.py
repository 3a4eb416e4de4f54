"""Tests for bittensor_jax.neurons.transformer: shapes, dtypes, causality, stacking."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax.neurons import transformer

CFG = transformer.ModelConfig(width=32, depth=2, heads=4, context=16, mlp_ratio=2)
apply_all = jax.jit(transformer.apply_all, static_argnums=2)
apply_stacked = jax.jit(transformer.apply_stacked, static_argnums=2)


@pytest.fixture(scope="module")
def params_N():
  return transformer.init_stacked(jax.random.key(0), 3, CFG, seq_len=16)


def _tokens(shape, seed=1):
  return jax.random.randint(jax.random.key(seed), shape, 0, 256, dtype=jnp.int32)


def test_config_hashable_and_stacked_params(params_N):
  assert hash(CFG) == hash(dataclasses.replace(CFG))
  leaves = jax.tree.leaves(params_N)
  assert all(x.shape[0] == 3 and x.dtype == jnp.float32 for x in leaves)
  assert params_N["pos"].shape == (3, 16, 32)
  assert "head" not in params_N  # tied output


def test_apply_all_and_stacked_shapes(params_N):
  q_BxL = _tokens((2, 16))
  logits = apply_all(params_N, q_BxL, CFG)
  assert logits.shape == (3, 2, 16, 256) and logits.dtype == jnp.float32
  stacked = apply_stacked(params_N, jnp.broadcast_to(q_BxL, (3, 2, 16)), CFG)
  np.testing.assert_allclose(stacked, logits, rtol=1e-5, atol=1e-5)
  assert not np.allclose(logits[0], logits[1])  # independent inits
  short = apply_all(params_N, q_BxL[:, :5], CFG)  # any L <= context
  assert short.shape == (3, 2, 5, 256)


def test_apply_all_in_groups_gives_the_same_logits():
  """`group` (issue 10: models run a few at a time on CPU) changes the working set, not the
  answer: 5 models in groups of 2 (a remainder of 1) and of 5 equal one vmap over all."""
  params = transformer.init_stacked(jax.random.key(2), 5, CFG, seq_len=16)
  q_BxL = _tokens((2, 16))
  want = np.asarray(apply_all(params, q_BxL, CFG))
  for group in (2, 5):
    got = jax.jit(transformer.apply_all, static_argnums=(2, 3))(params, q_BxL, CFG, group)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5, err_msg=str(group))


def test_causal(params_N):
  q_BxL = _tokens((2, 16))
  changed = q_BxL.at[:, 10].set((q_BxL[:, 10] + 1) % 256)
  a = apply_all(params_N, q_BxL, CFG)
  b = apply_all(params_N, changed, CFG)
  np.testing.assert_array_equal(a[:, :, :10], b[:, :, :10])
  assert not np.allclose(a[:, :, 10:], b[:, :, 10:])


def test_untied_head():
  cfg = dataclasses.replace(CFG, tied=False, depth=1)
  params = transformer.init_stacked(jax.random.key(2), 2, cfg, seq_len=8)
  assert params["head"]["kernel"].shape == (2, 32, 256)
  assert apply_all(params, _tokens((1, 8)), cfg).shape == (2, 1, 8, 256)
