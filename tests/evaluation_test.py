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
