"""Local training of one server's model on its private shard (vmapped over servers by callers).

The loss is next-byte cross-entropy in nats per byte, plus an optional distillation term
KL(teacher || student) toward log-probabilities the caller supplies (e.g. the network ensemble).
A step whose loss or gradients are non-finite, or whose gradient norm exceeds
`TrainConfig.skip_grad_norm`, is skipped by `optax.apply_if_finite` (a too-large norm is turned
into a non-finite gradient first): params and the inner optimizer state come back unchanged,
only apply_if_finite's counters move, and `metrics["skipped"]` is True, so one failing server
never poisons a vmapped batch.

Dims: B batch   L sequence length   X vocabulary   S local steps
"""
import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from bittensor_jax import data
from bittensor_jax.neurons import transformer


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hashable optimizer hyperparameters."""
  lr: float = 3e-3
  schedule: str = "cosine"     # "cosine" (warmup + cosine decay) or "constant"
  warmup_steps: int = 10
  total_steps: int = 1000      # decay horizon of the cosine schedule
  final_lr_fraction: float = 0.1
  weight_decay: float = 0.01
  b1: float = 0.9
  b2: float = 0.99
  clip_norm: float = 1.0
  skip_grad_norm: float = 1e6  # larger gradient norms skip the update


MAX_SKIPS = 2**31 - 1


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  """Global-norm clipping then AdamW (warmup-cosine or constant), skipping non-finite steps."""
  if cfg.schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, max(cfg.warmup_steps, 1), max(cfg.total_steps, cfg.warmup_steps + 1),
        end_value=cfg.lr * cfg.final_lr_fraction)
  elif cfg.schedule == "constant":
    lr = cfg.lr
  else:
    raise ValueError(f"unknown schedule {cfg.schedule!r}")
  inner = optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                      optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay))
  # never give up: a server whose every step fails simply stops learning
  return optax.apply_if_finite(inner, max_consecutive_errors=MAX_SKIPS)


def init_opt_state(params_N, cfg: TrainConfig):
  """Optimizer state for stacked params (leading N axis on every leaf)."""
  return jax.vmap(make_optimizer(cfg).init)(params_N)


def _losses(params, tokens_BxL1, teacher_logprobs_BxLxX, distill_weight, model_cfg):
  """(total, (ce, kl)) for one model; ce and kl in nats per byte."""
  inputs_BxL, targets_BxL = tokens_BxL1[:, :-1], tokens_BxL1[:, 1:]
  model = transformer.TransformerLM.from_config(model_cfg)
  logits_BxLxX = model.apply({"params": params}, inputs_BxL)
  logprobs_BxLxX = jax.nn.log_softmax(logits_BxLxX.astype(jnp.float32), axis=-1)
  target_lp_BxL = jnp.take_along_axis(logprobs_BxLxX, targets_BxL[..., None], axis=-1)[..., 0]
  ce = -target_lp_BxL.mean()
  if teacher_logprobs_BxLxX is None:
    return ce, (ce, jnp.zeros((), jnp.float32))
  t_lp = jax.lax.stop_gradient(teacher_logprobs_BxLxX.astype(jnp.float32))
  t_p = jnp.exp(t_lp)
  # KL(teacher || student) = sum_x p_t (log p_t - log p_s); terms with p_t = 0 contribute 0.
  kl_BxL = jnp.sum(jnp.where(t_p > 0, t_p * (t_lp - logprobs_BxLxX), 0.0), axis=-1)
  kl = kl_BxL.mean()
  return ce + jnp.float32(distill_weight) * kl, (ce, kl)


def local_step(params, opt_state, tokens_BxL1: jax.Array, lr_scale: jax.Array,
               teacher_logprobs: jax.Array | None = None, distill_weight: float = 0.0, *,
               model_cfg: transformer.ModelConfig, train_cfg: TrainConfig):
  """One optimizer step for ONE server; vmap it over servers with `functools.partial`.

  Args:
    params: one model's params (no N axis).
    opt_state: its optimizer state from `make_optimizer(train_cfg).init`.
    tokens_BxL1: i32[B, L+1] windows from the server's own shard.
    lr_scale: f32[] per-server learning-rate multiplier (heterogeneity); scales the AdamW update.
    teacher_logprobs: optional f32[B, L, X] teacher log-probs for the same inputs.
    distill_weight: weight of the KL(teacher || student) term.
    model_cfg: the architecture (static).
    train_cfg: optimizer hyperparameters (static).

  Returns:
    (params, opt_state, metrics) with metrics loss, ce, kl, grad_norm (f32[]) and skipped (bool[]).
  """
  grad_fn = jax.value_and_grad(_losses, has_aux=True)
  (loss, (ce, kl)), grads = grad_fn(params, tokens_BxL1, teacher_logprobs, distill_weight,
                                    model_cfg)
  grad_norm = optax.tree.norm(grads)
  ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (grad_norm <= train_cfg.skip_grad_norm)
  # apply_if_finite skips non-finite gradients; a finite but too-large step is made one
  grads = jax.tree.map(lambda g: jnp.where(ok, g, jnp.nan), grads)
  updates, opt_state = make_optimizer(train_cfg).update(grads, opt_state, params)
  scale = jnp.asarray(lr_scale, jnp.float32)
  # a skipped step's updates are zeros; `where` keeps NaN params exactly as they were
  new_params = optax.apply_updates(params, jax.tree.map(lambda u: u * scale.astype(u.dtype),
                                                        updates))
  params = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_params, params)
  metrics = {"loss": loss, "ce": ce, "kl": kl, "grad_norm": grad_norm, "skipped": ~ok}
  return params, opt_state, metrics


def local_train(params, opt_state, shard_tokens_T: jax.Array, shard_len: jax.Array,
                key: jax.Array, steps: int, batch: int, seq_len: int,
                lr_scale: jax.Array = 1.0,
                teacher_fn: Callable[[jax.Array], jax.Array] | None = None,
                distill_weight: float = 0.0, *, model_cfg: transformer.ModelConfig,
                train_cfg: TrainConfig):
  """Runs `steps` local steps on windows sampled from one server's shard (a `lax.scan`).

  Args:
    params: one model's params.
    opt_state: its optimizer state.
    shard_tokens_T: u8/i32[T] the server's padded private bytes.
    shard_len: i32[] valid length of the shard.
    key: PRNG key for window sampling.
    steps: S, number of local steps (static).
    batch: B (static).
    seq_len: L (static).
    lr_scale: per-server learning-rate multiplier.
    teacher_fn: optional inputs i32[B, L] -> teacher log-probs f32[B, L, X] (closed over by the
      caller, e.g. the current network ensemble); None disables distillation.
    distill_weight: weight of the distillation term.
    model_cfg: the architecture (static).
    train_cfg: optimizer hyperparameters (static).

  Returns:
    (params, opt_state, metrics) with every metric stacked over steps: shape [S].
  """
  step_fn = functools.partial(local_step, model_cfg=model_cfg, train_cfg=train_cfg)

  def body(carry, step_key):
    p, s = carry
    tokens_BxL1 = data.sample_windows(shard_tokens_T, shard_len, step_key, batch, seq_len)
    teacher = None if teacher_fn is None else teacher_fn(tokens_BxL1[:, :-1])
    p, s, m = step_fn(p, s, tokens_BxL1, lr_scale, teacher, distill_weight)
    return (p, s), m

  (params, opt_state), metrics_S = jax.lax.scan(body, (params, opt_state),
                                                jax.random.split(key, steps))
  return params, opt_state, metrics_S


def eval_loss(params, tokens_BxL1: jax.Array, *, model_cfg: transformer.ModelConfig) -> jax.Array:
  """Mean next-byte cross-entropy (nats per byte) of one model on held-out windows: f32[]."""
  return _losses(params, tokens_BxL1, None, 0.0, model_cfg)[1][0]
