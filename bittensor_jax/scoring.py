"""The validator side: turn server answers into scores and a nonnegative weight vector.

Pure array functions over a server axis K; each one vmaps over a leading validator axis V
(`jax.vmap(fn, in_axes=(0, ...))`). Nothing here knows about stake or consensus.

Server behaviours are int codes per server (`behaviour_K`): HONEST answers with its model, NOISE
answers random logits, OFFLINE does not answer, COPIER replays another server's previous answer.
Answers are sanitised: one that is non-finite or puts zero mass everywhere counts as not
answered, is replaced by a uniform placeholder and never propagates NaN.

Dims: K servers   B batch   L sequence length   X vocabulary
"""
import jax
import jax.numpy as jnp
import numpy as np

HONEST, NOISE, OFFLINE, COPIER = 0, 1, 2, 3
LOG_VOCAB = float(np.log(256.0))
PENALTY = 2.0 * LOG_VOCAB  # loss of a server that did not answer (nats per byte)


def _floored(logprobs: jax.Array, floor: float, vocab: int) -> jax.Array:
  """log((1 - floor) p + floor / X) from log p (f32, any shape): finite even where p = 0; with
  no floor (0), log p itself."""
  floor_lp = jnp.float32(np.log(floor / vocab) if floor > 0 else -np.inf)
  return jnp.logaddexp(logprobs + jnp.float32(np.log1p(-floor)), floor_lp)


def noise_answers(key: jax.Array, slots_S, shape: tuple[int, ...], *,
                  noise_scale: float = 3.0) -> jax.Array:
  """The random logits a NOISE server answers with: f32[S, *shape], `noise_scale` standard
  normals for each server in `slots_S`, server k's drawn from `jax.random.fold_in(key, k)`.

  Each server's draw depends on its slot only, so drawing a subset of the servers (the ones that
  can be NOISE) gives exactly the rows of drawing all of them, and no K x B x L x X noise tensor
  is ever generated for servers that answer with their model.
  """
  slots_S = jnp.asarray(slots_S, jnp.int32)
  return noise_scale * jax.vmap(
      lambda k: jax.random.normal(jax.random.fold_in(key, k), shape, jnp.float32))(slots_S)


def answer_logprobs(logits_KxBxLxX: jax.Array, behaviour_K: jax.Array, key: jax.Array,
                    prev_answers_KxBxLxX: jax.Array | None = None,
                    copy_target_K: jax.Array | None = None, *, noise_scale: float = 3.0,
                    floor: float = 1e-6) -> tuple[jax.Array, jax.Array]:
  """Applies server behaviours to raw answers and sanitises them into log-probabilities.

  Args:
    logits_KxBxLxX: every server's logits on the validator's query.
    behaviour_K: i32[K] codes HONEST / NOISE / OFFLINE / COPIER.
    key: PRNG key for NOISE answers (`noise_answers`: server k's from fold_in(key, k)).
    prev_answers_KxBxLxX: logits or log-probs of the previous round (needed for COPIER).
    copy_target_K: i32[K] whose previous answer each COPIER replays (ignored for others).
    noise_scale: standard deviation of NOISE logits.
    floor: every answer is mixed with `floor` of the uniform distribution, so no log-prob is
      -inf and every loss is finite.

  Returns:
    (logprobs_KxBxLxX f32, answered_K bool). Unanswered rows hold uniform log-probs.
  """
  logits = logits_KxBxLxX.astype(jnp.float32)
  num_servers, vocab = logits.shape[0], logits.shape[-1]
  noise = noise_answers(key, jnp.arange(num_servers), logits.shape[1:], noise_scale=noise_scale)
  b_K = jnp.asarray(behaviour_K, jnp.int32)
  bcast = lambda m_K: m_K.reshape((num_servers,) + (1,) * (logits.ndim - 1))  # noqa: E731
  answer = jnp.where(bcast(b_K == NOISE), noise, logits)
  if prev_answers_KxBxLxX is not None:
    target_K = (jnp.zeros((num_servers,), jnp.int32) if copy_target_K is None
                else jnp.asarray(copy_target_K, jnp.int32))
    copied = jnp.take(prev_answers_KxBxLxX.astype(jnp.float32), target_K, axis=0)
    answer = jnp.where(bcast(b_K == COPIER), copied, answer)
    copier_ok_K = jnp.ones((num_servers,), bool)
  else:
    copier_ok_K = b_K != COPIER  # nothing to copy yet: a copier does not answer
  # Sanitation: NaN / +inf anywhere, or all mass at -inf, means no usable answer.
  lse_KxBxL = jax.nn.logsumexp(jnp.where(jnp.isnan(answer), -jnp.inf, answer), axis=-1)
  rest = tuple(range(1, answer.ndim))
  sane_K = (jnp.all(~jnp.isnan(answer) & (answer < jnp.inf), axis=rest)
            & jnp.all(jnp.isfinite(lse_KxBxL), axis=rest[:-1]))
  answered_K = (b_K != OFFLINE) & copier_ok_K & sane_K
  safe = jnp.where(bcast(answered_K), answer, 0.0)
  logprobs = jax.nn.log_softmax(safe, axis=-1)
  logprobs = _floored(logprobs, floor, vocab)
  return logprobs, answered_K


def reduce_answer(answer_KxBxLxX: jax.Array, targets_BxL: jax.Array):
  """One pass over raw answers: (shifted target logit, log sum exp of the shifted row, sane_K,
  the row maximum: f32[K, B, L], f32[K, B, L], bool[K], f32[K, B, L]).

  `shifted` is x_target - max_x and `log_sum` is log sum_x exp(x - max_x), so that
  `shifted - log_sum` is `jax.nn.log_softmax(x)[target]` computed as log_softmax computes it.
  An answer is sane when it holds no NaN and no +inf and every row has a finite maximum (so its
  log-sum-exp is finite): `answer_logprobs`'s sanitation.
  """
  x = answer_KxBxLxX
  rest = tuple(range(1, x.ndim))
  insane_K = jnp.any(jnp.isnan(x) | (x == jnp.inf), axis=rest)
  max_KxBxL = jnp.max(x, axis=-1)
  sane_K = ~insane_K & jnp.all(jnp.isfinite(max_KxBxL), axis=rest[:-1])
  safe_max = jnp.where(jnp.isfinite(max_KxBxL), max_KxBxL, 0.0)
  log_sum_KxBxL = jnp.log(jnp.sum(jnp.exp(x - safe_max[..., None]), axis=-1))
  idx = jnp.broadcast_to(targets_BxL[None, ..., None].astype(jnp.int32), x.shape[:-1] + (1,))
  shifted_KxBxL = jnp.take_along_axis(x, idx, axis=-1)[..., 0] - safe_max
  return shifted_KxBxL, log_sum_KxBxL, sane_K, safe_max


def reduced_answers(answer_KxBxLxX: jax.Array, targets_BxL: jax.Array, behaviour_K: jax.Array,
                    *, floor: float = 1e-6) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`answer_logprobs` of answers whose NOISE rows are already drawn (no copier replay: a copier
  answers with its own, copied, model), with its target log-probs from one reduction pass.

  Args:
    answer_KxBxLxX: every server's answer (its logits, or its noise).
    targets_BxL: the query's next bytes.
    behaviour_K: i32[K] answering codes; OFFLINE and COPIER do not answer.
    floor: the uniform mixing of `answer_logprobs`.

  Returns:
    (tlp_KxBxL f32, answered_K bool, logprobs_KxBxLxX f32): the floored log-probs at the targets
    and everywhere (under jit the last is computed only where it is used; -log X where the
    server did not answer).
  """
  x = answer_KxBxLxX.astype(jnp.float32)
  vocab = x.shape[-1]
  b_K = jnp.asarray(behaviour_K, jnp.int32)
  shifted, log_sum, sane_K, safe_max = reduce_answer(x, targets_BxL)
  answered_K = (b_K != OFFLINE) & (b_K != COPIER) & sane_K
  uniform = -jnp.log(jnp.float32(vocab))
  floored = lambda lp: _floored(lp, floor, vocab)  # noqa: E731
  tlp_KxBxL = floored(jnp.where(answered_K[:, None, None], shifted - log_sum, uniform))
  lp_KxBxLxX = floored(jnp.where(answered_K[:, None, None, None],
                                 x - (safe_max + log_sum)[..., None], uniform))
  return tlp_KxBxL, answered_K, lp_KxBxLxX


def answer_target_logprobs(logits_KxBxLxX: jax.Array, targets_BxL: jax.Array,
                           behaviour_K: jax.Array, key: jax.Array,
                           noise_slots: tuple[int, ...] | None = None, *,
                           noise_scale: float = 3.0, floor: float = 1e-6
                           ) -> tuple[jax.Array, jax.Array]:
  """What scoring reads of the answers, without materialising them: `target_logprobs` of
  `answer_logprobs(logits, behaviour_K, key)` (no copier replay: a copier answers with its own,
  copied, model) and the answered flags, from one reduction pass over the raw logits.

  The NOISE answers are the same draws as `answer_logprobs`'s (`noise_answers`: server k's from
  fold_in(key, k)), drawn only for the servers of `noise_slots`, so no B x L x X noise of the
  other servers is ever generated. Equal to the full path up to float reduction order
  (`scoring_test.test_answer_target_logprobs_equal_the_full_answers`).

  Args:
    logits_KxBxLxX: every server's raw logits on the query.
    targets_BxL: the query's next bytes.
    behaviour_K: i32[K] answering codes HONEST / NOISE / OFFLINE (a COPIER answers as HONEST).
    key: PRNG key of the NOISE answers.
    noise_slots: the static server indices that may be NOISE (None: every server). A server
      outside them whose code is NOISE answers with its logits: callers pass every slot that can
      hold a noise server.
    noise_scale: standard deviation of NOISE logits.
    floor: the uniform mixing of `answer_logprobs`.

  Returns:
    (tlp_KxBxL f32: log p_k(target), answered_K bool). Unanswered servers hold -log X.
  """
  logits = logits_KxBxLxX.astype(jnp.float32)
  shifted, log_sum, sane_K, _ = reduce_answer(logits, targets_BxL)
  return reduced_target_logprobs(shifted, log_sum, sane_K, targets_BxL, behaviour_K, key,
                                 noise_slots, vocab=logits.shape[-1], noise_scale=noise_scale,
                                 floor=floor)


def reduced_target_logprobs(shifted_KxBxL: jax.Array, log_sum_KxBxL: jax.Array,
                            sane_K: jax.Array, targets_BxL: jax.Array, behaviour_K: jax.Array,
                            key: jax.Array, noise_slots: tuple[int, ...] | None = None, *,
                            vocab: int = 256, noise_scale: float = 3.0, floor: float = 1e-6
                            ) -> tuple[jax.Array, jax.Array]:
  """`answer_target_logprobs` from `reduce_answer` of the servers' logits (its first three
  outputs), so that a caller may reduce the logits a group of servers at a time and never hold
  all of them; the NOISE answers of `noise_slots` are drawn and reduced here.

  Returns:
    (tlp_KxBxL f32, answered_K bool), as `answer_target_logprobs`.
  """
  num_servers = shifted_KxBxL.shape[0]
  shifted, log_sum, sane_K = shifted_KxBxL, log_sum_KxBxL, sane_K
  b_K = jnp.asarray(behaviour_K, jnp.int32)
  slots = tuple(range(num_servers)) if noise_slots is None else tuple(int(k) for k in noise_slots)
  if slots:
    idx = np.asarray(slots)
    noise_SxBxLxX = noise_answers(key, idx, targets_BxL.shape + (vocab,),
                                  noise_scale=noise_scale)
    n_shifted, n_log_sum, n_sane, _ = reduce_answer(noise_SxBxLxX, targets_BxL)
    is_noise_S = b_K[idx] == NOISE
    pick = lambda n, m: m.at[idx].set(  # noqa: E731
        jnp.where(is_noise_S.reshape((-1,) + (1,) * (n.ndim - 1)), n, m[idx]))
    shifted, log_sum, sane_K = pick(n_shifted, shifted), pick(n_log_sum, log_sum), pick(
        n_sane, sane_K)
  answered_K = (b_K != OFFLINE) & (b_K != COPIER) & sane_K
  answered_KxBxL = answered_K[:, None, None]
  # jax.nn.log_softmax of the answer, or of zeros (uniform) where it did not count
  lp_KxBxL = jnp.where(answered_KxBxL, shifted - log_sum, -jnp.log(jnp.float32(vocab)))
  lp_KxBxL = _floored(lp_KxBxL, floor, vocab)
  return lp_KxBxL, answered_K


def target_logprobs(logprobs_KxBxLxX: jax.Array, targets_BxL: jax.Array) -> jax.Array:
  """log p_k(target) for every server: f32[K, B, L]."""
  idx_KxBxL1 = jnp.broadcast_to(targets_BxL[None, ..., None].astype(jnp.int32),
                                logprobs_KxBxLxX.shape[:-1] + (1,))
  return jnp.take_along_axis(logprobs_KxBxLxX, idx_KxBxL1, axis=-1)[..., 0]


def loss_scores(logprobs_KxBxLxX: jax.Array, targets_BxL: jax.Array, answered_K: jax.Array, *,
                penalty: float = PENALTY) -> jax.Array:
  """Mean NLL in nats per byte per server, f32[K]; unanswered servers (flag: ~answered_K) and
  any non-finite loss get the finite `penalty`."""
  return loss_scores_tlp(target_logprobs(logprobs_KxBxLxX, targets_BxL), answered_K,
                         penalty=penalty)


def loss_scores_tlp(tlp_KxBxL: jax.Array, answered_K: jax.Array, *,
                    penalty: float = PENALTY) -> jax.Array:
  """`loss_scores` from the target log-probs (`answer_target_logprobs`): f32[K]."""
  loss_K = -tlp_KxBxL.mean(axis=(1, 2))
  return jnp.where(answered_K & jnp.isfinite(loss_K), loss_K, jnp.float32(penalty))


def _mix_weights(mix_K: jax.Array, answered_K: jax.Array) -> jax.Array:
  """Nonnegative mixture weights over answered servers (not normalised)."""
  mix = jnp.asarray(mix_K, jnp.float32)
  return jnp.where(answered_K & jnp.isfinite(mix) & (mix > 0), mix, 0.0)


def ensemble_logprobs(logprobs_KxBxLxX: jax.Array, mix_K: jax.Array,
                      answered_K: jax.Array) -> jax.Array:
  """log sum_k w_k p_k with w = mix over answered servers, renormalised: f32[B, L, X].

  With no answered server (or zero mix) the ensemble is uniform.
  """
  w_K = _mix_weights(mix_K, answered_K)
  total = w_K.sum()
  log_w_K = jnp.where(w_K > 0, jnp.log(jnp.where(w_K > 0, w_K, 1.0)), -jnp.inf)
  lse = jax.nn.logsumexp(
      logprobs_KxBxLxX + log_w_K.reshape((-1,) + (1,) * (logprobs_KxBxLxX.ndim - 1)), axis=0)
  uniform = jnp.full(lse.shape, -LOG_VOCAB, jnp.float32)
  return jnp.where(total > 0, lse - jnp.log(jnp.where(total > 0, total, 1.0)), uniform)


def ensemble_tlp(tlp_KxBxL: jax.Array, mix_K: jax.Array, answered_K: jax.Array) -> jax.Array:
  """The ensemble's log-prob of the targets, `ensemble_logprobs` at the targets: f32[B, L].

  The mixture is per position, so it needs only each server's log-prob of the target."""
  return ensemble_logprobs(tlp_KxBxL, mix_K, answered_K)


def leave_one_out_value(logprobs_KxBxLxX: jax.Array, targets_BxL: jax.Array, mix_K: jax.Array,
                        answered_K: jax.Array) -> jax.Array:
  """value_k = loss(ensemble without k) - loss(ensemble), for all k at once: f32[K].

  The ensemble is the renormalised mixture of answered servers. Removing k is a logsumexp over
  the other servers' terms (a K x K off-diagonal mask, on target log-probs only), so there is no
  cancellation and no loop over k. An empty ensemble predicts uniformly (loss log 256).
  Unanswered servers, and servers with zero mix, get 0.
  """
  return leave_one_out_value_tlp(target_logprobs(logprobs_KxBxLxX, targets_BxL), mix_K,
                                 answered_K)


def leave_one_out_value_tlp(tlp_KxBxL: jax.Array, mix_K: jax.Array,
                            answered_K: jax.Array) -> jax.Array:
  """`leave_one_out_value` from the target log-probs (`answer_target_logprobs`): f32[K]."""
  w_K = _mix_weights(mix_K, answered_K)
  num = w_K.shape[0]
  log_w_K = jnp.log(jnp.where(w_K > 0, w_K, 1.0))
  tlp_KxBxL = tlp_KxBxL + log_w_K[:, None, None]
  use_KxK = (~jnp.eye(num, dtype=bool)) & (w_K > 0)[None, :]  # row k: servers j != k
  use_all_K = w_K > 0

  def mixture_loss(use_K):
    """Mean NLL of the renormalised mixture over servers where use_K."""
    lse_BxL = jax.nn.logsumexp(jnp.where(use_K[:, None, None], tlp_KxBxL, -jnp.inf), axis=0)
    total = jnp.where(use_K, w_K, 0.0).sum()
    loss = -(lse_BxL - jnp.log(jnp.where(total > 0, total, 1.0))).mean()
    return jnp.where(total > 0, loss, jnp.float32(LOG_VOCAB))

  full = mixture_loss(use_all_K)
  without_K = jax.vmap(mixture_loss)(use_KxK)
  return jnp.where(w_K > 0, without_K - full, 0.0).astype(jnp.float32)


def fit_mixture(logprobs_KxBxLxX: jax.Array, targets_BxL: jax.Array, answered_K: jax.Array,
                init_K: jax.Array, steps: int = 2) -> jax.Array:
  """Mixture weights over answered servers that maximize the likelihood of the targets (EM).

  A validator's weighted ensemble: starting from `init_K` (renormalized over answered servers,
  uniform if that is empty), each EM step sets w_k to the mean responsibility of server k for
  the observed bytes. Unanswered servers get 0. Returns f32[K] summing to 1 (or 0 if nobody
  answered).
  """
  return fit_mixture_tlp(target_logprobs(logprobs_KxBxLxX, targets_BxL), answered_K, init_K,
                         steps)


def fit_mixture_tlp(tlp_KxBxL: jax.Array, answered_K: jax.Array, init_K: jax.Array,
                    steps: int = 2) -> jax.Array:
  """`fit_mixture` from the target log-probs (`answer_target_logprobs`): f32[K]."""
  tlp_KxT = tlp_KxBxL.reshape(answered_K.shape[0], -1)
  w = jnp.where(answered_K, jnp.maximum(jnp.asarray(init_K, jnp.float32), 1e-6), 0.0)
  w = jnp.where(w.sum() > 0, w / jnp.maximum(w.sum(), 1e-30), 0.0)
  for _ in range(steps):
    logw = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
    joint = tlp_KxT + logw[:, None]
    resp = jnp.exp(joint - jax.nn.logsumexp(joint, axis=0, keepdims=True))
    w = jnp.where(answered_K, jnp.nan_to_num(resp).mean(1), 0.0)
    w = jnp.where(w.sum() > 0, w / jnp.maximum(w.sum(), 1e-30), 0.0)
  return w


def update_scores(ema_scores_K: jax.Array, new_K: jax.Array, queried_K: jax.Array,
                  decay: float) -> jax.Array:
  """Exponential moving average `decay * ema + (1 - decay) * new` where queried_K.

  Servers that were not queried this round (or whose new score is non-finite) keep their score.
  Pass all-True to penalise non-answers, whose `new_K` already carries the penalty (loss) or 0
  (leave-one-out value).
  """
  ema = jnp.asarray(ema_scores_K, jnp.float32)
  new = jnp.asarray(new_K, jnp.float32)
  upd = jnp.float32(decay) * ema + jnp.float32(1.0 - decay) * new
  return jnp.where(queried_K & jnp.isfinite(new), upd, ema)


def scores_to_weights(scores_K: jax.Array, mode: str = "loss", *, temperature: float = 0.1,
                      baseline: float = LOG_VOCAB) -> jax.Array:
  """Maps scores to a nonnegative weight vector summing to 1, or all zeros if nothing is useful.

  Args:
    scores_K: per-server losses (mode "loss") or leave-one-out values (mode "value").
    mode: "loss": w_k ∝ exp(-(loss_k - min loss) / temperature) over servers that beat the
      uniform `baseline`; "value": w_k ∝ relu(value_k).
    temperature: softness of the loss mode.
    baseline: losses at or above it (no better than uniform bytes) get weight 0.

  Returns:
    f32[K] weights.
  """
  s = jnp.asarray(scores_K, jnp.float32)
  if mode == "loss":
    useful = jnp.isfinite(s) & (s < baseline)
    best = jnp.min(jnp.where(useful, s, jnp.inf))
    raw = jnp.where(useful, jnp.exp(-(jnp.where(useful, s, best) - best) / temperature), 0.0)
  elif mode == "value":
    raw = jnp.where(jnp.isfinite(s), jax.nn.relu(s), 0.0)
  else:
    raise ValueError(f"unknown mode {mode!r}")
  total = raw.sum()
  return jnp.where(total > 0, raw / jnp.where(total > 0, total, 1.0), 0.0)


def sample_subset(key: jax.Array, num_servers: int, k: int) -> jax.Array:
  """A bool[K] mask with exactly k servers chosen uniformly at random (vmappable over keys)."""
  u_K = jax.random.uniform(key, (num_servers,))
  ranks_K = jnp.argsort(jnp.argsort(u_K))
  return ranks_K < k


def mixture_gain(tlp_KxT: jax.Array, w_K: jax.Array, use_K: jax.Array) -> jax.Array:
  """v(S) = log 256 - loss(mixture of the servers in S), nats per byte: f32[].

  The characteristic function of the validator's cooperative game. `tlp_KxT` holds the servers'
  target log-probs, `w_K` their nonnegative mixture weights; the mixture over S (`use_K`) is
  renormalised, and an empty (or zero-weight) S predicts uniformly, so v(empty) = 0.
  """
  w = jnp.where(use_K, w_K, 0.0)
  total = w.sum()
  log_w = jnp.log(jnp.where(w > 0, w, 1.0))
  lse_T = jax.nn.logsumexp(jnp.where((w > 0)[:, None], tlp_KxT + log_w[:, None], -jnp.inf), 0)
  loss = -(lse_T - jnp.log(jnp.where(total > 0, total, 1.0))).mean()
  return jnp.where(total > 0, LOG_VOCAB - loss, 0.0)


def shapley_value(logprobs_KxBxLxX: jax.Array, targets_BxL: jax.Array, mix_K: jax.Array,
                  answered_K: jax.Array, perms_PxK: jax.Array) -> jax.Array:
  """Permutation-sampled Shapley value of every server in the validator's mixture: f32[K].

  The game: v(S) = `mixture_gain` of the renormalised mixture (weights `mix_K`) of the answered
  servers in S. The estimator (Castro et al. 2009) averages marginal contributions over the P
  given orderings:

    phi_k = (1 / P) sum_p [ v(Pre_p(k) + {k}) - v(Pre_p(k)) ],

  where Pre_p(k) are the servers before k in ordering p. It is unbiased for uniform random
  orderings, exact when `perms_PxK` lists all K! orderings, and efficient for any set of
  orderings: sum_k phi_k = v(all answered servers) (each ordering's marginals telescope). One
  ordering costs one cumulative logsumexp over the servers (O(K B L)), not K mixture fits.
  Unanswered servers and servers with zero weight get exactly 0.

  Args:
    logprobs_KxBxLxX: sanitised answers (`answer_logprobs`).
    targets_BxL: the query's next bytes.
    mix_K: nonnegative mixture weights.
    answered_K: bool; False drops the server from every coalition.
    perms_PxK: i32 orderings of range(K) (e.g. `sample_permutations`).

  Returns:
    f32[K] Shapley values in nats per byte.
  """
  return shapley_value_tlp(target_logprobs(logprobs_KxBxLxX, targets_BxL), mix_K, answered_K,
                           perms_PxK)


def shapley_value_tlp(tlp_KxBxL: jax.Array, mix_K: jax.Array, answered_K: jax.Array,
                      perms_PxK: jax.Array) -> jax.Array:
  """`shapley_value` from the target log-probs (`answer_target_logprobs`): f32[K]."""
  w_K = _mix_weights(mix_K, answered_K)
  num = w_K.shape[0]
  log_w = jnp.log(jnp.where(w_K > 0, w_K, 1.0))
  tlp_KxT = tlp_KxBxL.reshape(num, -1)
  # -1e30, not -inf: a cumulative logsumexp over -inf prefixes would produce NaN
  term_KxT = jnp.where((w_K > 0)[:, None], tlp_KxT + log_w[:, None], -1e30)

  def one(perm_K):
    cum_KxT = jax.lax.cumlogsumexp(term_KxT[perm_K], axis=0)
    total_K = jnp.cumsum(w_K[perm_K])
    loss_K = -(cum_KxT - jnp.log(jnp.where(total_K > 0, total_K, 1.0))[:, None]).mean(1)
    gain_K = jnp.where(total_K > 0, LOG_VOCAB - loss_K, 0.0)
    marginal_K = gain_K - jnp.concatenate([jnp.zeros((1,), gain_K.dtype), gain_K[:-1]])
    return jnp.zeros((num,), jnp.float32).at[perm_K].set(marginal_K)

  phi_K = jax.vmap(one)(jnp.asarray(perms_PxK, jnp.int32)).mean(0)
  return jnp.where(w_K > 0, phi_K, 0.0).astype(jnp.float32)


def sample_permutations(key: jax.Array, num_servers: int, num: int) -> jax.Array:
  """`num` orderings of range(K) as antithetic pairs (each drawn ordering and its reverse,
  which lowers the estimator's variance): i32[num, K]; `num` must be even."""
  if num < 2 or num % 2:
    raise ValueError(f"network.shapley_permutations: must be an even number >= 2, got {num}")
  perms = jax.vmap(lambda k: jax.random.permutation(k, num_servers))(
      jax.random.split(key, num // 2))
  return jnp.concatenate([perms, perms[:, ::-1]]).astype(jnp.int32)


def delta_value(network_loss: jax.Array, loss_K: jax.Array, answered_K: jax.Array) -> jax.Array:
  """The loss improvement on the validator's text when a server's update is applied to the
  network model: loss(network model) - loss(network model + server k's update), f32[K].

  In the average / diloco exchanges a server's model is the network model of the last sync
  plus its own local update, so this is `network_loss - loss_K`. Unanswered servers get 0.
  """
  return jnp.where(answered_K, jnp.float32(network_loss) - loss_K, 0.0).astype(jnp.float32)


def lagging_copies(probe_KxP: jax.Array, past_HxKxP: jax.Array, answered_K: jax.Array,
                   tol: float = 1e-4) -> jax.Array:
  """Which servers' answers duplicate another server's answer of an earlier block: bool[K].

  A validator asks every server the same fixed probe every block and keeps the target
  log-probs of the last H blocks. An honest server trains every block, so its answer is new; a
  server whose answer equals (max abs difference < `tol`) another server's answer of 1..H
  blocks ago is replaying a lagged copy of that server's model. Equality within the same block
  is not evidence (who copied whom is undecidable then), so it is not flagged.

  Args:
    probe_KxP: this block's target log-probs of every server on the probe (NaN: no answer).
    past_HxKxP: the same of the last H blocks, most recent first (NaN: no answer or no block).
    answered_K: which servers answered this block.
    tol: the equality tolerance in nats.

  Returns:
    bool[K] caught copying this block.
  """
  # every comparison is explicit: a fused max may drop NaNs (XLA's fast min/max on CPU)
  close_HxKxJxP = jnp.abs(probe_KxP[None, :, None, :] - past_HxKxP[:, None, :, :]) < tol
  same_HxKxJ = close_HxKxJxP.all(-1)  # NaN (no answer) is never close
  num = probe_KxP.shape[0]
  match_KxJ = same_HxKxJ.any(0) & ~jnp.eye(num, dtype=bool)
  return answered_K & match_KxJ.any(1)


def newcomer_prior(values_K: jax.Array, fresh_K: jax.Array, mode: str) -> jax.Array:
  """The score (or mixture weight) a newcomer starts from: the mean of the servers that count.

  Starting a newcomer at 0, or at 1/K of a mixture it has not entered, would pay it nothing
  until the moving average catches up; the mean of the servers that currently count (positive
  values; for losses, those below the uniform baseline) neither favours nor hurts it.

  Args:
    values_K: current scores or mixture weights.
    fresh_K: bool, the slots taken by newcomers now (their values are ignored).
    mode: "value" (higher is better; positive values count) or "loss".

  Returns:
    f32[K]: `values_K` with the fresh slots set to the prior.
  """
  v = jnp.asarray(values_K, jnp.float32)
  counts = ~fresh_K & jnp.isfinite(v) & ((v > 0) if mode == "value" else (v < LOG_VOCAB))
  prior = jnp.where(counts, v, 0.0).sum() / jnp.maximum(counts.sum(), 1)
  fallback = 0.0 if mode == "value" else LOG_VOCAB
  return jnp.where(fresh_K, jnp.where(counts.any(), prior, fallback), v)
