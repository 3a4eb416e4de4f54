"""Knowledge exchange between servers: only parameters or outputs move, never a shard.

`network.exchange` chooses one mode, statically:

  none     isolated training; the validators still ensemble the answers.
  distill  each server distils from the stake-weighted ensemble of all servers' answers on its
           own text (`network.distill_weight`; `neurons.train.local_train`'s teacher).
  average  every `sync_every` blocks the network model becomes the mean of the servers' models,
           weighted by the chain's incentive (or stake, `network.average_by`): the consensus
           decides whose knowledge counts. Every server continues from it.
  diloco   DiLoCo (Douillard et al. 2023): every `sync_every` blocks the weighted mean of the
           servers' pseudo-gradients (network model - server model) is one step of an outer
           optimizer on the network model (SGD with Nesterov momentum, `outer_lr`,
           `outer_momentum`), and every server continues from the new network model.

`average` is `diloco` with outer SGD at learning rate 1 and no momentum. In both, copiers keep
their own (copied) model, and a newcomer starts from the network model.

Dims: K servers
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

MODES = ("none", "distill", "average", "diloco")
SYNCING = ("average", "diloco")
AVERAGE_BY = ("incentive", "stake")


def outer_optimizer(mode: str, outer_lr: float, outer_momentum: float
                    ) -> optax.GradientTransformation:
  """The optimizer of the network model: SGD(1) for `average`, Nesterov SGD for `diloco`."""
  if mode == "diloco":
    return optax.sgd(outer_lr, momentum=outer_momentum, nesterov=True)
  return optax.sgd(1.0)


def contribution_weights(amount_K: jax.Array, include_K: jax.Array) -> jax.Array:
  """Normalised weights of the servers' contributions: f32[K].

  Args:
    amount_K: each server's incentive or stake (nonnegative).
    include_K: bool, servers that take part.

  Returns:
    amount over included servers, renormalised; uniform over them while no one has any (the
    first blocks, before an epoch has paid).
  """
  a = jnp.where(include_K, jnp.maximum(jnp.asarray(amount_K, jnp.float32), 0.0), 0.0)
  uniform = include_K.astype(jnp.float32)
  w = jnp.where(a.sum() > 0, a, uniform)
  return w / jnp.maximum(w.sum(), 1e-30)


def sync(opt: optax.GradientTransformation, global_params, outer_state, server_params_K,
         weights_K: jax.Array):
  """One outer step: the network model moves along the weighted mean pseudo-gradient.

  Args:
    opt: `outer_optimizer(...)`.
    global_params: the network model (no K axis).
    outer_state: `opt`'s state.
    server_params_K: the servers' models, stacked on a leading K axis.
    weights_K: `contribution_weights`, summing to 1.

  Returns:
    (global_params, outer_state). With SGD(1) the new network model is sum_k w_k theta_k.
  """
  w = jnp.asarray(weights_K, jnp.float32)
  pseudo_grad = jax.tree.map(
      lambda g, s: jnp.tensordot(w, (g[None] - s).astype(jnp.float32), axes=1).astype(g.dtype),
      global_params, server_params_K)
  updates, outer_state = opt.update(pseudo_grad, outer_state, global_params)
  return optax.apply_updates(global_params, updates), outer_state
