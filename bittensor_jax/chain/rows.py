"""The row map of the ledger: which uid holds which weight/bond row (docs/chain.md §1.16).

The ledger stores weights, bonds and the commit-reveal payload on R rows (`row_uid_R`: the uid of
each row, -1 free). R = N is dense (row i is uid i, nothing here changes anything). With R < N:
- a row **holds** something when its uid's weights are usable (an entry other than its own
  self-weight, or any entry for the owner: the epoch drops a non-owner's self-weight, §1.6 item
  2), it stores a bond, or its uid has a pending commit;
- a uid gets a row (`allocate`) when it stores usable weights (`set_weights_rows`, or a reveal)
  or commits a usable row (`commit_weights_rows`); the free rows are taken in row order, the
  uids in uid order;
- a row is freed (`release`) when it holds nothing, and when its uid is replaced (§5.3).
A uid without a row reads as an empty weight row and no bonds, which is what the epoch makes of it
anyway, so the epoch on the R rows equals the dense one (up to float summation order).

Every function is pure and jittable on one subnet (no batch axes; vmap for more).
"""
# pylint: disable=invalid-name
from __future__ import annotations

import jax
import jax.numpy as jnp

from bittensor_jax.chain.ledger import Subnet, row_of_N

__all__ = ["allocate", "dense", "holds_R", "release", "row_of_N", "usable_R", "usable_rows_N"]


def dense(subnet: Subnet) -> bool:
  """Static: R = N, the identity map (allocation and release do nothing)."""
  return subnet.row_uid_R.shape[-1] == subnet.in_use_N.shape[-1]


def usable_R(subnet: Subnet, has_weight_RxN: jax.Array) -> jax.Array:
  """bool[R]: the row has a weight entry the epoch can use (not only a non-owner's self-weight)."""
  N = subnet.in_use_N.shape[-1]
  uid_R = subnet.row_uid_R
  self_RxN = (uid_R[:, None] == jnp.arange(N)[None, :]) & (uid_R != subnet.hyper.subnet_owner_uid
                                                           )[:, None]
  return (has_weight_RxN & ~self_RxN).any(-1)


def usable_rows_N(subnet: Subnet, present_NxN: jax.Array) -> jax.Array:
  """bool[N]: weight row i of a call (`present_NxN[i]`) holds an entry the epoch can use."""
  N = subnet.in_use_N.shape[-1]
  uid_N = jnp.arange(N)
  self_NxN = (uid_N[:, None] == uid_N[None, :]) & (uid_N != subnet.hyper.subnet_owner_uid)[:, None]
  return (present_NxN & ~self_NxN).any(-1)


def holds_R(subnet: Subnet) -> jax.Array:
  """bool[R]: the row is taken and holds usable weights, a bond or its uid's pending commits."""
  taken_R = subnet.row_uid_R >= 0
  pending_R = subnet.commit_count_N[jnp.maximum(subnet.row_uid_R, 0)] > 0
  return taken_R & (usable_R(subnet, subnet.has_weight_RxN) | subnet.has_bond_RxN.any(-1)
                    | pending_R)


def release(subnet: Subnet) -> Subnet:
  """Frees every row that holds nothing (R < N; a dense ledger is returned as is).

  A freed row's contents are left in place and ignored (`row_uid_R` = -1 masks them everywhere);
  `allocate` zeroes a row when it hands it out.
  """
  if dense(subnet):
    return subnet
  return subnet.replace(row_uid_R=jnp.where(holds_R(subnet), subnet.row_uid_R, -1))


def allocate(subnet: Subnet, want_N: jax.Array) -> tuple[Subnet, jax.Array, jax.Array]:
  """Gives a row to every uid in `want_N` that has none, while free rows last.

  Uids are served in uid order, free rows taken in row order; a handed-out row is zeroed
  (weights, bonds, commit payload).

  Returns:
    (subnet, row_N, ok_N): the ledger with the new map, i32[N] the row of each uid after the
    allocation (-1: none) and bool[N], false exactly for the uids of `want_N` left without a row
    (no free row: the caller refuses their call, docs/chain.md §1.16).
  """
  N = subnet.in_use_N.shape[-1]
  R = subnet.row_uid_R.shape[-1]
  row_N = row_of_N(subnet.row_uid_R, N)
  if dense(subnet):
    return subnet, row_N, jnp.ones((N,), bool)
  need_N = want_N & (row_N < 0)
  rank_N = jnp.cumsum(need_N) - 1
  free_R = subnet.row_uid_R < 0
  got_N = need_N & (rank_N < free_R.sum())
  free_order_R = jnp.argsort(~free_R, stable=True).astype(jnp.int32)  # free rows first
  new_row_N = free_order_R[jnp.clip(rank_N, 0, R - 1)]
  row_uid_R = subnet.row_uid_R.at[jnp.where(got_N, new_row_N, R)].set(
      jnp.arange(N, dtype=jnp.int32), mode="drop")
  fresh_R = (row_uid_R >= 0) & (subnet.row_uid_R < 0)
  z2 = lambda x: jnp.where(fresh_R[:, None], jnp.zeros_like(x), x)
  z3 = lambda x: jnp.where(fresh_R[:, None, None], jnp.zeros_like(x), x)
  subnet = subnet.replace(
      row_uid_R=row_uid_R, weights_RxN=z2(subnet.weights_RxN),
      has_weight_RxN=z2(subnet.has_weight_RxN), bonds_RxN=z2(subnet.bonds_RxN),
      has_bond_RxN=z2(subnet.has_bond_RxN),
      commit_weights_RxCxN=z3(subnet.commit_weights_RxCxN),
      commit_present_RxCxN=z3(subnet.commit_present_RxCxN))
  return subnet, jnp.where(got_N, new_row_N, row_N), ~need_N | got_N
