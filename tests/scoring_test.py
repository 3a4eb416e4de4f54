"""Tests for bittensor_jax.scoring: behaviours, sanitation, losses, leave-one-out, weights."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import data
from bittensor_jax import scoring

LOG256 = np.log(256.0)
loo = jax.jit(scoring.leave_one_out_value)
ensemble = jax.jit(scoring.ensemble_logprobs)
losses = jax.jit(scoring.loss_scores)


@pytest.fixture(scope="module")
def trained():
  """An honest trained server (smoothed byte bigrams fit on its shard) and a held-out query."""
  shards = data.make_shards(data.load_corpus(), 1, 1, skew=1.0, eval_fraction=0.1, seed=0,
                            amount_spread=1.0, max_server_tokens=200_000, max_eval_tokens=20_000)
  shard = np.asarray(shards.server_tokens_KxT[0, :int(shards.server_lengths_K[0])], np.int64)
  counts = np.ones((256, 256)) * 0.01
  np.add.at(counts, (shard[:-1], shard[1:]), 1.0)
  table = np.log(counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)
  query_BxL1 = np.asarray(data.sample_windows(shards.eval_tokens_VxT[0],
                                              shards.eval_lengths_V[0], jax.random.key(2), 8, 16))
  return jnp.asarray(table[query_BxL1[:, :-1]]), jnp.asarray(query_BxL1[:, 1:])


def _validator(logits_KxBxLxX, targets_BxL, behaviour_K, key, mix_K, prev=None, copy_K=None):
  """Everything one validator computes on one query."""
  lp, answered = scoring.answer_logprobs(logits_KxBxLxX, behaviour_K, key, prev, copy_K)
  loss = scoring.loss_scores(lp, targets_BxL, answered)
  value = scoring.leave_one_out_value(lp, targets_BxL, mix_K, answered)
  return (loss, value, scoring.scores_to_weights(loss, "loss"),
          scoring.scores_to_weights(value, "value"),
          scoring.ensemble_logprobs(lp, mix_K, answered), lp, answered)


validator = jax.jit(_validator)


def test_behaviours_and_sanitation(trained):
  logits_BxLxX, targets_BxL = trained
  nan = jnp.full_like(logits_BxLxX, jnp.nan)
  dead = jnp.full_like(logits_BxLxX, -jnp.inf)  # zero probability everywhere
  logits_K = jnp.stack([logits_BxLxX] * 4 + [nan, dead])
  behaviour_K = jnp.array([scoring.HONEST, scoring.NOISE, scoring.OFFLINE, scoring.COPIER,
                           scoring.HONEST, scoring.HONEST], jnp.int32)
  copy_K = jnp.zeros((6,), jnp.int32)
  loss, value, w_loss, _, _, lp, answered = validator(
      logits_K, targets_BxL, behaviour_K, jax.random.key(3), jnp.ones(6), logits_K, copy_K)
  np.testing.assert_array_equal(answered, [True, True, False, True, False, False])
  assert lp.dtype == jnp.float32 and np.all(np.isfinite(lp))
  loss, value, w_loss = np.asarray(loss), np.asarray(value), np.asarray(w_loss)
  assert loss[0] < LOG256 - 1.0 < loss[1]           # trained honest beats noise
  np.testing.assert_allclose(loss[3], loss[0], rtol=1e-6)  # copier replays server 0
  np.testing.assert_array_equal(loss[[2, 4, 5]], np.float32(scoring.PENALTY))
  np.testing.assert_allclose(w_loss, [0.5, 0, 0, 0.5, 0, 0], atol=1e-6)
  assert np.all(np.isfinite(value)) and np.all(value[[2, 4, 5]] == 0)
  assert value[1] < 0 < value[0]  # noise hurts the ensemble, honest helps it
  # Without previous answers a copier has nothing to send.
  _, answered = jax.jit(scoring.answer_logprobs)(logits_K[:, :1, :2], behaviour_K,
                                                 jax.random.key(3))
  np.testing.assert_array_equal(answered, [True, True, False, False, False, False])


def _synthetic(b=4, l=32, seed=0):
  """G is good on even positions, H on odd ones; server 1 duplicates G; server 3 is offline."""
  rng = np.random.default_rng(seed)
  targets = rng.integers(0, 256, size=(b, l))
  def model(good_parity):
    p = np.full((b, l, 256), 1.0 / 256)
    bi, li = np.nonzero(np.broadcast_to(np.arange(l) % 2 == good_parity, (b, l)))
    p[bi, li] = 0.1 / 255
    p[bi, li, targets[bi, li]] = 0.9
    return np.log(p)
  g, h = model(0), model(1)
  lp = jnp.asarray(np.stack([g, g, h, h]), jnp.float32)
  return lp, jnp.asarray(targets, jnp.int32), jnp.array([True, True, True, False])


def test_leave_one_out_duplicate_vs_unique():
  lp, targets, answered = _synthetic()
  value = np.asarray(loo(lp, targets, jnp.ones(4), answered))
  assert value[2] > 1.0                                   # the unique good server
  assert abs(value[0]) < 0.05 * value[2] and value[0] == pytest.approx(value[1], abs=1e-6)
  assert value[3] == 0.0
  # Same numbers as recomputing the ensemble without each server in a loop.
  full = ensemble(lp, jnp.ones(4), answered)
  def loss(e):
    return -np.mean(np.take_along_axis(np.asarray(e), np.asarray(targets)[..., None], -1))
  for k in range(3):
    without = ensemble(lp, jnp.ones(4), answered.at[k].set(False))
    assert value[k] == pytest.approx(loss(without) - loss(full), abs=1e-5)
  weights = np.asarray(scoring.scores_to_weights(jnp.asarray(value), "value"))
  np.testing.assert_allclose(weights, [0, 0, 1, 0], atol=1e-6)


def test_ensemble_of_nothing_is_uniform():
  lp, targets, _ = _synthetic()
  none = jnp.zeros((4,), bool)
  np.testing.assert_allclose(ensemble(lp, jnp.ones(4), none), -LOG256,
                             rtol=1e-6)
  value = loo(lp, targets, jnp.ones(4), none)
  np.testing.assert_array_equal(value, 0.0)
  sole = jnp.array([False, False, True, False])  # a lone server is worth log 256 - its loss
  v = loo(lp, targets, jnp.ones(4), sole)
  want = LOG256 - float(losses(lp, targets, sole)[2])
  assert float(v[2]) == pytest.approx(want, abs=1e-5)


def test_update_scores_and_weights():
  ema = jnp.array([1.0, 2.0, 3.0], jnp.float32)
  new = jnp.array([3.0, jnp.nan, 5.0], jnp.float32)
  out = scoring.update_scores(ema, new, jnp.array([True, True, False]), 0.5)
  np.testing.assert_allclose(out, [2.0, 2.0, 3.0])
  useless = jnp.array([6.0, 11.0, jnp.inf], jnp.float32)
  np.testing.assert_array_equal(scoring.scores_to_weights(useless, "loss"), 0.0)
  np.testing.assert_array_equal(scoring.scores_to_weights(-jnp.ones(3), "value"), 0.0)
  w = np.asarray(scoring.scores_to_weights(jnp.array([2.0, 2.1, 9.0]), "loss", temperature=0.1))
  assert w[0] > w[1] > 0 == w[2] and w.sum() == pytest.approx(1.0)


def test_sample_subset():
  masks = jax.jit(jax.vmap(lambda k: scoring.sample_subset(k, 10, 3)))(
      jax.random.split(jax.random.key(0), 50))
  np.testing.assert_array_equal(masks.sum(axis=1), 3)
  assert masks.any(axis=0).all()


def test_vmap_over_validators_equals_loop():
  v, k, b, l = 3, 6, 8, 16  # per-validator shapes as above, so `validator` is compiled once
  rng = np.random.default_rng(0)
  logits = jnp.asarray(3 * rng.standard_normal((v, k, b, l, 256)), jnp.float32)
  logits = logits.at[1, 2].set(jnp.nan)
  prev = jnp.asarray(rng.standard_normal((v, k, b, l, 256)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 256, (v, b, l)), jnp.int32)
  behaviour = jnp.array([[0, 1, 2, 0, 3, 0], [0, 0, 0, 2, 0, 3], [1, 1, 0, 0, 3, 3]], jnp.int32)
  copy = jnp.array([[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 4], [0, 0, 0, 0, 5, 2]], jnp.int32)
  mix = jnp.asarray(rng.uniform(size=(v, k)), jnp.float32)
  vkeys = jax.random.split(jax.random.key(0), v)
  batched = jax.jit(jax.vmap(_validator))(logits, targets, behaviour, vkeys, mix, prev, copy)
  assert not bool(batched[-1][1, 2])  # the NaN answer was dropped
  for i in range(v):
    single = validator(logits[i], targets[i], behaviour[i], vkeys[i], mix[i], prev[i], copy[i])
    for x, y in zip(batched, single):
      np.testing.assert_allclose(x[i], y, rtol=1e-5, atol=1e-5)
      assert np.all(np.isfinite(x[i]))


# ---- Shapley, delta, copy detection, newcomer prior (issue 9) ------------------------------

def _random_answers(seed, K=3, B=2, L=5, X=7):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(K, B, L, X)).astype(np.float32) * 2
  lp = jax.nn.log_softmax(jnp.asarray(logits), -1)
  return lp, jnp.asarray(rng.integers(0, X, (B, L)))


def _exact_shapley(lp, targets, mix, answered):
  """phi_k = sum over S not containing k of |S|! (K-|S|-1)! / K! [v(S+k) - v(S)]."""
  import itertools, math
  K = lp.shape[0]
  tlp = scoring.target_logprobs(lp, targets).reshape(K, -1)
  w = jnp.where(jnp.asarray(answered), jnp.asarray(mix, jnp.float32), 0.0)
  v = lambda S: float(scoring.mixture_gain(tlp, w, jnp.asarray([i in S for i in range(K)])))
  phi = np.zeros(K)
  for k in range(K):
    others = [j for j in range(K) if j != k]
    for r in range(K):
      for S in itertools.combinations(others, r):
        c = math.factorial(r) * math.factorial(K - r - 1) / math.factorial(K)
        phi[k] += c * (v(set(S) | {k}) - v(set(S)))
  return phi


def test_shapley_over_all_orderings_is_the_exact_shapley_value():
  import itertools
  lp, targets = _random_answers(0)
  mix = np.array([0.5, 0.3, 0.2], np.float32)
  answered = np.array([True, True, True])
  perms = jnp.asarray(list(itertools.permutations(range(3))))
  got = np.asarray(scoring.shapley_value(lp, targets, mix, answered, perms))
  np.testing.assert_allclose(got, _exact_shapley(lp, targets, mix, answered), atol=2e-5)
  # a server that does not answer is in no coalition and gets exactly 0
  answered[1] = False
  got = np.asarray(scoring.shapley_value(lp, targets, mix, answered, perms))
  assert got[1] == 0.0
  np.testing.assert_allclose(got, _exact_shapley(lp, targets, mix, answered), atol=2e-5)


def test_sampled_shapley_is_efficient_and_antithetic():
  lp, targets = _random_answers(1, K=5)
  mix = np.full(5, 0.2, np.float32)
  answered = np.array([True] * 5)
  perms = scoring.sample_permutations(jax.random.key(0), 5, 8)
  np.testing.assert_array_equal(np.asarray(perms[4:]), np.asarray(perms[:4])[:, ::-1])
  assert sorted(np.asarray(perms[0]).tolist()) == list(range(5))
  phi = np.asarray(scoring.shapley_value(lp, targets, mix, answered, perms))
  tlp = scoring.target_logprobs(lp, targets).reshape(5, -1)
  total = float(scoring.mixture_gain(tlp, jnp.asarray(mix), jnp.ones(5, bool)))
  assert phi.sum() == pytest.approx(total, abs=2e-5)
  with pytest.raises(ValueError, match="shapley_permutations"):
    scoring.sample_permutations(jax.random.key(0), 5, 3)


def test_delta_value_is_the_improvement_over_the_network_model():
  got = scoring.delta_value(jnp.float32(2.5), jnp.asarray([2.0, 3.0, 2.5]),
                            jnp.asarray([True, True, False]))
  np.testing.assert_allclose(np.asarray(got), [0.5, -0.5, 0.0])


def test_lagging_copy_is_caught_and_a_same_block_duplicate_is_not():
  rng = np.random.default_rng(0)
  H, K, P = 4, 4, 6
  past = rng.normal(size=(H, K, P)).astype(np.float32)
  probe = rng.normal(size=(K, P)).astype(np.float32)
  probe[2] = past[2, 0]          # server 2 answers what server 0 answered 3 blocks ago
  probe[3] = probe[1]            # server 3 duplicates server 1 in the same block: not evidence
  past[0, 1] = np.nan            # no answer: never matches
  caught = scoring.lagging_copies(jnp.asarray(probe), jnp.asarray(past), jnp.ones(K, bool))
  np.testing.assert_array_equal(np.asarray(caught), [False, False, True, False])
  # its own earlier answer is no evidence either (a server that did not move)
  probe = rng.normal(size=(K, P)).astype(np.float32)
  probe[0] = past[1, 0]
  caught = scoring.lagging_copies(jnp.asarray(probe), jnp.asarray(past), jnp.ones(K, bool))
  assert not bool(caught[0])


def test_newcomer_prior_is_the_mean_of_the_servers_that_count():
  fresh = jnp.asarray([False, False, False, True])
  got = scoring.newcomer_prior(jnp.asarray([0.3, 0.1, 0.0, 0.0]), fresh, "value")
  np.testing.assert_allclose(np.asarray(got), [0.3, 0.1, 0.0, 0.2])
  got = scoring.newcomer_prior(jnp.asarray([2.0, 3.0, 11.0, 1.0]), fresh, "loss")
  np.testing.assert_allclose(np.asarray(got), [2.0, 3.0, 11.0, 2.5])


def test_answer_target_logprobs_equal_the_full_answers(trained):
  """The reduced answers (issue 10) are the full path's target log-probs and answered flags,
  up to float reduction order, for every behaviour and for broken answers: NaN, +inf, a row
  with no mass, and a server whose logits hold a -inf byte (still answering)."""
  logits_BxLxX, targets_BxL = trained
  rng = np.random.default_rng(5)
  raw = jnp.asarray(rng.normal(size=logits_BxLxX.shape) * 2, jnp.float32)
  holes = logits_BxLxX.at[:, :, 7].set(-jnp.inf)
  logits_K = jnp.stack([logits_BxLxX, raw, raw, logits_BxLxX.at[1, 2, 3].set(jnp.nan),
                        logits_BxLxX.at[0, 0, 0].set(jnp.inf), logits_BxLxX.at[2, 1].set(-jnp.inf),
                        holes, raw])
  h, n, o = scoring.HONEST, scoring.NOISE, scoring.OFFLINE
  behaviour_K = jnp.array([h, n, o, h, h, h, h, n], jnp.int32)
  key = jax.random.key(11)
  lp, want_answered = jax.jit(scoring.answer_logprobs)(logits_K, behaviour_K, key)
  want = np.asarray(scoring.target_logprobs(lp, targets_BxL))
  np.testing.assert_array_equal(want_answered, [1, 1, 0, 0, 0, 0, 1, 1])
  reduce = jax.jit(scoring.answer_target_logprobs, static_argnums=4)
  for slots in (None, (1, 7), (1, 2, 7)):
    got, answered = reduce(logits_K, targets_BxL, behaviour_K, key, slots)
    np.testing.assert_array_equal(answered, want_answered, err_msg=str(slots))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6, err_msg=str(slots))
  # a noise server outside `noise_slots` answers with its logits: the slots matter
  got, _ = reduce(logits_K, targets_BxL, behaviour_K, key, (1,))
  assert not np.allclose(np.asarray(got)[7], want[7], atol=1e-3)


def test_target_logprob_scorers_equal_the_full_ones(trained):
  """Loss, mixture fit, leave-one-out, Shapley and the ensemble from target log-probs alone
  equal the functions on full answers (so the network step never needs the full tensor)."""
  logits_BxLxX, targets_BxL = trained
  rng = np.random.default_rng(2)
  logits_K = jnp.stack([logits_BxLxX * s for s in (1.0, 0.5, 2.0)] + [jnp.asarray(
      rng.normal(size=logits_BxLxX.shape), jnp.float32)])
  lp, answered = scoring.answer_logprobs(logits_K, jnp.zeros(4, jnp.int32), jax.random.key(0))
  answered = answered.at[2].set(False)
  tlp = scoring.target_logprobs(lp, targets_BxL)
  mix = jnp.asarray([0.4, 0.3, 0.2, 0.1], jnp.float32)
  perms = scoring.sample_permutations(jax.random.key(4), 4, 6)
  pairs = [
      (scoring.loss_scores(lp, targets_BxL, answered), scoring.loss_scores_tlp(tlp, answered)),
      (scoring.fit_mixture(lp, targets_BxL, answered, mix, 3),
       scoring.fit_mixture_tlp(tlp, answered, mix, 3)),
      (scoring.leave_one_out_value(lp, targets_BxL, mix, answered),
       scoring.leave_one_out_value_tlp(tlp, mix, answered)),
      (scoring.shapley_value(lp, targets_BxL, mix, answered, perms),
       scoring.shapley_value_tlp(tlp, mix, answered, perms)),
      (scoring.target_logprobs(scoring.ensemble_logprobs(lp, mix, answered)[None], targets_BxL)[0],
       scoring.ensemble_tlp(tlp, mix, answered)),
  ]
  for i, (full, reduced) in enumerate(pairs):
    assert np.isfinite(np.asarray(full)).all() and np.abs(np.asarray(full)).max() > 0, i
    np.testing.assert_allclose(np.asarray(reduced), np.asarray(full), rtol=1e-5, atol=1e-6,
                               err_msg=str(i))


def test_noise_answers_are_drawn_per_slot_with_the_documented_distribution():
  """NOISE answers (issue 10, third pass): server k's draw depends on its slot only (a subset of
  the slots gives the same rows as all of them), and every draw is `noise_scale` times a
  standard normal, independent across slots. Tolerances are 6 standard errors of the
  statistic at this sample size."""
  key, scale, shape = jax.random.key(3), 3.0, (4, 32, 256)
  full = np.asarray(scoring.noise_answers(key, np.arange(6), shape, noise_scale=scale))
  sub = np.asarray(scoring.noise_answers(key, np.asarray([1, 4]), shape, noise_scale=scale))
  np.testing.assert_array_equal(sub, full[[1, 4]])
  x = full.reshape(6, -1)
  n = x.size
  assert abs(x.mean()) < 6 * scale / np.sqrt(n)
  assert abs(x.std() - scale) < 6 * scale / np.sqrt(2 * n)
  inside = np.mean(np.abs(x) < scale)  # within one standard deviation: 68.27 %
  p = 0.6826894921370859
  assert abs(inside - p) < 6 * np.sqrt(p * (1 - p) / n)
  corr = np.corrcoef(x)[np.triu_indices(6, 1)]  # slots are independent
  assert np.abs(corr).max() < 6 / np.sqrt(x.shape[1])
  # answer_logprobs answers a NOISE server with exactly its slot's draw
  logits = jnp.zeros((6,) + shape, jnp.float32)
  lp, _ = scoring.answer_logprobs(logits, jnp.full((6,), scoring.NOISE, jnp.int32), key,
                                  noise_scale=scale, floor=0.0)
  np.testing.assert_allclose(np.asarray(lp), np.asarray(jax.nn.log_softmax(full, -1)),
                             rtol=1e-5, atol=1e-5)


def test_reduced_answers_hold_no_noise_of_the_servers_that_cannot_be_noise():
  """The reduced answers draw noise only for the noise slots: XLA's temporaries of the compiled
  call (64 servers, one noise slot) stay under half of one K x B x L x X float32 tensor, the
  size a full-shape draw would take (the draw of the full shape held four such tensors)."""
  K, B, L, X = 64, 4, 32, 256
  args = (jnp.zeros((K, B, L, X), jnp.float32), jnp.zeros((B, L), jnp.int32),
          jnp.zeros((K,), jnp.int32), jax.random.key(0))
  mem = jax.jit(scoring.answer_target_logprobs, static_argnums=4).lower(
      *args, (5,)).compile().memory_analysis()
  full_bytes = K * B * L * X * 4
  assert mem.temp_size_in_bytes < full_bytes / 2, (mem.temp_size_in_bytes, full_bytes)
