"""Registration and deregistration on a fixed-size uid axis (docs/chain.md §5).

`register` appends uid n while the subnet has free slots, else replaces the uid chosen by the
current pruning rule (`get_neuron_to_prune`, docs/chain.md §5.2) and resets it as `replace_neuron`
does (§5.3). Everything is jittable: shapes never change.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bittensor_jax.chain import ledger
from bittensor_jax.chain import commit_reveal
from bittensor_jax.chain.ledger import Subnet

NO_UID = -1


def neuron_to_prune(subnet: Subnet) -> jax.Array:
  """The uid the chain would replace next, or -1 when none can be (docs/chain.md §5.2).

  The owner uid is immortal. Among the others, minimize (Emission, registration block, uid),
  separately over immune (b - r < ImmunityPeriod) and non-immune uids; prune the best non-immune
  one only while more than MinNonImmuneUids non-immune uids exist, else the best immune one. When
  there is no immune candidate either, no uid can be replaced (-1: the chain's
  NoNeuronIdAvailable); the non-immune uids are not a fallback.
  """
  h = subnet.hyper
  N = subnet.in_use_N.shape[-1]
  uid_N = jnp.arange(N)
  cand_N = subnet.in_use_N & (uid_N != h.subnet_owner_uid)
  immune_N = subnet.block - subnet.registered_at_N < h.immunity_period

  def best(mask_N):
    order = jnp.lexsort((uid_N, subnet.registered_at_N, subnet.emission_N, ~mask_N))
    return jnp.where(mask_N.any(), order[0], NO_UID)

  non_immune_N = cand_N & ~immune_N
  best_non_immune = best(non_immune_N)
  best_immune = best(cand_N & immune_N)
  return jnp.where(non_immune_N.sum() > h.min_non_immune_uids, best_non_immune, best_immune)


def clear_uid(subnet: Subnet, uid: jax.Array, stake: jax.Array) -> Subnet:
  """Resets `uid` for a new occupant registered at the current block (docs/chain.md §5.3).

  The uid's pending commit-reveal commits are dropped with it (docs/chain.md §1.6 item 4).
  """
  N = subnet.in_use_N.shape[-1]
  hit_N = jnp.arange(N) == uid
  b = subnet.block
  col = hit_N[None, :]
  zero = lambda x: jnp.where(hit_N, jnp.zeros_like(x), x)
  subnet = commit_reveal.clear(subnet, hit_N)
  # the uid's row (docs/chain.md §1.16): emptied, and freed when R < N
  row = (commit_reveal.gather_uid_rows(subnet, hit_N) & (subnet.row_uid_R >= 0))[:, None]
  dense = subnet.row_uid_R.shape[-1] == N
  return subnet.replace(
      row_uid_R=subnet.row_uid_R if dense else jnp.where(row[:, 0], -1, subnet.row_uid_R),
      in_use_N=subnet.in_use_N | hit_N,
      stake_N=jnp.where(hit_N, jnp.asarray(stake, subnet.stake_N.dtype), subnet.stake_N),
      # weights set by the uid removed; weights pointing to it set to 0 but kept
      weights_RxN=jnp.where(row | col, 0, subnet.weights_RxN),
      has_weight_RxN=subnet.has_weight_RxN & ~row,
      # its bonds row removed
      bonds_RxN=jnp.where(row, 0, subnet.bonds_RxN),
      has_bond_RxN=subnet.has_bond_RxN & ~row,
      last_update_N=jnp.where(hit_N, b, subnet.last_update_N),
      registered_at_N=jnp.where(hit_N, b, subnet.registered_at_N),
      permit_N=subnet.permit_N & ~hit_N,
      active_N=subnet.active_N | hit_N,
      consensus_N=zero(subnet.consensus_N), validator_trust_N=zero(subnet.validator_trust_N),
      incentive_N=zero(subnet.incentive_N), dividends_N=zero(subnet.dividends_N),
      emission_N=zero(subnet.emission_N))


def register(subnet: Subnet, stake) -> tuple[Subnet, jax.Array, jax.Array]:
  """Registers a new neuron with `stake` at the current block (docs/chain.md §5.1).

  Args:
    subnet: the ledger.
    stake: the newcomer's stake weight: finite, in [0, ledger.MAX_STAKE] (checked on the host
      when it is a concrete value; under an outer jit it is the caller's duty).

  Returns:
    (subnet, uid, replaced): the uid taken (-1 and the subnet unchanged when none is available:
    the chain's NoNeuronIdAvailable) and whether it replaced a registered neuron.

  Raises:
    ValueError naming `stake` when a concrete stake is NaN, infinite, negative or above u64 max.
  """
  if not isinstance(stake, jax.core.Tracer):
    try:
      s = float(np.asarray(stake))
    except (TypeError, ValueError, OverflowError) as e:
      raise ValueError(f"register stake: expected a number, got {stake!r:.60}") from e
    if not (np.isfinite(s) and 0 <= s <= ledger.MAX_STAKE):
      raise ValueError(f"register stake: expected a finite number in [0, {ledger.U64_MAX}], "
                       f"got {stake!r:.60}")
  return _register(subnet, stake)


@jax.jit
def _register(subnet: Subnet, stake: jax.Array) -> tuple[Subnet, jax.Array, jax.Array]:
  N = subnet.in_use_N.shape[-1]
  n = subnet.in_use_N.sum()
  uid = jnp.where(n < N, n, neuron_to_prune(subnet))
  replaced = (n >= N) & (uid != NO_UID)
  new = clear_uid(subnet, uid, stake)
  new = jax.tree.map(lambda a, b: jnp.where(uid != NO_UID, a, b), new, subnet)
  return new, uid, replaced
