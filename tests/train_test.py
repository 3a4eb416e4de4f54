"""Tests for bittensor_jax.neurons.train: learning, skipping bad steps, server independence."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import data
from bittensor_jax.neurons import train
from bittensor_jax.neurons import transformer

MODEL = transformer.ModelConfig(width=32, depth=1, heads=2, context=16, mlp_ratio=2)
OPT = train.TrainConfig(lr=1e-2, schedule="constant", warmup_steps=0)
B, L = 8, 16

step_N = jax.jit(jax.vmap(functools.partial(train.local_step, model_cfg=MODEL, train_cfg=OPT)))
eval_N = jax.jit(jax.vmap(functools.partial(train.eval_loss, model_cfg=MODEL)))


@pytest.fixture(scope="module")
def shards():
  return data.make_shards(data.load_corpus(), 3, 1, skew=0.1, eval_fraction=0.1, seed=0,
                          amount_spread=1.0, max_server_tokens=50_000, max_eval_tokens=20_000)


@pytest.fixture(scope="module")
def state():
  params = transformer.init_stacked(jax.random.key(0), 3, MODEL, L)
  return params, train.init_opt_state(params, OPT)


def _batches(shards, seed=0):
  sample = jax.vmap(functools.partial(data.sample_windows, batch=B, seq_len=L))
  keys = jax.random.split(jax.random.key(seed), 3)
  return sample(shards.server_tokens_KxT, shards.server_lengths_K, keys)


def test_local_train_reduces_loss(shards, state):
  params, opt = state
  fn = jax.jit(jax.vmap(functools.partial(
      train.local_train, steps=40, batch=B, seq_len=L, model_cfg=MODEL, train_cfg=OPT)))
  keys = jax.random.split(jax.random.key(1), 3)
  lr_scale_N = jnp.array([1.0, 1.0, 0.0], jnp.float32)  # server 2 does not move
  new, _, metrics = fn(params, opt, shards.server_tokens_KxT, shards.server_lengths_K, keys,
                       lr_scale=lr_scale_N)  # vmap maps keyword arguments over axis 0
  assert metrics["loss"].shape == (3, 40) and not bool(metrics["skipped"].any())
  held = _batches(shards, seed=7)
  before, after = eval_N(params, held), eval_N(new, held)
  assert float(before[0]) > 5.0 and np.all(np.asarray(after[:2]) < np.asarray(before[:2]) - 1.0)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a[2], b[2])


def test_nan_server_is_skipped_others_unaffected(shards, state):
  params, opt = state
  tokens = _batches(shards)
  ones = jnp.ones((3,), jnp.float32)
  clean, _, _ = step_N(params, opt, tokens, ones)
  bad = jax.tree.map(lambda x: x.at[1].set(jnp.nan), params)
  new, new_opt, metrics = step_N(bad, opt, tokens, ones)
  np.testing.assert_array_equal(metrics["skipped"], [False, True, False])
  for a, b, c, d in zip(*map(jax.tree.leaves, (new, clean, bad, params))):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[1], c[1])  # untouched (still NaN), not half-updated
    assert not np.array_equal(a[0], d[0])
  # the inner (clip + AdamW) state of the skipped server is untouched; apply_if_finite counts
  for a, b in zip(jax.tree.leaves(new_opt.inner_state), jax.tree.leaves(opt.inner_state)):
    np.testing.assert_array_equal(a[1], b[1])
  np.testing.assert_array_equal(new_opt.notfinite_count, [0, 1, 0])


def test_gradient_independent_of_other_shards(shards, state):
  params, opt = state
  tokens = _batches(shards)
  perturbed = tokens.at[1].set((tokens[1] * 7 + 3) % 256)
  ones = jnp.ones((3,), jnp.float32)
  a, a_opt, _ = step_N(params, opt, tokens, ones)
  b, b_opt, _ = step_N(params, opt, perturbed, ones)
  for x, y in zip(jax.tree.leaves((a, a_opt)), jax.tree.leaves((b, b_opt))):
    np.testing.assert_array_equal(x[0], y[0])
    np.testing.assert_array_equal(x[2], y[2])
  assert not np.array_equal(a["embed"]["embedding"][1], b["embed"]["embedding"][1])


def test_distillation_term_and_huge_grad_skip(shards, state):
  params, opt = state
  tokens = _batches(shards)
  logits = jax.jit(transformer.apply_stacked, static_argnums=2)(params, tokens[:, :, :-1], MODEL)
  self_teacher = jax.nn.log_softmax(logits, axis=-1)
  uniform = jnp.full(self_teacher.shape, -np.log(256.0), jnp.float32)
  ones = jnp.ones((3,), jnp.float32)
  w = jnp.full((3,), 0.5, jnp.float32)
  _, _, m_self = step_N(params, opt, tokens, ones, self_teacher, w)
  _, _, m_uni = step_N(params, opt, tokens, ones, uniform, w)
  np.testing.assert_allclose(m_self["kl"], 0.0, atol=1e-5)
  assert np.all(np.asarray(m_uni["kl"]) > 1e-4)
  np.testing.assert_allclose(m_uni["loss"], m_uni["ce"] + 0.5 * m_uni["kl"], rtol=1e-6)
  # A gradient norm above TrainConfig.skip_grad_norm (1e6) skips the step, finite or not.
  huge = w.at[0].set(1e12)
  new, _, m_huge = step_N(params, opt, tokens, ones, uniform, huge)
  np.testing.assert_array_equal(m_huge["skipped"], [True, False, False])
  assert np.isfinite(float(m_huge["grad_norm"][0])) and float(m_huge["grad_norm"][0]) > 1e6
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a[0], b[0])


def test_make_optimizer_schedules():
  params = {"w": jnp.ones((3,), jnp.float32)}
  grads = {"w": jnp.full((3,), 100.0, jnp.float32)}
  cfg = train.TrainConfig(lr=0.1, schedule="cosine", warmup_steps=2, total_steps=10,
                          weight_decay=0.0, clip_norm=1.0)
  opt = train.make_optimizer(cfg)
  state = opt.init(params)
  first, state = opt.update(grads, state, params)
  np.testing.assert_array_equal(first["w"], 0.0)  # warmup starts at lr 0
  second, _ = opt.update(grads, state, params)
  np.testing.assert_allclose(second["w"], -0.05, rtol=1e-4)  # half-way through the warmup
  with pytest.raises(ValueError, match="schedule"):
    train.make_optimizer(train.TrainConfig(schedule="linear"))
