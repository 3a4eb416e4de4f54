"""Yuma variants the community compares with the chain, as pure epoch functions.

[YS] is bactensor/yuma-simulation (`yumas.py`, `cases.py`), the simulator the community uses to
compare proposals; the README's "Studies" section tabulates these variants and their results.

Every variant has one interface, the epoch of the chain reduced to the validator x server block
(dense, every validator active and permitted, no u16 storage):

  new_state, out = step(state, stake_V, weights_VxK, params)

`state` carries what a variant remembers between epochs (bonds, the previous epoch's weights and
consensus); `out` holds consensus_K, incentive_K, dividends_V and bonds_VxK. Steps are pure and
jittable; a run over epochs is a `lax.scan` (`run`), and `jax.vmap` runs many cases or draws at
once. Everything is built from the chain's kernels (`bittensor_jax.chain.kernels`): the consensus
is `weighted_median_col` (docs/chain.md §1.7), clipping `col_clip` (1.8), the bonds penalty
`interpolate` (1.9), the Yuma3 EMA `mat_ema_alpha` and the liquid-alpha sigmoid `sigmoid_safe`
(1.10B). The chain's own epochs (classic, Yuma3, Yuma3 with liquid alpha) are not re-implemented
here: `cases.py` runs them through `chain.yuma.epoch` on a ledger.

Variants ([YS] names and `yumas.py` functions in brackets):

  no_memory       ["Yuma 1", `YumaRust`] classic bonds with alpha = 1: B = colnorm(S o Wtilde),
                  D = normalize(B I). The bonds forget everything each epoch ([YS] table,
                  row 1; docs/consensus.md's single-epoch study is this case).
  prev_weights    ["Yuma 2B", `Yuma2b`] the consensus comes from this epoch's weights, but the
                  clipping (hence the incentive) and the bonds use the previous epoch's weights
                  W_prev; classic EMA with alpha. Proposed so that a validator's bonds are not
                  clipped for moving to a new server before the others do.
  capacity        ["Yuma 2C", `Yuma2c`] absolute capacity bonds: each validator can hold up to
                  S_i (in units of total stake) per server; each epoch B = (1 - decay) B_old +
                  min(capacity_alpha S_i, S_i - B_old) W (purchase limited by the remaining
                  capacity), capped at S_i; D = normalize(colnorm(B) I).
  yuma3           ["Yuma 3", `Yuma3`] relative bonds in [0, 1] per (validator, server): B =
                  min(1, (1 - alpha) B_old + alpha Wtilde) (the chain's Yuma3 fixed-alpha path of
                  docs/chain.md §1.10B; [YS] uses W, i.e. beta = 0);
                  D = normalize(S o colnorm(B) I).
  yuma3_liquid_current / _previous / _mixed
                  ["Yuma 3 ... liquid alpha on", consensus mode CURRENT / PREVIOUS / MIXED]
                  yuma3 with the per-entry liquid alpha 2.0 sigmoid of docs/chain.md §1.10B, whose
                  "buying" distance d = Wtilde - C takes C from this epoch (the chain), the
                  previous epoch, or the larger of both ([YS] `charts_table_generator.py` uses
                  MIXED).
  classic         the chain's classic EMA bonds in this dense form (docs/chain.md §1.10A),
                  kept as the reference the others are compared with; `studies_test` checks
                  it against the chain's `yuma.epoch`.

Differences from [YS] that matter for numbers: the consensus is the
chain's (kappa-weighted median with the strict inequality, no renormalization of C across
servers, no epsilon in the normalizations).
"""
# pylint: disable=invalid-name
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from bittensor_jax.chain import kernels as K


class Params(NamedTuple):
  """Proportions as floats (not u16): kappa, bonds penalty beta, EMA alpha (weight of the new
  bonds; the chain's 1 - bonds_moving_average/1e6), liquid alpha bounds and steepness (the
  chain's AlphaSigmoidSteepness / 100), and the capacity variant's decay and purchase rate."""
  kappa: float = 0.5
  bonds_penalty: float = 1.0
  alpha: float = 0.1
  alpha_low: float = 0.1
  alpha_high: float = 0.3
  steepness: float = 10.0
  decay: float = 0.1
  capacity_alpha: float = 0.1


class State(NamedTuple):
  bonds_VxK: jax.Array      # the variant's bonds (meaning per variant)
  weights_VxK: jax.Array    # the previous epoch's row-normalized weights
  consensus_K: jax.Array    # the previous epoch's consensus
  started: jax.Array        # bool: an epoch has run (the previous-epoch fields are valid)


class Out(NamedTuple):
  consensus_K: jax.Array
  incentive_K: jax.Array
  dividends_V: jax.Array
  bonds_VxK: jax.Array


def init_state(n_validators: int, n_servers: int, dtype=jnp.float32) -> State:
  z = jnp.zeros((n_validators, n_servers), dtype)
  return State(z, z, jnp.zeros((n_servers,), dtype), jnp.asarray(False))


def _consensus_clip(stake_V, W_VxK, kappa):
  C_K = K.weighted_median_col(stake_V, W_VxK, jnp.asarray(kappa, W_VxK.dtype))
  return C_K, K.col_clip(W_VxK, C_K)


def _classic_dividends(B_VxK, I_K):
  return K.normalize(B_VxK @ I_K)


def _relative_dividends(stake_V, B_VxK, I_K):
  return K.normalize(stake_V * (K.col_normalize(B_VxK) @ I_K))


def classic(state: State, stake_V, W_VxK, p: Params):
  """The chain's classic Yuma (docs/chain.md §1.10A) on the dense validator x server block."""
  S_V = K.normalize(stake_V)
  W_VxK = K.row_normalize(W_VxK)
  C_K, Wc = _consensus_clip(S_V, W_VxK, p.kappa)
  I_K = K.normalize(S_V @ Wc)
  dB = K.col_normalize(S_V[:, None] * K.interpolate(W_VxK, Wc, p.bonds_penalty))
  B = jnp.where(state.started, K.col_normalize(p.alpha * dB + (1 - p.alpha) * state.bonds_VxK),
                dB)
  B = K.col_normalize(B)
  return _next(state, B, W_VxK, C_K), Out(C_K, I_K, _classic_dividends(B, I_K), B)


def no_memory(state: State, stake_V, W_VxK, p: Params):
  """[YS] "Yuma 1": classic bonds with alpha = 1 (no bond memory)."""
  return classic(state, stake_V, W_VxK, p._replace(alpha=1.0))


def prev_weights(state: State, stake_V, W_VxK, p: Params):
  """[YS] "Yuma 2B": consensus from W, clipping and bonds from the previous epoch's weights."""
  S_V = K.normalize(stake_V)
  W_VxK = K.row_normalize(W_VxK)
  Wp = jnp.where(state.started, state.weights_VxK, W_VxK)
  C_K = K.weighted_median_col(S_V, W_VxK, jnp.asarray(p.kappa, W_VxK.dtype))
  Wc = K.col_clip(Wp, C_K)
  I_K = K.normalize(S_V @ Wc)
  dB = K.col_normalize(S_V[:, None] * K.interpolate(Wp, Wc, p.bonds_penalty))
  B = jnp.where(state.started, p.alpha * dB + (1 - p.alpha) * state.bonds_VxK, dB)
  return _next(state, B, W_VxK, C_K), Out(C_K, I_K, _classic_dividends(B, I_K), B)


def capacity(state: State, stake_V, W_VxK, p: Params):
  """[YS] "Yuma 2C": absolute capacity bonds with decay (capacity S_i per server)."""
  S_V = K.normalize(stake_V)
  W_VxK = K.row_normalize(W_VxK)
  C_K, Wc = _consensus_clip(S_V, W_VxK, p.kappa)
  I_K = K.normalize(S_V @ Wc)
  cap_V1 = S_V[:, None]
  room = jnp.maximum(cap_V1 - state.bonds_VxK, 0)
  purchase = jnp.minimum(p.capacity_alpha * cap_V1, room) * W_VxK
  B = jnp.minimum((1 - p.decay) * state.bonds_VxK + purchase, cap_V1)
  return _next(state, B, W_VxK, C_K), Out(C_K, I_K, _classic_dividends(K.col_normalize(B), I_K),
                                          B)


def _yuma3(state: State, stake_V, W_VxK, p: Params, mode: str | None):
  S_V = K.normalize(stake_V)
  W_VxK = K.row_normalize(W_VxK)
  C_K, Wc = _consensus_clip(S_V, W_VxK, p.kappa)
  I_K = K.normalize(S_V @ Wc)
  Wb = K.interpolate(W_VxK, Wc, p.bonds_penalty)
  B0 = state.bonds_VxK
  if mode is None:
    alpha = jnp.asarray(p.alpha, W_VxK.dtype)
  else:
    C_prev = jnp.where(state.started, state.consensus_K, C_K)
    C_use = {"current": C_K, "previous": C_prev, "mixed": jnp.maximum(C_K, C_prev)}[mode]
    buying = Wb >= B0
    d = jnp.where(buying, jnp.clip(Wb - C_use[None, :], 0, 1), jnp.clip(B0 - Wb, 0, 1))
    sig = K.sigmoid_safe(d, jnp.asarray(p.steepness, d.dtype), jnp.asarray(0.5, d.dtype))
    alpha = jnp.clip(p.alpha_low + sig * (p.alpha_high - p.alpha_low), p.alpha_low,
                     p.alpha_high)
  B = K.mat_ema_alpha(Wb, B0, alpha)
  return _next(state, B, W_VxK, C_K), Out(C_K, I_K, _relative_dividends(S_V, B, I_K), B)


def yuma3(state, stake_V, W_VxK, p):
  """[YS] "Yuma 3": relative bonds with a fixed alpha (docs/chain.md §1.10B fixed-alpha path)."""
  return _yuma3(state, stake_V, W_VxK, p, None)


def yuma3_liquid_current(state, stake_V, W_VxK, p):
  """Yuma3 with liquid alpha 2.0, consensus of this epoch (the chain's mode)."""
  return _yuma3(state, stake_V, W_VxK, p, "current")


def yuma3_liquid_previous(state, stake_V, W_VxK, p):
  """Yuma3 with liquid alpha 2.0, consensus of the previous epoch ([YS] PREVIOUS)."""
  return _yuma3(state, stake_V, W_VxK, p, "previous")


def yuma3_liquid_mixed(state, stake_V, W_VxK, p):
  """Yuma3 with liquid alpha 2.0, the larger of both epochs' consensus ([YS] MIXED)."""
  return _yuma3(state, stake_V, W_VxK, p, "mixed")


def _next(state: State, B, W, C) -> State:
  return State(B.astype(state.bonds_VxK.dtype), W.astype(state.weights_VxK.dtype),
               C.astype(state.consensus_K.dtype), jnp.asarray(True))


VARIANTS: dict[str, Callable] = {
    "classic": classic,
    "no_memory": no_memory,
    "prev_weights": prev_weights,
    "capacity": capacity,
    "yuma3": yuma3,
    "yuma3_liquid_current": yuma3_liquid_current,
    "yuma3_liquid_previous": yuma3_liquid_previous,
    "yuma3_liquid_mixed": yuma3_liquid_mixed,
}


def get(name: str) -> Callable:
  """The step function of a variant; ValueError naming the known ones."""
  if name not in VARIANTS:
    raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {name!r}")
  return VARIANTS[name]


def run(name: str, stake_ExV: jax.Array, weights_ExVxK: jax.Array, params: Params = Params(),
        state: State | None = None) -> Out:
  """Runs a variant over E epochs (`lax.scan`); returns the per-epoch outputs stacked on axis 0.

  Args:
    name: a key of VARIANTS.
    stake_ExV: stake per epoch and validator (any scale; normalized each epoch).
    weights_ExVxK: weights per epoch (rows normalized each epoch).
    params: the variant's parameters.
    state: the starting state (default: no bonds, no previous epoch).

  Returns:
    Out with a leading epoch axis.
  """
  step = get(name)
  E, V, Kn = weights_ExVxK.shape
  state = init_state(V, Kn, weights_ExVxK.dtype) if state is None else state

  def body(st, x):
    return step(st, x[0], x[1], params)

  _, out = jax.lax.scan(body, state, (stake_ExV.astype(weights_ExVxK.dtype), weights_ExVxK))
  return out
