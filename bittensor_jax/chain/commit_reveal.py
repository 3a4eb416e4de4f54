"""Commit-reveal of weights as a pure delay buffer in the ledger (docs/chain.md §1.6 item 4, §6).

With `commit_reveal_weights_enabled` a validator commits a weight row instead of setting it. The
row waits in the uid's FIFO of `COMMIT_SLOTS` pending commits (static shape, `Subnet.commit_*`) and
is stored as its weights immediately before the first epoch that runs at least
`reveal_period_epochs` epochs after the commit (the chain's automatic CR v4 reveal). `last_update`
moves at commit time. While a commit is pending, the epoch drops weight entry (i, j) when i's
earliest pending commit is older than j's registration (the UID-sniping fix). There is no
cryptography: the chain hides the row behind a drand timelock, here it is simply not yet stored.

Every function is pure, jittable and vmappable (the reveal period is a traced leaf of `Hyper`).
Dims: N uids, R rows, C = COMMIT_SLOTS. The FIFO's blocks and epochs are per uid (N x C), the
committed rows per ledger row (R x C x N, docs/chain.md §1.16). The checks of a commit (the set_weights checks plus a full FIFO)
live with the other extrinsics in `extrinsics.commit_weights_rows`.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import jax
import jax.numpy as jnp

from bittensor_jax.chain import rows as rows_lib
from bittensor_jax.chain.ledger import COMMIT_SLOTS, Subnet

NO_COMMIT = 2**63 - 1  # the commit block of a uid with no pending commit ("infinity")

__all__ = ["COMMIT_SLOTS", "NO_COMMIT", "clear", "drop_NxN", "earliest_commit_N", "full_N",
           "push", "reveal_due"]


def _valid_NxC(subnet: Subnet) -> jax.Array:
  C = subnet.commit_block_NxC.shape[-1]
  return jnp.arange(C) < subnet.commit_count_N[..., None]


def full_N(subnet: Subnet) -> jax.Array:
  """bool[N]: the uid's FIFO holds COMMIT_SLOTS pending commits (a further commit is rejected)."""
  return subnet.commit_count_N >= subnet.commit_block_NxC.shape[-1]


def gather_uid_rows(subnet: Subnet, x_N: jax.Array) -> jax.Array:
  """x[row_uid_R]: each row's entry of an N-leading array (free rows read uid 0's; mask them)."""
  if subnet.row_uid_R.shape[-1] == subnet.in_use_N.shape[-1]:
    return x_N
  return x_N[jnp.maximum(subnet.row_uid_R, 0)]


def push(subnet: Subnet, ok_N: jax.Array, stored_NxN: jax.Array,
         present_NxN: jax.Array) -> Subnet:
  """Appends row i of `stored_NxN` to uid i's FIFO for every uid with `ok_N`, at the current block.

  The caller has checked the commit (`extrinsics.commit_weights_rows`): every uid in `ok_N` has a
  free slot, and a row (`rows.allocate`) when its committed row is usable (docs/chain.md §1.16;
  a uid without a row keeps only the commit's block and epoch, its payload being unusable).
  `last_update[i]` becomes the current block (docs/chain.md §1.6 item 4: with commit-reveal on,
  the chain updates `LastUpdate` at commit time).

  Args:
    subnet: the ledger.
    ok_N: bool[N], the uids that commit.
    stored_NxN: i32[N,N] the rows as set_weights would store them (max-upscaled u16).
    present_NxN: bool[N,N] entry presence (explicit zeros are present).

  Returns:
    The ledger with the commits appended (commit block = `subnet.block`, commit epoch =
    `subnet.epoch_count`).
  """
  C = subnet.commit_block_NxC.shape[-1]
  hit_NxC = ok_N[:, None] & (jnp.arange(C)[None, :] == subnet.commit_count_N[:, None])
  hit_RxC = gather_uid_rows(subnet, hit_NxC) & (subnet.row_uid_R >= 0)[:, None]
  hit3 = hit_RxC[:, :, None]
  stored_RxN = gather_uid_rows(subnet, stored_NxN)
  present_RxN = gather_uid_rows(subnet, present_NxN)
  return subnet.replace(
      commit_count_N=subnet.commit_count_N + ok_N.astype(subnet.commit_count_N.dtype),
      commit_block_NxC=jnp.where(hit_NxC, subnet.block, subnet.commit_block_NxC),
      commit_epoch_NxC=jnp.where(hit_NxC, subnet.epoch_count, subnet.commit_epoch_NxC),
      commit_weights_RxCxN=jnp.where(hit3, stored_RxN[:, None, :].astype(jnp.uint16),
                                     subnet.commit_weights_RxCxN),
      commit_present_RxCxN=jnp.where(hit3, present_RxN[:, None, :],
                                     subnet.commit_present_RxCxN),
      last_update_N=jnp.where(ok_N, subnet.block, subnet.last_update_N))


def _shift_left(x, d_N, valid_NxC):
  """Slot k of row i becomes slot k + d_N[i]; emptied slots are zeroed."""
  C = x.shape[1]
  src = jnp.minimum(jnp.arange(C)[None, :] + d_N[:, None], C - 1)
  idx = src.reshape(src.shape + (1,) * (x.ndim - 2))
  moved = jnp.take_along_axis(x, idx, axis=1)
  keep = valid_NxC.reshape(valid_NxC.shape + (1,) * (x.ndim - 2))
  return jnp.where(keep, moved, jnp.zeros_like(moved))


@jax.jit
def reveal_due(subnet: Subnet) -> Subnet:
  """Stores every due commit as weights and removes it from the FIFO (run just before an epoch).

  A pending commit made when `epoch_count` was c is due when `epoch_count - c >=
  reveal_period_epochs`. Due commits are applied in FIFO order as set_weights stores weights
  (the row is replaced, explicit zeros are present), so the newest due commit of a uid gives its
  row; `last_update` is not changed (docs/chain.md §1.6 item 4). Commits are appended in time
  order, so the due ones are always a prefix of the FIFO. The reveal does not look at
  `commit_reveal_weights_enabled`: commits left pending when commit-reveal is switched off are
  still revealed when due.

  Returns:
    The ledger with due rows in `weights_RxN`/`has_weight_RxN` and the FIFOs shortened (rows
    left holding nothing are freed, docs/chain.md §1.16).
  """
  valid_NxC = _valid_NxC(subnet)
  age_NxC = subnet.epoch_count - subnet.commit_epoch_NxC
  due_NxC = valid_NxC & (age_NxC >= subnet.hyper.reveal_period_epochs)
  d_N = jnp.cumprod(due_NxC, axis=1).sum(axis=1).astype(subnet.commit_count_N.dtype)
  count_N = subnet.commit_count_N - d_N
  left_NxC = jnp.arange(valid_NxC.shape[1])[None, :] < count_N[:, None]
  # the payload lives on the uid's row (docs/chain.md §1.16); a uid without one revealed only
  # unusable rows, which leave it without usable weights (and without a row)
  taken_R = subnet.row_uid_R >= 0
  d_R = jnp.where(taken_R, gather_uid_rows(subnet, d_N), 0)
  last_R = jnp.maximum(d_R - 1, 0)
  row_RxN = jnp.take_along_axis(subnet.commit_weights_RxCxN, last_R[:, None, None], axis=1)[:, 0]
  pres_RxN = jnp.take_along_axis(subnet.commit_present_RxCxN, last_R[:, None, None], axis=1)[:, 0]
  any_R = d_R > 0
  left_RxC = gather_uid_rows(subnet, left_NxC) & taken_R[:, None]
  out = subnet.replace(
      weights_RxN=jnp.where(any_R[:, None], row_RxN.astype(subnet.weights_RxN.dtype),
                            subnet.weights_RxN),
      has_weight_RxN=jnp.where(any_R[:, None], pres_RxN, subnet.has_weight_RxN),
      commit_count_N=count_N,
      commit_block_NxC=_shift_left(subnet.commit_block_NxC, d_N, left_NxC),
      commit_epoch_NxC=_shift_left(subnet.commit_epoch_NxC, d_N, left_NxC),
      commit_weights_RxCxN=_shift_left(subnet.commit_weights_RxCxN, d_R, left_RxC),
      commit_present_RxCxN=_shift_left(subnet.commit_present_RxCxN, d_R, left_RxC))
  return rows_lib.release(out)


def earliest_commit_N(subnet: Subnet) -> jax.Array:
  """i64[N]: the smallest commit block among each uid's pending commits (NO_COMMIT if none)."""
  return jnp.where(_valid_NxC(subnet), subnet.commit_block_NxC, NO_COMMIT).min(axis=-1)


def drop_NxN(subnet: Subnet) -> jax.Array:
  """bool[N,N]: weight entries (i, j) the epoch drops because of a pending commit (§1.6 item 4).

  (i, j) is dropped when commit-reveal is enabled and i's earliest pending commit (after the
  reveal step) is older than j's registration block: `c_i < registered_at_j`.
  """
  c_N = earliest_commit_N(subnet)
  return (subnet.hyper.commit_reveal_weights_enabled
          & (c_N[:, None] < subnet.registered_at_N[None, :]))


def clear(subnet: Subnet, hit_N: jax.Array) -> Subnet:
  """Empties the FIFOs of the uids in `hit_N` (a replaced uid loses its pending commits, §5.3).

  The payload on their rows is zeroed too (the caller frees the rows of replaced uids).
  """
  z = lambda x: jnp.where(hit_N.reshape(hit_N.shape + (1,) * (x.ndim - 1)), jnp.zeros_like(x), x)
  hit_R = gather_uid_rows(subnet, hit_N) & (subnet.row_uid_R >= 0)
  zr = lambda x: jnp.where(hit_R[:, None, None], jnp.zeros_like(x), x)
  return subnet.replace(
      commit_count_N=z(subnet.commit_count_N), commit_block_NxC=z(subnet.commit_block_NxC),
      commit_epoch_NxC=z(subnet.commit_epoch_NxC),
      commit_weights_RxCxN=zr(subnet.commit_weights_RxCxN),
      commit_present_RxCxN=zr(subnet.commit_present_RxCxN))
