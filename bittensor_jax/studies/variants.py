"""Yuma variants the community compares with the chain, as pure epoch functions.

[YS] is bactensor/yuma-simulation (`yumas.py`, `cases.py`), the simulator the community uses to
compare proposals; the README's "Studies" section tabulates these variants and their results.

Every variant is one *core*: the consensus, clipping, incentive, bonds and dividends of an epoch
on inputs the caller has already prepared (normalized stake, row-normalized weights, the old bonds
read from storage). Two front ends call the same core:

  dense   new_state, out = step(state, stake_V, weights_VxK, params)
          the validator x server block, every validator active and permitted, float bonds kept in
          `state` (this module; `run` scans it over epochs, `jax.vmap` runs many cases at once);
  ledger  subnet, out, state = variant_epoch.epoch(subnet, emission, state, variant=name)
          the chain's interface (`bittensor_jax.chain.yuma.epoch`): masks, permits, active stake,
          u16 weights, bonds stored in the ledger (`studies/variant_epoch.py`).

Everything is built from the chain's kernels (`bittensor_jax.chain.kernels`): the consensus is
`weighted_median_col` (docs/chain.md §1.7), clipping `col_clip` (§1.8), the bonds penalty `interpolate`
(§1.9), the Yuma3 EMA `mat_ema_alpha` and the liquid-alpha sigmoid of §1.10B. The `classic` core
is the chain's §1.10A operation for operation, so its ledger form equals `chain.yuma.epoch` exactly
(`studies_test`). `cases.py` also runs the chain's own epochs (classic, Yuma3, Yuma3 with liquid
alpha) through `chain.yuma.epoch` on a ledger.

Variants ([YS] names and `yumas.py` functions in brackets; [YS] `YumaSimulationNames`):

  classic         the chain's classic EMA bonds (docs/chain.md §1.10A): B = colnorm(alpha dB + (1 - alpha)
                  colnorm(B_old)), dB = colnorm(S o Wtilde), D = normalize(B I).
  no_memory       ["Yuma 1", `YumaRust`] classic bonds with alpha = 1: B = colnorm(S o Wtilde).
                  The bonds forget everything each epoch ([YS] table, row 1; docs/consensus.md's
                  single-epoch study is this case).
  prev_weights    ["Yuma 2B", `Yuma2b`] the consensus comes from this epoch's weights, but the
                  clipping (hence the incentive) and the bonds use the previous epoch's weights
                  W_prev; classic EMA with alpha (bonds not renormalized after the EMA). Proposed
                  so that a validator's bonds are not clipped for moving to a new server before
                  the others do.
  capacity        ["Yuma 2C", `Yuma2c`] absolute capacity bonds: each validator can hold up to
                  S_i (in units of total stake) per server; each epoch B = (1 - decay) B_old +
                  min(capacity_alpha S_i, S_i - B_old) W (purchase limited by the remaining
                  capacity), capped at S_i; D = normalize(colnorm(B) I).
  yuma3           ["Yuma 3", `Yuma3`] relative bonds in [0, 1] per (validator, server): B =
                  clip((1 - alpha) B_old + alpha Wtilde, 0, 1) (the chain's Yuma3 fixed-alpha
                  path of docs/chain.md §1.10B; [YS] uses W, i.e. beta = 0);
                  D = normalize(S o colnorm(B) I).
  yuma3_liquid_current / _previous / _mixed
                  ["Yuma 3 ... liquid alpha on", consensus mode CURRENT / PREVIOUS / MIXED]
                  yuma3 with the per-entry liquid alpha 2.0 sigmoid of docs/chain.md §1.10B (used when some
                  C_j != 0, as the chain), whose "buying" distance d = Wtilde - C takes C from
                  this epoch (the chain), the previous epoch, or the larger of both ([YS]
                  `charts_table_generator.py` uses MIXED). The EMA is dense (an old bond with no
                  new weight decays), as [YS]; the chain's sparse EMA drops it (docs/chain.md §11).

Every variant also takes [YS]'s server-side winner-takes-all (`Params.winner_takes_all`, [YS]
`compute_incentive`): the incentive is 1 on the server(s) of the largest rank S @ Wbar (split
equally on ties) instead of the normalized rank.

Differences from [YS] that matter for numbers: the consensus is the chain's (kappa-weighted
median with the strict inequality, no renormalization of C across servers, no epsilon in the
normalizations).
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
  chain's AlphaSigmoidSteepness / 100), the capacity variant's decay and purchase rate, and
  [YS]'s server-side winner-takes-all incentive (a bool; may be an array, e.g. one per case)."""
  kappa: float = 0.5
  bonds_penalty: float = 1.0
  alpha: float = 0.1
  alpha_low: float = 0.1
  alpha_high: float = 0.3
  steepness: float = 10.0
  decay: float = 0.1
  capacity_alpha: float = 0.1
  winner_takes_all: bool = False


class Knobs(NamedTuple):
  """The numbers a core uses, already resolved by its front end (dense: from `Params`; ledger:
  kappa, beta, alpha, keep = 1 - alpha, alpha bounds and steepness from the ledger's `Hyper`)."""
  kappa: jax.Array
  beta: jax.Array
  alpha: jax.Array
  keep: jax.Array
  alpha_low: jax.Array
  alpha_high: jax.Array
  steepness: jax.Array
  decay: jax.Array
  capacity_alpha: jax.Array
  winner_takes_all: jax.Array


class Core(NamedTuple):
  """What a core computes (V rows that set weights, K columns that receive them)."""
  consensus_K: jax.Array
  clipped_VxK: jax.Array    # Wbar = min(W, C): validator trust is its row sum
  incentive_K: jax.Array
  dividends_V: jax.Array
  bonds_VxK: jax.Array      # the variant's new bonds, in the variant's own units


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


def knobs(p: Params, dtype) -> Knobs:
  """The dense front end's knobs: every proportion as given, keep = 1 - alpha."""
  f = lambda x: jnp.asarray(x, dtype)
  return Knobs(f(p.kappa), f(p.bonds_penalty), f(p.alpha), 1 - f(p.alpha), f(p.alpha_low),
               f(p.alpha_high), f(p.steepness), f(p.decay), f(p.capacity_alpha),
               jnp.asarray(p.winner_takes_all, bool))


# ---- the cores: (a_V, W_VxK, B_old_VxK, W_prev_VxK, C_prev_K, started, knobs) -> Core -------
# a_V: normalized (active) stake; W_VxK: row-normalized weights; B_old_VxK: the old bonds in the
# variant's units (`READ_COLNORM` says how the ledger reads them from u16).


def _incentive(a_V, Wc_VxK, wta):
  """normalize(a @ Wbar) (docs/chain.md §1.8), or [YS]'s winner-takes-all on that rank."""
  R_K = a_V @ Wc_VxK
  top_K = (R_K == R_K.max()) & (R_K > 0)
  return jnp.where(wta, K.normalize(top_K.astype(R_K.dtype)), K.normalize(R_K))


def _consensus_clip(a_V, W_VxK, k: Knobs):
  C_K = K.weighted_median_col(a_V, W_VxK, k.kappa)
  return C_K, K.col_clip(W_VxK, C_K)


def classic_core(a_V, W_VxK, B_old, W_prev, C_prev, started, k: Knobs) -> Core:
  """docs/chain.md §1.10A with B_old = colnorm(stored bonds)."""
  del W_prev, C_prev, started
  C_K, Wc = _consensus_clip(a_V, W_VxK, k)
  I_K = _incentive(a_V, Wc, k.winner_takes_all)
  dB = K.col_normalize(a_V[:, None] * K.interpolate(W_VxK, Wc, k.beta))
  B = K.col_normalize(k.alpha * dB + k.keep * B_old)
  return Core(C_K, Wc, I_K, K.normalize(B @ I_K), B)


def no_memory_core(a_V, W_VxK, B_old, W_prev, C_prev, started, k: Knobs) -> Core:
  one = jnp.ones_like(k.alpha)
  return classic_core(a_V, W_VxK, B_old, W_prev, C_prev, started,
                      k._replace(alpha=one, keep=jnp.zeros_like(one)))


def prev_weights_core(a_V, W_VxK, B_old, W_prev, C_prev, started, k: Knobs) -> Core:
  del C_prev
  Wp = jnp.where(started, W_prev, W_VxK)
  C_K = K.weighted_median_col(a_V, W_VxK, k.kappa)
  Wc = K.col_clip(Wp, C_K)
  I_K = _incentive(a_V, Wc, k.winner_takes_all)
  dB = K.col_normalize(a_V[:, None] * K.interpolate(Wp, Wc, k.beta))
  B = jnp.where(started, k.alpha * dB + k.keep * B_old, dB)
  return Core(C_K, Wc, I_K, K.normalize(B @ I_K), B)


def capacity_core(a_V, W_VxK, B_old, W_prev, C_prev, started, k: Knobs) -> Core:
  del W_prev, C_prev, started
  C_K, Wc = _consensus_clip(a_V, W_VxK, k)
  I_K = _incentive(a_V, Wc, k.winner_takes_all)
  cap_V1 = a_V[:, None]
  room = jnp.maximum(cap_V1 - B_old, 0)
  purchase = jnp.minimum(k.capacity_alpha * cap_V1, room) * W_VxK
  B = jnp.minimum((1 - k.decay) * B_old + purchase, cap_V1)
  return Core(C_K, Wc, I_K, K.normalize(K.col_normalize(B) @ I_K), B)


def _yuma3_core(a_V, W_VxK, B_old, C_prev, started, k: Knobs, mode: str | None) -> Core:
  C_K, Wc = _consensus_clip(a_V, W_VxK, k)
  I_K = _incentive(a_V, Wc, k.winner_takes_all)
  Wb = K.interpolate(W_VxK, Wc, k.beta)
  alpha = k.alpha
  if mode is not None:
    C_prev = jnp.where(started, C_prev, C_K)
    C_use = {"current": C_K, "previous": C_prev, "mixed": jnp.maximum(C_K, C_prev)}[mode]
    d = jnp.where(Wb >= B_old, jnp.clip(Wb - C_use[None, :], 0, 1), jnp.clip(B_old - Wb, 0, 1))
    x = jnp.clip(-k.steepness * (d - 0.5), -20, 20)  # docs/chain.md §1.10B, as `chain.yuma.epoch`
    lo, hi = k.alpha_low, k.alpha_high
    alpha_e = jnp.clip(lo + (hi - lo) / (1 + jnp.exp(x)), lo, hi)
    alpha = jnp.where((C_K != 0).any(), alpha_e, alpha)
  B = K.mat_ema_alpha(Wb, B_old, alpha)
  return Core(C_K, Wc, I_K, K.normalize(a_V * (K.col_normalize(B) @ I_K)), B)


def _yuma3_mode(mode):
  def core(a_V, W_VxK, B_old, W_prev, C_prev, started, k: Knobs) -> Core:
    del W_prev
    return _yuma3_core(a_V, W_VxK, B_old, C_prev, started, k, mode)
  return core


CORES: dict[str, Callable[..., Core]] = {
    "classic": classic_core,
    "no_memory": no_memory_core,
    "prev_weights": prev_weights_core,
    "capacity": capacity_core,
    "yuma3": _yuma3_mode(None),
    "yuma3_liquid_current": _yuma3_mode("current"),
    "yuma3_liquid_previous": _yuma3_mode("previous"),
    "yuma3_liquid_mixed": _yuma3_mode("mixed"),
}
# Bonds the ledger stores column-max-upscaled and reads column-normalized (the chain's classic
# rule); every other variant stores its bonds as plain u16 proportions (the chain's Yuma3 rule).
READ_COLNORM = frozenset({"classic", "no_memory"})


def get_core(name: str) -> Callable[..., Core]:
  if name not in CORES:
    raise ValueError(f"variant: expected one of {sorted(CORES)}, got {name!r}")
  return CORES[name]


# ---- the dense front end -------------------------------------------------------------------


def dense_step(name: str, state: State, stake_V, W_VxK, p: Params) -> tuple[State, Out]:
  """One epoch of variant `name` on the dense validator x server block.

  Args:
    name: a key of CORES.
    state: the variant's memory (float bonds in the variant's units, previous weights and
      consensus).
    stake_V: stake per validator (any scale; normalized here).
    weights_VxK: weights (rows normalized here).
    p: the variant's parameters.

  Returns:
    (the next state, Out(consensus_K, incentive_K, dividends_V, bonds_VxK)).
  """
  S_V = K.normalize(stake_V)
  W_VxK = K.row_normalize(W_VxK)
  c = get_core(name)(S_V, W_VxK, state.bonds_VxK, state.weights_VxK, state.consensus_K,
                     state.started, knobs(p, W_VxK.dtype))
  nxt = State(c.bonds_VxK.astype(state.bonds_VxK.dtype), W_VxK.astype(state.weights_VxK.dtype),
              c.consensus_K.astype(state.consensus_K.dtype), jnp.asarray(True))
  return nxt, Out(c.consensus_K, c.incentive_K, c.dividends_V, c.bonds_VxK)


def _stepper(name: str):
  def step(state: State, stake_V, W_VxK, p: Params):
    return dense_step(name, state, stake_V, W_VxK, p)
  step.__name__ = name
  step.__doc__ = f"`dense_step` of the {name!r} variant (see the module docstring)."
  return step


VARIANTS: dict[str, Callable] = {name: _stepper(name) for name in CORES}
classic = VARIANTS["classic"]
no_memory = VARIANTS["no_memory"]
prev_weights = VARIANTS["prev_weights"]
capacity = VARIANTS["capacity"]
yuma3 = VARIANTS["yuma3"]
yuma3_liquid_current = VARIANTS["yuma3_liquid_current"]
yuma3_liquid_previous = VARIANTS["yuma3_liquid_previous"]
yuma3_liquid_mixed = VARIANTS["yuma3_liquid_mixed"]


def get(name: str) -> Callable:
  """The dense step function of a variant; ValueError naming the known ones."""
  if name not in VARIANTS:
    raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {name!r}")
  return VARIANTS[name]


def reset_columns(state: State, reset_K: jax.Array) -> State:
  """Zeroes the bond columns of the servers in `reset_K` (bool), [YS]'s bond reset."""
  return state._replace(bonds_VxK=jnp.where(reset_K[None, :], 0, state.bonds_VxK))


def run(name: str, stake_ExV: jax.Array, weights_ExVxK: jax.Array, params: Params = Params(),
        state: State | None = None, reset_ExK: jax.Array | None = None) -> Out:
  """Runs a variant over E epochs (`lax.scan`); returns the per-epoch outputs stacked on axis 0.

  Args:
    name: a key of VARIANTS.
    stake_ExV: stake per epoch and validator (any scale; normalized each epoch).
    weights_ExVxK: weights per epoch (rows normalized each epoch).
    params: the variant's parameters.
    state: the starting state (default: no bonds, no previous epoch).
    reset_ExK: bool, the bond columns zeroed just before each epoch ([YS] `reset_bonds_index` at
      `reset_bonds_epoch`; the chain's `reset_bonds` extrinsic); default none.

  Returns:
    Out with a leading epoch axis.
  """
  step = get(name)
  E, V, Kn = weights_ExVxK.shape
  state = init_state(V, Kn, weights_ExVxK.dtype) if state is None else state
  if reset_ExK is None:
    reset_ExK = jnp.zeros((E, Kn), bool)

  def body(st, x):
    stake_V, W_VxK, reset_K = x
    return step(reset_columns(st, reset_K), stake_V, W_VxK, params)

  _, out = jax.lax.scan(body, state, (stake_ExV.astype(weights_ExVxK.dtype), weights_ExVxK,
                                      jnp.asarray(reset_ExK, bool)))
  return out
