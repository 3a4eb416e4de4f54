"""Every Yuma variant with the chain's interface: a drop-in for `chain.yuma.epoch`.

  subnet, out, state = epoch(subnet, emission, state, variant=name)

runs one epoch of the community variant `name` (a key of `variants.CORES`) on the ledger, exactly
where `bittensor_jax.chain.yuma.epoch(subnet, emission)` is called. The ledger side is the chain's
(docs/chain.md §1.2-1.6, §1.10 masks and persistence, §1.11): activity, the stake threshold and I32F32
shares, old vs new permits, active stake, the weight masks (permits, self-weights, outdated rows,
commit-reveal) over the u16 weights, the bond columns of re-registered uids dropped (t0 <= r_j),
the bond rows persisted by permit, and the emission split into rao. The middle (consensus,
clipping, incentive, bonds, dividends) is the variant's core from `variants.py`, the same function
the dense form (`variants.dense_step`) calls; the `classic` core is the chain's §1.10A, so
`epoch(..., variant="classic")` returns what `yuma.epoch` returns, bit for bit.

Parameters come from the ledger's `Hyper` as in the chain: kappa, bonds_penalty, alpha = 1 -
bonds_moving_average/1e6, alpha_low/high, alpha_sigmoid_steepness/100. The variant name, not
`yuma3_enabled`/`liquid_alpha_enabled`, selects the bond rule. What the chain has no
hyperparameter for (the capacity variant's decay and purchase rate, [YS]'s server-side
winner-takes-all) comes from `extra` (a `variants.Params`; its other fields are ignored).

Bonds live in the ledger (`bonds_RxN` of a dense ledger, R = N, u16): `classic`/`no_memory` store them column-max-upscaled
and read them column-normalized (the chain's classic rule); every other variant stores its bonds
as plain proportions (the chain's Yuma3 rule; capacity bonds are in units of total stake, at most
the validator's share). What the ledger does not hold travels in `LedgerState`: the previous
epoch's weights (`prev_weights`) and consensus (liquid alpha PREVIOUS / MIXED).
"""
# pylint: disable=invalid-name
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from bittensor_jax.chain import commit_reveal
from bittensor_jax.chain import kernels as K
from bittensor_jax.chain.ledger import Subnet
from bittensor_jax.chain import yuma
from bittensor_jax.chain.yuma import EpochOut
from bittensor_jax.studies import variants


class LedgerState(NamedTuple):
  """A variant's memory beyond the ledger (N = the ledger's uid capacity)."""
  weights_NxN: jax.Array   # the previous epoch's masked, row-normalized weights
  consensus_N: jax.Array   # the previous epoch's consensus
  started: jax.Array       # bool: an epoch has run (the two fields above are valid)


def init_state(subnet: Subnet, dtype=None) -> LedgerState:
  """The state before a variant's first epoch on `subnet` (no previous epoch)."""
  dt = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
  N = subnet.in_use_N.shape[-1]
  return LedgerState(jnp.zeros((N, N), dt), jnp.zeros((N,), dt), jnp.asarray(False))


def _as(x, dt):
  return jnp.asarray(x).astype(dt)


def _knobs(h, extra: variants.Params, dt) -> variants.Knobs:
  alpha, keep = K.ppm_proportions(h.bonds_moving_average, dt)
  return variants.Knobs(
      kappa=K.u16_proportion(h.kappa, dt), beta=K.u16_proportion(h.bonds_penalty, dt),
      alpha=alpha, keep=keep, alpha_low=K.u16_proportion(h.alpha_low, dt),
      alpha_high=K.u16_proportion(h.alpha_high, dt),
      steepness=_as(h.alpha_sigmoid_steepness, dt) / 100, decay=_as(extra.decay, dt),
      capacity_alpha=_as(extra.capacity_alpha, dt),
      winner_takes_all=jnp.asarray(extra.winner_takes_all, bool))


@functools.partial(jax.jit, static_argnames=("variant", "dtype"))
def epoch(subnet: Subnet, emission: jax.Array, state: LedgerState, *, variant: str,
          extra: variants.Params = variants.Params(),
          dtype=None) -> tuple[Subnet, EpochOut, LedgerState]:
  """One epoch of `variant` at `subnet.block`, distributing `emission` rao.

  Args:
    subnet: the ledger before the epoch (as for `chain.yuma.epoch`).
    emission: E, rao to distribute (int64 scalar).
    state: the variant's memory (`init_state` before the first epoch).
    variant: a key of `variants.CORES` (static).
    extra: the parameters the chain has no hyperparameter for (decay, capacity_alpha,
      winner_takes_all).
    dtype: float dtype of the epoch math (static; default float64 under x64).

  Returns:
    (the ledger after the epoch: bonds, permits, outputs, `last_epoch_block`, `epoch_count` + 1,
    as `yuma.epoch` writes them; the `EpochOut`; the next state).

  Raises:
    ValueError: `variant` is not a key of `variants.CORES` (raised while tracing, before any
      computation), or `rows` when the ledger is not dense (rows < N, docs/chain.md §1.16).
  """
  core = variants.get_core(variant)
  dt = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
  h = subnet.hyper
  N = subnet.in_use_N.shape[-1]
  if subnet.row_uid_R.shape[-1] != N:
    raise ValueError(f"rows: the variant epoch computes on all N = {N} rows and needs a dense "
                     f"ledger (rows = N), got rows = {subnet.row_uid_R.shape[-1]}")
  uid_N = jnp.arange(N)
  in_use_N = subnet.in_use_N
  b = subnet.block
  owner_N = (uid_N == h.subnet_owner_uid) & in_use_N

  # §1.2 activity; §1.3 stake threshold (owner exempt) and I32F32 shares
  cutoff = jnp.maximum(h.activity_cutoff_factor_milli * h.tempo // 1000, 1)
  active_N = in_use_N & (subnet.last_update_N + cutoff >= b)
  stake_N = jnp.where(in_use_N, subnet.stake_N, 0)
  stake_N = jnp.where((jnp.floor(stake_N) < h.stake_threshold) & ~owner_N, 0, stake_N)
  S_N = K.i32f32_shares(_as(stake_N, dt))
  # §1.4 permits (masks use the old ones), §1.5 active stake
  p_N = (subnet.permit_N & in_use_N) | owner_N
  p_new_N = K.is_topk_nonzero(S_N, h.max_allowed_validators, in_use_N) | owner_N
  a_N = K.i32f32_shares(S_N * active_N * p_N)
  # §1.6 weights: presence masks, then row-normalize
  eye = jnp.eye(N, dtype=bool)
  outdated_NxN = subnet.last_update_N[:, None] <= subnet.registered_at_N[None, :]
  M = (subnet.has_weight_NxN & in_use_N[:, None] & in_use_N[None, :] & p_N[:, None]
       & ~(eye & ~(eye & owner_N[:, None])) & ~outdated_NxN & ~commit_reveal.drop_NxN(subnet))
  W = K.row_normalize(jnp.where(M, _as(subnet.weights_NxN, dt), 0))
  # §1.10 old bonds, masked by registration since the previous epoch (t0 <= r_j)
  t0 = jnp.where(subnet.last_epoch_block != 0, subnet.last_epoch_block + 1,
                 jnp.maximum(b - h.tempo, 0))
  keep_old = (subnet.has_bond_NxN & ~(t0 <= subnet.registered_at_N)[None, :]
              & in_use_N[:, None] & in_use_N[None, :])
  Bq = jnp.where(keep_old, _as(subnet.bonds_NxN, dt), 0)
  colnorm = variant in variants.READ_COLNORM
  B_old = K.col_normalize(Bq) if colnorm else K.u16_proportion(Bq, dt)

  c = core(a_N, W, B_old, _as(state.weights_NxN, dt), _as(state.consensus_N, dt),
           state.started, _knobs(h, extra, dt))
  Bn, I_N, D_N, C_N = c.bonds_VxK, c.incentive_K, c.dividends_V, c.consensus_K
  new_bonds = K.q16(K.col_max_upscale(Bn)) if colnorm else K.q16(Bn)

  # bond rows persisted: new permit -> new row; lost permit -> cleared; else unchanged
  lost_N = p_N & ~p_new_N
  pair = in_use_N[:, None] & in_use_N[None, :]
  bonds = jnp.where(p_new_N[:, None], new_bonds,
                    jnp.where(lost_N[:, None], 0, subnet.bonds_NxN))
  has_bond = jnp.where(p_new_N[:, None], Bn > 0,
                       jnp.where(lost_N[:, None], False, subnet.has_bond_NxN))
  bonds = jnp.where(pair, bonds, 0).astype(jnp.int32)
  has_bond = has_bond & pair

  # §1.11 emission split
  server_amt, validator_amt, combined_amt = yuma.split_amounts(I_N, D_N, a_N, S_N, emission)

  out = EpochOut(
      stake_N=S_N, active_N=active_N, active_stake_N=a_N, validator_permit_N=p_new_N,
      consensus_N=C_N, validator_trust_N=c.clipped_VxK.sum(axis=1), incentive_N=I_N,
      dividends_N=D_N, server_emission_N=server_amt,
      validator_emission_N=validator_amt, emission_N=combined_amt, bonds_RxN=bonds,
      row_uid_R=subnet.row_uid_R)
  f64 = lambda x: x.astype(subnet.consensus_N.dtype)
  new = subnet.replace(
      bonds_RxN=bonds, has_bond_RxN=has_bond, permit_N=p_new_N, active_N=active_N,
      consensus_N=f64(C_N), validator_trust_N=f64(out.validator_trust_N), incentive_N=f64(I_N),
      dividends_N=f64(D_N), emission_N=out.emission_N, last_epoch_block=b,
      epoch_count=subnet.epoch_count + 1)
  nxt = LedgerState(W.astype(state.weights_NxN.dtype), C_N.astype(state.consensus_N.dtype),
                    jnp.asarray(True))
  return new, out, nxt


def epoch_fn(variant: str, extra: variants.Params = variants.Params(),
             dtype=None) -> Callable[[Subnet, jax.Array, LedgerState],
                                     tuple[Subnet, EpochOut, LedgerState]]:
  """`epoch` with the variant bound: `fn(subnet, emission, state) -> (subnet, out, state)`.

  Raises:
    ValueError: unknown `variant` (checked here, before any tracing).
  """
  variants.get_core(variant)
  return functools.partial(epoch, variant=variant, extra=extra, dtype=dtype)
