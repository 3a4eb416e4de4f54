"""Evaluation on the fixed test split: every model, the network's ensemble, isolated twins.

The test split (`data.make_shards(test_bytes=...)`) is read by no neuron. It is cut into
non-overlapping windows of `seq_len + 1` bytes advancing by `seq_len`, so every byte after the
first is predicted exactly once, from the bytes before it in its window. Losses are in nats per
byte (bits per byte = nats / ln 2); the standard error is that of the mean over windows (bytes
within a window are correlated, windows much less so); accuracy is next-byte argmax accuracy.

Twins: for each server slot an isolated model with the same init, shard, learning-rate scale
and number of optimizer steps as the slot's server, that never exchanges anything; restarted
when the slot's neuron is replaced. `twins = all` keeps one per slot, `one` only the first
honest slot's, `none` none.

Dims: M models   K servers   W windows   C windows per chunk   L sequence length   X vocabulary
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bittensor_jax import ngram, scoring
from bittensor_jax.neurons import transformer

TWINS = ("all", "one", "none")
LN2 = float(np.log(2.0))


def twin_slots(twins: str, behaviour_K: np.ndarray) -> np.ndarray:
  """The server slot of every twin, in model order after the K servers: i64[T].

  Raises:
    ValueError: an unknown `twins`.
  """
  if twins not in TWINS:
    raise ValueError(f"network.twins: must be one of {TWINS}, got {twins!r}")
  K = len(behaviour_K)  # pylint: disable=invalid-name
  if twins == "all":
    return np.arange(K)
  if twins == "one":
    return np.flatnonzero(np.asarray(behaviour_K) == scoring.HONEST)[:1]
  return np.zeros((0,), np.int64)


def test_windows(test_tokens_T: np.ndarray, seq_len: int) -> np.ndarray:
  """Non-overlapping windows of the test split: i32[W, L+1], window w = bytes wL .. wL+L.

  Raises:
    ValueError: the split holds fewer than `seq_len + 1` bytes.
  """
  t = np.asarray(test_tokens_T, np.int32)
  num = (t.shape[0] - 1) // seq_len
  if num < 1:
    raise ValueError(f"network.test_bytes: the test split ({t.shape[0]} bytes) holds no window "
                     f"of seq_len + 1 = {seq_len + 1} bytes")
  idx = np.arange(num)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
  return t[idx]


def _stats(per_window_W: jax.Array) -> tuple[jax.Array, jax.Array]:
  n = per_window_W.shape[-1]
  mean = per_window_W.mean(-1)
  se = per_window_W.std(-1, ddof=1) / np.float32(np.sqrt(n)) if n > 1 else jnp.zeros_like(mean)
  return mean, se.astype(mean.dtype)


def chunk_for(num_models: int, budget: int = 512, largest: int = 64) -> int:
  """Test windows per forward pass of `evaluate` for M models: the largest power of two up to
  `largest` with M x chunk <= `budget` windows (at least 1), so the pass's logits hold at most
  `budget` x L x X floats whatever the number of models (64 uids, M = 124: 4 windows)."""
  chunk = largest
  while chunk > 1 and num_models * chunk > budget:
    chunk //= 2
  return chunk


def evaluate(params_M, windows_WxL1: jax.Array, behaviour_K: jax.Array, mix_K: jax.Array,
             key: jax.Array, *, model_cfg: transformer.ModelConfig, chunk: int = 64,
             noise_slots: tuple[int, ...] | None = None, group: int = 0) -> dict:
  """Test-split metrics of every model and of the servers' ensemble (pure; jit it).

  Servers (models 0..K-1) are evaluated on what they answer (`scoring.answer_logprobs`: a NOISE
  server answers noise, an OFFLINE server nothing, whose loss is NaN); the other models (twins,
  padding) on their own predictions. The ensemble is the mixture `mix_K` of the servers'
  answers, as the validators combine them.

  Memory: each pass over `chunk` windows holds the M models' logits and reduces them at once
  (target log-probs, argmax; the ensemble over the K servers' answers), so no log-softmax of the
  M models is kept; pass `chunk_for(M)` to bound the pass whatever M is. The results do not
  depend on `chunk` beyond float rounding: window w's NOISE answers are drawn from
  `fold_in(key, w)` (`scoring.noise_answers`), not from a per-chunk key.

  Args:
    params_M: stacked models (leading axis M >= K).
    windows_WxL1: `test_windows(...)`; W is padded by repeating windows to a multiple of
      `chunk` only inside this function.
    behaviour_K: i32 server behaviours (COPIER answers with its model, as in the network).
    mix_K: the network's mixture weights over servers (nonnegative).
    key: PRNG key for NOISE answers.
    model_cfg: the architecture (static).
    chunk: windows per forward pass (memory: M * chunk * L * X floats).
    noise_slots: the static server indices that may be NOISE (None: every server); a server
      outside them answers with its model whatever its code (`scoring.answer_target_logprobs`).
    group: run the models' forward passes `group` at a time (`transformer.apply_all`; 0: all).

  Returns:
    {"loss_M", "se_M", "acc_M"} (f32[M]; NaN for an offline server) and {"ensemble_loss",
    "ensemble_se", "ensemble_acc"} (f32[]); losses in nats per byte.

  Raises:
    ValueError: `chunk` < 1.
  """
  if chunk < 1:
    raise ValueError(f"evaluation.chunk: must be >= 1, got {chunk}")
  K = behaviour_K.shape[0]  # pylint: disable=invalid-name
  W = windows_WxL1.shape[0]  # pylint: disable=invalid-name
  num_chunks = -(-W // chunk)
  pad = num_chunks * chunk - W
  win = jnp.concatenate([windows_WxL1, jnp.resize(windows_WxL1, (pad,) + windows_WxL1.shape[1:])]
                        ) if pad else windows_WxL1
  win_NxCxL1 = win.reshape(num_chunks, chunk, -1)
  index_NxC = jnp.arange(num_chunks * chunk).reshape(num_chunks, chunk)
  server_b = jnp.where(behaviour_K == scoring.COPIER, scoring.HONEST, behaviour_K)
  slots = tuple(range(K)) if noise_slots is None else tuple(int(k) for k in noise_slots)

  def one_chunk(_, xs):
    tokens_CxL1, index_C = xs
    inputs, targets_CxL = tokens_CxL1[:, :-1], tokens_CxL1[:, 1:]
    logits_MxCxLxX = transformer.apply_all(params_M, inputs, model_cfg, group).astype(
        jnp.float32)
    # the servers' answers: their logits, or noise where a noise slot holds a NOISE server
    answer_KxCxLxX = logits_MxCxLxX[:K]
    if slots:
      idx = np.asarray(slots)
      noise_SxCxLxX = jnp.moveaxis(jax.vmap(lambda w: scoring.noise_answers(
          jax.random.fold_in(key, w), idx, inputs.shape[1:] + logits_MxCxLxX.shape[-1:]))(
              index_C), 0, 1)
      is_noise_S = (server_b[idx] == scoring.NOISE)[:, None, None, None]
      answer_KxCxLxX = answer_KxCxLxX.at[idx].set(
          jnp.where(is_noise_S, noise_SxCxLxX, answer_KxCxLxX[idx]))
    tlp_KxCxL, answered_K, lp_KxCxLxX = scoring.reduced_answers(answer_KxCxLxX, targets_CxL,
                                                                server_b)
    # the other models (twins, padding) on their own predictions: log_softmax at the targets
    shifted, log_sum, _, _ = scoring.reduce_answer(logits_MxCxLxX[K:], targets_CxL)
    tlp_MxCxL = jnp.concatenate([tlp_KxCxL, shifted - log_sum])
    # argmax of the floored log-probs = argmax of the answer (uniform: byte 0)
    pred_KxCxL = jnp.where(answered_K[:, None, None], answer_KxCxLxX.argmax(-1), 0)
    pred_MxCxL = jnp.concatenate([pred_KxCxL, logits_MxCxLxX[K:].argmax(-1)])
    acc_MxCxL = pred_MxCxL == targets_CxL[None]
    ens = scoring.ensemble_logprobs(lp_KxCxLxX, mix_K, answered_K)
    ens_tlp = jnp.take_along_axis(ens, targets_CxL[..., None], -1)[..., 0]
    return None, (-tlp_MxCxL.mean(-1), acc_MxCxL.mean(-1), -ens_tlp.mean(-1),
                  (ens.argmax(-1) == targets_CxL).mean(-1), answered_K)

  _, (loss_NxMxC, acc_NxMxC, ens_NxC, ens_acc_NxC, answered_NxK) = jax.lax.scan(
      one_chunk, None, (win_NxCxL1, index_NxC))
  flat = lambda a: jnp.moveaxis(a, 1, 0).reshape(a.shape[1], -1)[:, :W]  # noqa: E731
  loss_M, se_M = _stats(flat(loss_NxMxC))
  acc_M = flat(acc_NxMxC).mean(-1)
  offline_M = jnp.concatenate([~answered_NxK.all(0), jnp.zeros((loss_M.shape[0] - K,), bool)])
  ens_loss, ens_se = _stats(ens_NxC.reshape(-1)[:W])
  return {"loss_M": jnp.where(offline_M, jnp.nan, loss_M),
          "se_M": jnp.where(offline_M, jnp.nan, se_M),
          "acc_M": jnp.where(offline_M, jnp.nan, acc_M),
          "ensemble_loss": ens_loss, "ensemble_se": ens_se,
          "ensemble_acc": ens_acc_NxC.reshape(-1)[:W].mean()}


def empty_result(num_models: int) -> dict:
  """The evaluation slot of a state before its first evaluation (all NaN)."""
  nan_M = lambda: jnp.full((num_models,), jnp.nan, jnp.float32)  # noqa: E731
  nan = lambda: jnp.full((), jnp.nan, jnp.float32)  # noqa: E731  (distinct buffers: donated)
  return {"loss_M": nan_M(), "se_M": nan_M(), "acc_M": nan_M(), "ensemble_loss": nan(),
          "ensemble_se": nan(), "ensemble_acc": nan()}


def ngram_baseline(shards_S, windows_WxL1: np.ndarray, order: int = 3) -> dict:
  """The byte n-gram yardstick: Kneser-Ney fitted on the union of the server shards.

  Args:
    shards_S: the servers' byte sequences (host arrays, padding removed).
    windows_WxL1: `test_windows(...)`; the model predicts the same W*L bytes the networks
      predict, each from the `order - 1` bytes before it in the test split.
    order: the n of the n-gram.

  Returns:
    {"loss": nats per byte, "se": its standard error over windows, "order"}.
  """
  model = ngram.fit(shards_S, order)
  stream = np.concatenate([windows_WxL1[:, :-1].reshape(-1), windows_WxL1[-1, -1:]])
  per_byte = -model.logprobs(stream, start=1).reshape(windows_WxL1.shape[0], -1)
  per_window = per_byte.mean(1)
  se = per_window.std(ddof=1) / np.sqrt(len(per_window)) if len(per_window) > 1 else 0.0
  return {"loss": float(per_byte.mean()), "se": float(se), "order": order}
