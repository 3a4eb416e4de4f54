"""Tests for the test split, test-split evaluation and the n-gram yardstick (issue 9)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import data, evaluation, ngram, scoring
from bittensor_jax.neurons import train, transformer


@pytest.fixture(scope="module")
def shards():
  return data.make_shards(data.load_corpus(), 6, 3, skew=0.5, eval_fraction=0.1, seed=0,
                          amount_spread=4.0, max_server_tokens=50_000, max_eval_tokens=20_000,
                          test_bytes=32_768)


def _overlap(segs_a, segs_b) -> int:
  """Bytes shared by two lists of (doc, start, stop) ranges (padding rows have doc -1)."""
  a = np.asarray(segs_a).reshape(-1, 3)[:, None, :]
  b = np.asarray(segs_b).reshape(-1, 3)[None, :, :]
  both = (a[..., 0] == b[..., 0]) & (a[..., 0] >= 0)
  return int(np.where(both, np.maximum(np.minimum(a[..., 2], b[..., 2])
                                       - np.maximum(a[..., 1], b[..., 1]), 0), 0).sum())


def test_test_split_is_disjoint_from_every_shard_and_validator_text(shards):
  assert shards.test_tokens_T.shape == (32_768,)
  test = shards.test_segments_Rx3
  assert (test[:, 2] - test[:, 1]).sum() == 32_768
  assert _overlap(test, test) == 32_768  # the ranges themselves do not overlap
  assert _overlap(test, shards.server_segments_KxRx3) == 0
  assert _overlap(test, shards.eval_segments_VxRx3) == 0
  assert _overlap(shards.eval_segments_VxRx3, shards.server_segments_KxRx3) == 0
  docs = data.load_corpus()
  first = shards.test_segments_Rx3[0]
  np.testing.assert_array_equal(shards.test_tokens_T[:first[2] - first[1]],
                                docs[first[0]].bytes_T[first[1]:first[2]])


def test_windows_predict_every_byte_once():
  t = np.arange(1, 30) % 256
  w = evaluation.test_windows(t, 4)
  assert w.shape == (7, 5)
  np.testing.assert_array_equal(w[:, 1:].reshape(-1), t[1:29])
  with pytest.raises(ValueError, match="test_bytes"):
    evaluation.test_windows(t[:4], 4)


def test_ngram_is_a_normalised_distribution_that_beats_lower_orders(shards):
  rows = [np.asarray(shards.server_tokens_KxT[k, :int(shards.server_lengths_K[k])])
          for k in range(6)]
  model = ngram.fit(rows, 3)
  for ctx in ((ord("t"), ord("h")), (7, 200)):  # a seen and an unseen context
    seqs = np.array([[ctx[0], ctx[1], c] for c in range(256)])
    p = [np.exp(model.logprobs(s, start=2)[0]) for s in seqs]
    assert sum(p) == pytest.approx(1.0, abs=1e-9)
  test = shards.test_tokens_T[:4000]
  losses = [-ngram.fit(rows, n).logprobs(test, start=2).mean() for n in (1, 2, 3)]
  assert losses[0] > losses[1] > losses[2]
  with pytest.raises(ValueError, match="order"):
    ngram.fit(rows, 8)


def test_evaluate_matches_the_training_loss_and_mixes_answers():
  cfg = transformer.ModelConfig(width=16, depth=1, heads=2, context=8)
  model = transformer.TransformerLM.from_config(cfg)
  params = jax.vmap(lambda i: model.init(jax.random.key(i), jnp.zeros((1, 8), jnp.int32))
                    ["params"])(jnp.arange(3))
  windows = evaluation.test_windows(np.random.default_rng(0).integers(0, 256, 8 * 20 + 1), 8)
  behaviour = jnp.asarray([scoring.HONEST, scoring.OFFLINE])
  out = jax.jit(lambda p, w, m: evaluation.evaluate(p, w, behaviour, m, jax.random.key(0),
                                                    model_cfg=cfg, chunk=8))(
      params, jnp.asarray(windows), jnp.asarray([1.0, 1.0]))
  for m in (0, 2):  # a server and a twin: the training loss on the same windows
    want = train.eval_loss(jax.tree.map(lambda p: p[m], params), jnp.asarray(windows),
                           model_cfg=cfg)
    assert float(out["loss_M"][m]) == pytest.approx(float(want), abs=1e-4)
  assert np.isnan(float(out["loss_M"][1]))  # offline
  # the offline server is not in the ensemble: it is server 0 alone (with the answer floor)
  assert float(out["ensemble_loss"]) == pytest.approx(float(out["loss_M"][0]), abs=1e-4)
  assert 0 < float(out["se_M"][0]) < 0.5 and 0 <= float(out["acc_M"][0]) <= 1


def _full_evaluation(params, windows, behaviour, mix, key, cfg):
  """The evaluation from full log-probs (as before issue 10's third pass): every model's
  log_softmax, each server's sanitised answer (`scoring.answer_logprobs`) drawn per window with
  the window's key fold_in(key, w), the ensemble of the full answers."""
  K = behaviour.shape[0]
  inputs, targets = windows[:, :-1], windows[:, 1:]
  logits = transformer.apply_all(params, inputs, cfg)  # M x W x L x X
  server_b = jnp.where(behaviour == scoring.COPIER, scoring.HONEST, behaviour)
  lp_K, answered = jax.vmap(lambda lg, w: scoring.answer_logprobs(
      lg[:, None], server_b, jax.random.fold_in(key, w)), in_axes=(1, 0))(
          logits[:K], jnp.arange(windows.shape[0]))
  lp_K = lp_K[:, :, 0]  # W x K x L x X
  lp_M = jnp.concatenate([jnp.moveaxis(lp_K, 0, 1), jax.nn.log_softmax(logits[K:], -1)])
  tlp = jnp.take_along_axis(lp_M, targets[None, ..., None], -1)[..., 0]
  acc = (lp_M.argmax(-1) == targets[None]).mean((1, 2))
  ens = jax.vmap(lambda lp, a: scoring.ensemble_logprobs(lp, mix, a))(lp_K, answered)
  ens_tlp = jnp.take_along_axis(ens, targets[..., None], -1)[..., 0]
  return {"loss_M": -tlp.mean((1, 2)), "acc_M": acc, "ensemble_loss": -ens_tlp.mean(),
          "ensemble_acc": (ens.argmax(-1) == targets).mean(), "answered_WxK": answered}


def test_reduced_evaluation_equals_the_full_one_whatever_the_chunk():
  """Issue 10, third pass: `evaluate` reduces each pass at once (no log-softmax of the M models
  kept) and draws window w's noise from fold_in(key, w): its losses, accuracies and ensemble
  equal those of the full log-probs (up to float reduction order) for an honest, a noise, an
  offline and a copier server and two twins, and do not depend on the chunk (8 windows, 3 with
  padding, 64 with more padding than windows)."""
  cfg = transformer.ModelConfig(width=16, depth=1, heads=2, context=8)
  model = transformer.TransformerLM.from_config(cfg)
  params = jax.vmap(lambda i: model.init(jax.random.key(i), jnp.zeros((1, 8), jnp.int32))
                    ["params"])(jnp.arange(6))
  windows = jnp.asarray(evaluation.test_windows(
      np.random.default_rng(1).integers(0, 256, 8 * 20 + 1), 8))
  behaviour = jnp.asarray([scoring.HONEST, scoring.NOISE, scoring.OFFLINE, scoring.COPIER])
  mix, key = jnp.asarray([1.0, 0.5, 1.0, 2.0]), jax.random.key(5)
  want = jax.jit(lambda p, w: _full_evaluation(p, w, behaviour, mix, key, cfg))(params, windows)
  answered = np.asarray(want["answered_WxK"]).all(0)
  np.testing.assert_array_equal(answered, [True, True, False, True])
  for chunk in (8, 3, 64):
    got = jax.jit(lambda p, w, c=chunk: evaluation.evaluate(
        p, w, behaviour, mix, key, model_cfg=cfg, chunk=c))(params, windows)
    live = np.flatnonzero(np.concatenate([answered, [True, True]]))
    np.testing.assert_array_equal(np.isnan(np.asarray(got["loss_M"])), [0, 0, 1, 0, 0, 0])
    for name in ("loss_M", "acc_M"):
      np.testing.assert_allclose(np.asarray(got[name])[live], np.asarray(want[name])[live],
                                 rtol=1e-5, atol=1e-6, err_msg=f"{name} chunk {chunk}")
    for name in ("ensemble_loss", "ensemble_acc"):
      np.testing.assert_allclose(float(got[name]), float(want[name]), rtol=1e-5, atol=1e-6,
                                 err_msg=f"{name} chunk {chunk}")
  # the noise server answers noise: no better than uniform bytes
  assert float(want["loss_M"][1]) > np.log(256)


def test_evaluation_memory_does_not_grow_with_the_models_at_its_chunk():
  """`chunk_for(M)` bounds one pass at `budget` windows of logits whatever M: XLA's temporaries
  of the compiled evaluation of 64 models stay within 2x those of 8 models (the model
  parameters are arguments), where the fixed chunk of 64 windows holds several times more."""
  cfg = transformer.ModelConfig(width=8, depth=1, heads=1, context=8)
  model = transformer.TransformerLM.from_config(cfg)
  windows = jnp.zeros((256, 9), jnp.int32)

  def temp(M, chunk):
    params = jax.vmap(lambda i: model.init(jax.random.key(i), jnp.zeros((1, 8), jnp.int32))
                      ["params"])(jnp.arange(M))
    behaviour = jnp.zeros((M // 2,), jnp.int32).at[0].set(scoring.NOISE)
    f = jax.jit(lambda p, w: evaluation.evaluate(p, w, behaviour, jnp.ones((M // 2,)),
                                                 jax.random.key(0), model_cfg=cfg, chunk=chunk))
    return f.lower(params, windows).compile().memory_analysis().temp_size_in_bytes

  assert evaluation.chunk_for(8) == 64 and evaluation.chunk_for(64) == 8
  assert evaluation.chunk_for(124) == 4 and evaluation.chunk_for(10_000) == 1
  small, large, fixed = temp(8, evaluation.chunk_for(8)), temp(64, evaluation.chunk_for(64)), \
      temp(64, 64)
  assert large < 2 * small, (small, large)
  assert fixed > 4 * large, (large, fixed)
