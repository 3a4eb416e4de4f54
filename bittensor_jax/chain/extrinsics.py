"""Chain-side state transitions: set_weights, add_stake, reset_bonds, payout, one block.

All functions are pure over a `Subnet` ledger. The jittable forms work on dense rows (one row per
uid); `set_weights` is the per-call API at the boundary, which validates its arguments and returns
the chain's reason when a call is rejected (the state unchanged), as `internal_set_weights` does
(docs/chain.md §4.2 step 4).
"""
# pylint: disable=invalid-name
from __future__ import annotations

import enum
import functools

import jax
import jax.numpy as jnp
import numpy as np

from bittensor_jax.chain import commit_reveal
from bittensor_jax.chain import emission as emission_lib
from bittensor_jax.chain import kernels as K
from bittensor_jax.chain import yuma
from bittensor_jax.chain import ledger
from bittensor_jax.chain import rows as rows_lib
from bittensor_jax.chain.ledger import Subnet


class Rejection(enum.IntEnum):
  """Why the chain rejects a set_weights call (0 = accepted)."""
  OK = 0
  NOT_REGISTERED = 1
  STAKE_BELOW_THRESHOLD = 2
  RATE_LIMITED = 3
  NO_VALIDATOR_PERMIT = 4
  UID_NOT_REGISTERED = 5
  TOO_FEW_WEIGHTS = 6
  MAX_WEIGHT_EXCEEDED = 7
  DUPLICATE_UIDS = 8
  COMMIT_REVEAL_ENABLED = 9
  COMMIT_REVEAL_DISABLED = 10
  TOO_MANY_COMMITS = 11
  NO_FREE_ROW = 12  # the simulator's row capacity, not a chain rule (docs/chain.md §1.16)


REASONS = {
    Rejection.NOT_REGISTERED: "the calling uid is not registered",
    Rejection.STAKE_BELOW_THRESHOLD: "stake is below stake_threshold",
    Rejection.RATE_LIMITED: "weights_set_rate_limit blocks have not passed since the last update",
    Rejection.NO_VALIDATOR_PERMIT: "no validator permit (only a single self-weight or the owner "
                                   "may set weights without one)",
    Rejection.UID_NOT_REGISTERED: "a target uid is not registered",
    Rejection.TOO_FEW_WEIGHTS: "fewer weights than min(n, min_allowed_weights)",
    Rejection.MAX_WEIGHT_EXCEEDED: "a normalized weight exceeds max_weights_limit",
    Rejection.DUPLICATE_UIDS: "duplicate uids",
    Rejection.COMMIT_REVEAL_ENABLED: "commit-reveal is enabled; use commit_weights",
    Rejection.COMMIT_REVEAL_DISABLED: "commit-reveal is disabled; use set_weights",
    Rejection.TOO_MANY_COMMITS: "too many unrevealed commits",
    Rejection.NO_FREE_ROW: "no free weight row: the ledger's row capacity R is full (a simulator "
                           "limit, docs/chain.md §1.16; build the subnet with more rows)",
}


def _check_rows(subnet: Subnet, setter_N: jax.Array, values_NxN: jax.Array,
                present_NxN: jax.Array, *, commit: bool):
  """(code_N, present_NxN, stored_NxN): the chain's checks of one weight row per setter."""
  h = subnet.hyper
  N = subnet.in_use_N.shape[-1]
  uid_N = jnp.arange(N)
  b = subnet.block
  n = subnet.in_use_N.sum()
  present = present_NxN & setter_N[:, None]
  count_N = present.sum(1)
  self_only_N = (count_N == 1) & present[uid_N, uid_N]
  owner_N = uid_N == h.subnet_owner_uid
  min_len = jnp.minimum(n, h.min_allowed_weights)
  cr_on_N = jnp.broadcast_to(h.commit_reveal_weights_enabled, (N,))
  checks = [  # in the chain's order; the first failing one is reported
      (Rejection.COMMIT_REVEAL_DISABLED, ~cr_on_N) if commit else
      (Rejection.COMMIT_REVEAL_ENABLED, cr_on_N),
      (Rejection.NOT_REGISTERED, ~subnet.in_use_N),
      (Rejection.STAKE_BELOW_THRESHOLD, jnp.floor(subnet.stake_N) < h.stake_threshold),
      # `check_rate_limit`: last_update 0 is the storage default ("never set weights") and passes
      (Rejection.RATE_LIMITED,
       (h.weights_set_rate_limit > 0) & (subnet.last_update_N != 0)
       & (b - subnet.last_update_N < h.weights_set_rate_limit)),
      (Rejection.NO_VALIDATOR_PERMIT, ~(subnet.permit_N | self_only_N | owner_N)),
      (Rejection.UID_NOT_REGISTERED, (present & ~subnet.in_use_N[None, :]).any(1)),
      (Rejection.TOO_FEW_WEIGHTS, ~self_only_N & (count_N < min_len)),
      # `max_weight_limited`: a single self-weight is exempt, as from the permit and length checks
      (Rejection.MAX_WEIGHT_EXCEEDED,
       ~self_only_N & ~K.check_max_limited(values_NxN, h.max_weights_limit, present)),
  ] + ([(Rejection.TOO_MANY_COMMITS, commit_reveal.full_N(subnet))] if commit else [])
  code_N = jnp.zeros((N,), jnp.int32)
  for code, bad_N in reversed(checks):
    code_N = jnp.where(bad_N, int(code), code_N)
  code_N = jnp.where(setter_N, code_N, 0)
  stored = K.max_upscale_u16(jnp.where(present, values_NxN, 0).astype(jnp.float64))
  return code_N, present, stored


def _take_rows(subnet: Subnet, code_N, ok_N, present_NxN):
  """Gives a row to each accepted uid whose row is usable (docs/chain.md §1.16); a uid left
  without one is refused with NO_FREE_ROW. Returns (subnet, code_N, ok_N)."""
  want_N = ok_N & rows_lib.usable_rows_N(subnet, present_NxN)
  subnet, _, fits_N = rows_lib.allocate(subnet, want_N)
  code_N = jnp.where(ok_N & ~fits_N, int(Rejection.NO_FREE_ROW), code_N)
  return subnet, code_N, ok_N & fits_N


@jax.jit
def set_weights_rows(subnet: Subnet, setter_N: jax.Array, values_NxN: jax.Array,
                     present_NxN: jax.Array) -> tuple[Subnet, jax.Array]:
  """Every uid with `setter_N` submits the row `values_NxN[i]` (u16, presence `present_NxN[i]`).

  Accepted rows are stored max-upscaled (`vec_u16_max_upscale_to_u16`) with their presence
  (explicit zeros stay present), and `last_update` becomes the current block. While commit-reveal
  is enabled every call is rejected (`commit_weights_rows` instead). On a ledger with R < N rows
  a usable row needs a ledger row (docs/chain.md §1.16): with none free the call is rejected with
  `NO_FREE_ROW` (uids served in uid order; rows that this batch empties are freed after it).

  Returns:
    (subnet, code_N): the new ledger and a `Rejection` code per uid (0 where accepted or not set).
  """
  code_N, present, stored = _check_rows(subnet, setter_N, values_NxN, present_NxN, commit=False)
  ok_N = setter_N & (code_N == 0)
  subnet, code_N, ok_N = _take_rows(subnet, code_N, ok_N, present)
  b = subnet.block
  hit_R = commit_reveal.gather_uid_rows(subnet, ok_N) & (subnet.row_uid_R >= 0)
  new = subnet.replace(
      weights_RxN=jnp.where(hit_R[:, None], commit_reveal.gather_uid_rows(subnet, stored),
                            subnet.weights_RxN).astype(subnet.weights_RxN.dtype),
      has_weight_RxN=jnp.where(hit_R[:, None], commit_reveal.gather_uid_rows(subnet, present),
                               subnet.has_weight_RxN),
      last_update_N=jnp.where(ok_N, b, subnet.last_update_N))
  return rows_lib.release(new), code_N


def _u16_vector(call: str, name: str, x) -> np.ndarray:
  """A 1-D host vector of u16 integers (the chain's Vec<u16>), else ValueError naming `name`."""
  try:
    arr = np.asarray(x)
  except (ValueError, TypeError, OverflowError) as e:
    raise ValueError(f"{call} {name}: expected a list of u16 integers ({e})") from e
  if arr.ndim != 1:
    raise ValueError(f"{call} {name}: expected a 1-D list, got shape {arr.shape}")
  if arr.size == 0:  # an empty call is valid (min_allowed_weights 0 allows it): no entries
    return np.zeros((0,), np.int64)
  if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
    raise ValueError(f"{call} {name}: expected u16 integers in [0, 65535], got dtype "
                     f"{arr.dtype}")
  if not (np.isfinite(arr).all() and (arr >= 0).all() and (arr <= K.U16_MAX).all()
          and (arr == np.floor(arr)).all()):
    raise ValueError(f"{call} {name}: expected u16 integers in [0, 65535]")
  return arr.astype(np.int64)


@jax.jit
def commit_weights_rows(subnet: Subnet, setter_N: jax.Array, values_NxN: jax.Array,
                        present_NxN: jax.Array) -> tuple[Subnet, jax.Array]:
  """Every uid with `setter_N` commits the row `values_NxN[i]` (docs/chain.md §1.6 item 4).

  Needs `commit_reveal_weights_enabled`. The set_weights checks apply, then a full FIFO
  (`COMMIT_SLOTS` pending commits) rejects. An accepted row is appended to the uid's FIFO as it
  would be stored (max-upscaled, explicit zeros present) and `last_update` becomes the current
  block; `commit_reveal.reveal_due` stores it as weights `reveal_period_epochs` epochs later.
  A usable row needs a ledger row as in `set_weights_rows` (else `NO_FREE_ROW`).

  Returns:
    (subnet, code_N): the new ledger and a `Rejection` code per uid (0 where accepted or not set).
  """
  code_N, present, stored = _check_rows(subnet, setter_N, values_NxN, present_NxN, commit=True)
  ok_N = setter_N & (code_N == 0)
  subnet, code_N, ok_N = _take_rows(subnet, code_N, ok_N, present)
  return commit_reveal.push(subnet, ok_N, stored, present), code_N


def set_weights(subnet: Subnet, uid: int, uids, values) -> tuple[Subnet, str | None]:
  """One `set_weights` extrinsic at the current block: (new subnet, None) or (unchanged, reason).

  `uids` and `values` are the chain's Vec<u16> arguments; an empty call (both empty) is valid
  when `min_allowed_weights` is 0 and clears the caller's row (no entries present), setting
  `last_update` (docs/chain.md §4.2).

  Raises:
    ValueError naming the argument when it is malformed (lists of different lengths, entries
    that are not u16 integers, a caller outside the uid range); calls the chain would reject
    return its reason instead, with the subnet unchanged (while commit-reveal is enabled:
    "commit-reveal is enabled; use commit_weights").
  """
  return _one_row("set_weights", set_weights_rows, subnet, uid, uids, values)


def commit_weights(subnet: Subnet, uid: int, uids, values) -> tuple[Subnet, str | None]:
  """One `commit_weights` extrinsic at the current block: (new subnet, None) or (unchanged, reason).

  The row is revealed automatically before the first epoch at least `reveal_period_epochs`
  epochs later (docs/chain.md §1.6 item 4). Arguments are checked as for `set_weights`; the chain's
  rejections (commit-reveal disabled, the set_weights checks, "too many unrevealed commits") are
  returned as reasons.
  """
  return _one_row("commit_weights", commit_weights_rows, subnet, uid, uids, values)


def _one_row(name: str, rows_fn, subnet: Subnet, uid: int, uids, values):
  """Validates one call's arguments on the host and runs `rows_fn` for that uid alone."""
  N = subnet.in_use_N.shape[-1]
  if isinstance(uid, bool) or not isinstance(uid, (int, np.integer)):
    raise ValueError(f"{name} uid: expected an integer, got {uid!r:.60}")
  if not 0 <= int(uid) < N:
    raise ValueError(f"{name} uid: {uid} is outside the subnet's uid range [0, {N})")
  uids_a, values_a = _u16_vector(name, "uids", uids), _u16_vector(name, "values", values)
  if uids_a.shape != values_a.shape:
    raise ValueError(f"{name}: uids and values must have the same length, got "
                     f"{uids_a.size} and {values_a.size}")
  cr_on = bool(subnet.hyper.commit_reveal_weights_enabled)
  if cr_on != (name == "commit_weights"):  # the chain checks this first
    return subnet, REASONS[Rejection.COMMIT_REVEAL_ENABLED if cr_on else
                           Rejection.COMMIT_REVEAL_DISABLED]
  if (uids_a >= N).any():
    return subnet, REASONS[Rejection.UID_NOT_REGISTERED]
  if len(set(uids_a.tolist())) != len(uids_a):
    return subnet, REASONS[Rejection.DUPLICATE_UIDS]
  uid = int(uid)
  row = np.zeros((N, N), np.int32)
  pres = np.zeros((N, N), bool)
  row[uid, uids_a] = values_a.astype(np.int32)
  pres[uid, uids_a] = True
  setter = np.arange(N) == uid
  new, code = rows_fn(subnet, jnp.asarray(setter), jnp.asarray(row), jnp.asarray(pres))
  code = int(code[uid])
  if code:
    return subnet, REASONS[Rejection(code)]
  return new, None


def add_stake(subnet: Subnet, uid: int, amount) -> Subnet:
  """Raises uid's stake by `amount`, as an `add_stake` extrinsic does.

  Raises:
    ValueError naming the argument: `uid` not registered, `amount` not a finite number in
    [0, ledger.MAX_STAKE], or a stake after adding above MAX_STAKE (the chain holds u64 rao).
  """
  N = subnet.in_use_N.shape[-1]
  if isinstance(uid, bool) or not isinstance(uid, (int, np.integer)) or not 0 <= int(uid) < N \
      or not bool(subnet.in_use_N[int(uid)]):
    raise ValueError(f"add_stake uid: {uid!r:.60} is not a registered uid")
  try:
    amt = float(amount)
  except (TypeError, ValueError, OverflowError) as e:
    raise ValueError(f"add_stake amount: expected a number, got {amount!r:.60}") from e
  if isinstance(amount, bool) or not np.isfinite(amt) or not 0 <= amt <= ledger.MAX_STAKE:
    raise ValueError(f"add_stake amount: expected a finite number in [0, {ledger.U64_MAX}], "
                     f"got {amount!r:.60}")
  after = float(subnet.stake_N[int(uid)]) + amt
  if after > ledger.MAX_STAKE:
    raise ValueError(f"add_stake amount: the stake after adding ({after:.6g}) exceeds the u64 "
                     f"maximum {ledger.U64_MAX}")
  return subnet.replace(stake_N=subnet.stake_N.at[int(uid)].add(amt))


def reset_bonds(subnet: Subnet, uid: int) -> tuple[Subnet, str | None]:
  """Removes bond column `uid` from every row (needs `bonds_reset_enabled`)."""
  N = subnet.in_use_N.shape[-1]
  if isinstance(uid, bool) or not isinstance(uid, (int, np.integer)) or not 0 <= int(uid) < N:
    raise ValueError(f"reset_bonds uid: {uid!r:.60} is outside [0, {N})")
  if not bool(subnet.hyper.bonds_reset_enabled):
    return subnet, "bonds_reset_enabled is false"
  col = jnp.arange(N)[None, :] == int(uid)
  return rows_lib.release(subnet.replace(bonds_RxN=jnp.where(col, 0, subnet.bonds_RxN),
                                         has_bond_RxN=subnet.has_bond_RxN & ~col)), None


def pay(subnet: Subnet, out: yuma.EpochOut) -> Subnet:
  """Adds each uid's server and validator amounts to its stake (incentive and dividends)."""
  paid_N = (out.server_emission_N + out.validator_emission_N).astype(subnet.stake_N.dtype)
  return subnet.replace(stake_N=subnet.stake_N + jnp.where(subnet.in_use_N, paid_N, 0))


def paid_total(out: yuma.EpochOut) -> jax.Array:
  return (out.server_emission_N + out.validator_emission_N).sum()


@functools.partial(jax.jit, static_argnames=("variant", "dtype"))
def block_step(subnet: Subnet, *, variant: str = "current", dtype=None, emission=None):
  """Advances one block: mint the block emission into pending, run the epoch when due, pay it.

  `emission` (i64[] rao, traced) replaces the chain's block emission (docs/chain.md §3.1) when
  this subnet is one of many: the amount its share of the block gives it (`economy.subnet_emission`,
  alpha in dTAO). It is added to both `total_issuance` (then the subnet's own issuance) and pending.

  The epoch runs when `block - last_epoch_block >= tempo` (docs/chain.md §3.2) and distributes
  everything pending; floor rounding leaves a few rao pending for the next epoch, so stake plus
  pending always equals what was minted. The epoch runs on the ledger's R rows (docs/chain.md
  §1.16).

  Returns:
    (subnet, out, ran): the new ledger, the epoch outputs (zeros when no epoch ran), and whether
    an epoch ran in this block.
  """
  subnet = subnet.replace(block=subnet.block + 1)
  if emission is None:
    issuance, pending, _ = emission_lib.mint(subnet.total_issuance, subnet.pending_emission)
  else:
    e = jnp.asarray(emission, jnp.int64)
    issuance, pending = subnet.total_issuance + e, subnet.pending_emission + e
  subnet = subnet.replace(total_issuance=issuance, pending_emission=pending)
  due = subnet.block - subnet.last_epoch_block >= subnet.hyper.tempo

  def run(s):
    s = commit_reveal.reveal_due(s)  # due commits become weights just before the epoch
    s2, out = yuma.epoch(s, s.pending_emission, variant=variant, dtype=dtype)
    s2 = pay(s2, out)
    return s2.replace(pending_emission=s.pending_emission - paid_total(out)), out

  def skip(s):
    _, out = jax.eval_shape(lambda x: yuma.epoch(x, x.pending_emission, variant=variant,
                                                 dtype=dtype), s)
    return s, jax.tree.map(lambda sd: jnp.zeros(sd.shape, sd.dtype), out)

  subnet, out = jax.lax.cond(due, run, skip, subnet)
  return subnet, out, due
