"""The ledger: one subnet's metagraph as a pytree of static shapes (docs/chain.md §1.1, §5, §6).

Dims: N uids (the subnet's capacity, `max_allowed_uids`), R validator rows (R <= N), C commit
slots. Every matrix is R x N with row = the uid that set the weights (validator, `row_uid_R`) and
column = the target (server), as in docs/chain.md §0.

Slots are allocated as the chain does: uids `0..n-1` are in use (`in_use_N`), registration appends
uid `n` until the capacity is reached, then replaces a pruned uid. So shapes never change and
registration never recompiles.

Validator rows (docs/chain.md §1.16): weights, bonds and the commit-reveal payload are stored on R
rows (`weights_RxN`, ..., `commit_weights_RxCxN`), R a static capacity fixed at construction
(`rows=`, default N), with `row_uid_R` the uid of each row (-1: free). With R = N the map is the
identity (row i is uid i, every replay unchanged); with R < N a uid holds a row only while it
stores something the epoch can use: usable weights (an entry other than its own self-weight, or
any entry if it is the owner), a stored bond, or a pending commit. A uid gets a row when it first
stores usable weights or commits a usable row; the row is freed when the uid is replaced or the
row holds nothing. With no free row, `set_weights_rows` / `commit_weights_rows` reject the call
with `Rejection.NO_FREE_ROW` (the state unchanged for that uid) and the host-side builders raise a
ValueError naming `rows`. The epoch runs on the R rows directly (R x N). Reading
`subnet.weights_NxN` (and the other `_NxN` names) expands the rows to the dense N x N view.

Money (stake, pending emission, total issuance) is counted in rao. Stake is kept as a float64 vector
(any unit for scenario replays, rao in the simulator); issuance and pending emission are int64.
The ledger therefore needs `jax_enable_x64` (the entry points turn it on; `require_x64` says so
clearly when it is off). The epoch itself can compute in float32 for speed (see `yuma.epoch`).
"""
# pylint: disable=invalid-name
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

U16_MAX = 65535
NO_OWNER = -1
COMMIT_SLOTS = 4  # pending commit-reveal commits per uid: a FIFO of static shape (chain.md §1.6)


def require_x64() -> None:
  """Raises a clear error when float64/int64 are unavailable (money needs int64 rao)."""
  if not jax.config.jax_enable_x64:
    raise RuntimeError(
        "bittensor_jax's ledger counts rao in int64 and needs float64 for chain-exact mode: call "
        "jax.config.update('jax_enable_x64', True) before creating a subnet.")


# Bounds of the chain's storage types and of this ledger (int64 blocks and rao).
U64_MAX = 2**64 - 1
I64_MAX = 2**63 - 1
# Blocks (current block, last_update, registered_at, last epoch) are int64 here (the chain: u64).
# The bound leaves headroom for the epoch's int64 sums, last_update + activity cutoff (the cutoff
# is u32 factor * u16 tempo / 1000 < 2^39) and block_step's block + 1, so none can overflow.
MAX_BLOCK = 2**62
# Rao amounts the ledger holds in int64 (epoch emission E, pending emission, issuance).
MAX_RAO = I64_MAX
# Stake is a float64 weight; the chain holds it as u64 rao, so no uid can hold more than u64 max.
MAX_STAKE = float(U64_MAX)
# BondsMovingAverage / 10^6 must fit I32F32 (integer part below 2^31) for the chain's alpha.
BMA_MAX = 2**31 * 10**6 - 1

# Hyperparameters (docs/chain.md §6, docs/scenario_format.md): name -> (default, lowest, highest).
# Validation follows the chain's storage type of each value (the comment on each line), not the
# range of the extrinsic that sets it: e.g. tempo is a u16, so 0 and 65535 are valid states even
# though the owner may only choose [360, 50400]. Integers are stored as on chain (u16 proportions
# etc.). Defaults are the chain storage defaults for the keys of docs/scenario_format.md; the
# weight-setting checks default to the permissive test-mock values (no rate limit, no minimum
# length, no max-weight limit), as the scenario files assume.
HYPER_SPEC: dict[str, tuple[Any, float, float]] = {
    "tempo": (360, 0, U16_MAX),                              # u16 Tempo
    "activity_cutoff_factor_milli": (13889, 0, 2**32 - 1),   # u32 ActivityCutoffFactorMilli
    "kappa": (32767, 0, U16_MAX),                            # u16 Kappa
    # u64 BondsMovingAverage: alpha = 1 - bma/10^6 is the EMA weight of the new bonds. Above 10^6
    # alpha is negative: the chain's sparse EMA then keeps only the positive entries (docs/chain.md
    # §1.10), as the epoch here does. Accepted below 2^31 * 10^6, where bma/10^6 fits the chain's
    # I32F32; above it the chain's conversion saturates in one bond path and wraps in the other.
    "bonds_moving_average": (900000, 0, BMA_MAX),
    "bonds_penalty": (U16_MAX, 0, U16_MAX),                  # u16 BondsPenalty
    "yuma3_enabled": (False, 0, 1),                          # bool Yuma3On
    "liquid_alpha_enabled": (False, 0, 1),                   # bool LiquidAlphaOn
    "alpha_low": (45875, 0, U16_MAX),                        # u16 AlphaValues.0
    "alpha_high": (58982, 0, U16_MAX),                       # u16 AlphaValues.1 (>= alpha_low)
    "alpha_sigmoid_steepness": (1000, -32768, 32767),        # i16 AlphaSigmoidSteepness
    "max_allowed_validators": (128, 0, U16_MAX),             # u16 MaxAllowedValidators
    "stake_threshold": (0, 0, U64_MAX),                      # u64 StakeThreshold (stake units)
    "immunity_period": (4096, 0, U16_MAX),                   # u16 ImmunityPeriod (blocks)
    "min_non_immune_uids": (10, 0, U16_MAX),                 # u16 MinNonImmuneUids
    "bonds_reset_enabled": (False, 0, 1),                    # bool BondsResetOn
    "subnet_owner_uid": (NO_OWNER, NO_OWNER, U16_MAX),       # u16 uid of SubnetOwnerHotkey, or none
    # u64 WeightsSetRateLimit (blocks). Held in int64 as min(value, 2^63 - 1): every block
    # difference is below MAX_BLOCK, so the saturated limit rate-limits exactly as the u64 does.
    "weights_set_rate_limit": (0, 0, U64_MAX),
    "min_allowed_weights": (0, 0, U16_MAX),                  # u16 MinAllowedWeights
    "max_weights_limit": (U16_MAX, 0, U16_MAX),              # u16 MaxWeightsLimit
    "commit_reveal_weights_enabled": (False, 0, 1),          # bool CommitRevealWeightsEnabled
    # u64 RevealPeriodEpochs, held in int64 like the rate limit (no epoch count reaches 2^63)
    "reveal_period_epochs": (1, 0, U64_MAX),
}
_BOOL_HYPER = ("yuma3_enabled", "liquid_alpha_enabled", "bonds_reset_enabled",
               "commit_reveal_weights_enabled")
_FLOAT_HYPER = ("stake_threshold",)


class HyperError(ValueError):
  """A hyperparameter the chain cannot hold; `name` is the field, `reason` says why."""

  def __init__(self, name: str, reason: str):
    super().__init__(f"hyperparameter {name}: {reason}")
    self.name = name
    self.reason = reason


def _check_hyper_value(name: str, v: Any) -> int | float | bool:
  """One hyperparameter as a Python bool, int or float within its storage range."""
  _, lo, hi = HYPER_SPEC[name]
  if v is None and name == "subnet_owner_uid":
    return NO_OWNER
  if isinstance(v, (np.ndarray, jax.Array)) and v.ndim == 0:
    v = v.item()
  if isinstance(v, np.generic):
    v = v.item()
  if name in _BOOL_HYPER:
    if not (isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))):
      raise HyperError(name, f"expected true or false, got {v!r:.60}")
    return bool(v)
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    raise HyperError(name, f"expected a number, got {v!r:.60}")
  if isinstance(v, float) and not math.isfinite(v):
    raise HyperError(name, f"must be finite, got {v!r}")
  if name not in _FLOAT_HYPER and isinstance(v, float):
    if not v.is_integer():
      raise HyperError(name, f"must be an integer, got {v!r}")
    v = int(v)
  if not lo <= v <= hi:  # exact for Python ints of any size
    raise HyperError(name, f"{v!r:.60} is outside its storage range [{lo}, {hi}]")
  return float(v) if name in _FLOAT_HYPER else v


def check_hyper(**overrides) -> dict[str, int | float | bool]:
  """Host-side check of hyperparameters (no jax arrays): every name with its checked value.

  Args:
    **overrides: hyperparameter name -> value; the others take their default (HYPER_SPEC).

  Returns:
    name -> Python bool, int or float, each within its chain storage range.

  Raises:
    HyperError (a ValueError) naming the first unknown or out-of-range hyperparameter.
  """
  unknown = sorted(set(overrides) - set(HYPER_SPEC))
  if unknown:
    raise HyperError(unknown[0], f"unknown hyperparameter; known: {sorted(HYPER_SPEC)}")
  values = {name: _check_hyper_value(name, overrides.get(name, spec[0]))
            for name, spec in HYPER_SPEC.items()}
  if values["alpha_low"] > values["alpha_high"]:
    # the only setter (do_set_alpha_values) refuses it, so no chain state has alpha_low > alpha_high
    raise HyperError("alpha_low", f"must be <= alpha_high ({values['alpha_low']} > "
                     f"{values['alpha_high']})")
  return values


@flax.struct.dataclass
class Hyper:
  """Numeric hyperparameters as array leaves, so a sweep can vmap over them (docs/chain.md §6)."""
  tempo: jax.Array
  activity_cutoff_factor_milli: jax.Array
  kappa: jax.Array
  bonds_moving_average: jax.Array
  bonds_penalty: jax.Array
  yuma3_enabled: jax.Array
  liquid_alpha_enabled: jax.Array
  alpha_low: jax.Array
  alpha_high: jax.Array
  alpha_sigmoid_steepness: jax.Array
  max_allowed_validators: jax.Array
  stake_threshold: jax.Array
  immunity_period: jax.Array
  min_non_immune_uids: jax.Array
  bonds_reset_enabled: jax.Array
  subnet_owner_uid: jax.Array
  weights_set_rate_limit: jax.Array
  min_allowed_weights: jax.Array
  max_weights_limit: jax.Array
  commit_reveal_weights_enabled: jax.Array
  reveal_period_epochs: jax.Array

  @classmethod
  def create(cls, **overrides) -> "Hyper":
    """Chain defaults with overrides (bools, int64 and float64 leaves).

    Raises:
      HyperError (a ValueError) naming the field, for an unknown name or a value outside the
      hyperparameter's chain storage type (HYPER_SPEC).
    """
    require_x64()
    values = {}
    for name, v in check_hyper(**overrides).items():
      if name in _BOOL_HYPER:
        values[name] = jnp.asarray(v, bool)
      elif name in _FLOAT_HYPER:
        values[name] = jnp.asarray(v, jnp.float64)
      else:
        values[name] = jnp.asarray(min(v, I64_MAX), jnp.int64)
    return cls(**values)


@flax.struct.dataclass
class Subnet:
  """One subnet's metagraph: stored chain state plus the outputs of the last epoch."""
  in_use_N: jax.Array             # bool[N] uid registered (uids 0..n-1)
  stake_N: jax.Array              # f64[N] stake weight s~ before the threshold (chain.md §1.1)
  row_uid_R: jax.Array            # i32[R] uid whose weights/bonds/commits row r holds; -1 free
  weights_RxN: jax.Array          # i32[R,N] stored u16 weights (row max-upscaled)
  has_weight_RxN: jax.Array       # bool[R,N] entry present; explicit zeros can be present
  bonds_RxN: jax.Array            # i32[R,N] stored u16 bonds
  has_bond_RxN: jax.Array         # bool[R,N]
  last_update_N: jax.Array        # i64[N] block of the last set_weights
  registered_at_N: jax.Array      # i64[N] block at registration
  permit_N: jax.Array             # bool[N] validator permits written by the previous epoch
  active_N: jax.Array             # bool[N] as of the last epoch
  consensus_N: jax.Array          # f64[N] last epoch's C
  validator_trust_N: jax.Array    # f64[N] Tv
  incentive_N: jax.Array          # f64[N] I
  dividends_N: jax.Array          # f64[N] D
  emission_N: jax.Array           # i64[N] last epoch's floor(combined * E) in rao (pruning key)
  block: jax.Array                # i64[] current block
  last_epoch_block: jax.Array     # i64[] block of the last epoch (0 = none yet)
  pending_emission: jax.Array     # i64[] rao minted since the last epoch, paid at the next
  total_issuance: jax.Array       # i64[] rao
  # commit-reveal (docs/chain.md §1.6 item 4): per uid a FIFO of C = COMMIT_SLOTS pending commits,
  # oldest first; slots at and after commit_count_N[i] are empty
  epoch_count: jax.Array          # i64[] epochs run so far
  commit_count_N: jax.Array       # i32[N] pending commits of each uid
  commit_block_NxC: jax.Array     # i64[N,C] block of each commit
  commit_epoch_NxC: jax.Array     # i64[N,C] epoch_count at each commit
  # the payload of uid u's slot k is row row_of(u)'s slot k (a uid without a row: no usable payload)
  commit_weights_RxCxN: jax.Array  # u16[R,C,N] committed rows, max-upscaled as set_weights stores
  commit_present_RxCxN: jax.Array  # bool[R,C,N] entry present (explicit zeros kept)
  hyper: Hyper

  @property
  def capacity(self) -> int:
    return self.in_use_N.shape[-1]

  @property
  def n(self) -> jax.Array:
    """SubnetworkN: the number of registered uids."""
    return self.in_use_N.sum(-1)

  @property
  def rows(self) -> int:
    """R, the static row capacity (R = N: dense, row i is uid i)."""
    return self.row_uid_R.shape[-1]

  # Dense N x N views of the row storage (read-only; free rows and rowless uids read as empty).
  @property
  def weights_NxN(self) -> jax.Array:
    return expand_rows(self.weights_RxN, self.row_uid_R, self.capacity)

  @property
  def has_weight_NxN(self) -> jax.Array:
    return expand_rows(self.has_weight_RxN, self.row_uid_R, self.capacity)

  @property
  def bonds_NxN(self) -> jax.Array:
    return expand_rows(self.bonds_RxN, self.row_uid_R, self.capacity)

  @property
  def has_bond_NxN(self) -> jax.Array:
    return expand_rows(self.has_bond_RxN, self.row_uid_R, self.capacity)

  @property
  def commit_weights_NxCxN(self) -> jax.Array:
    return expand_rows(self.commit_weights_RxCxN, self.row_uid_R, self.capacity)

  @property
  def commit_present_NxCxN(self) -> jax.Array:
    return expand_rows(self.commit_present_RxCxN, self.row_uid_R, self.capacity)


def expand_rows(x_R: jax.Array, row_uid_R: jax.Array, N: int) -> jax.Array:
  """The dense view of row storage: x[R, ...] -> [N, ...] with row r at uid row_uid_R[r].

  Uids without a row (and free rows) read as zeros. Any leading batch axes. With R = N the map is
  the identity (an invariant of the ledger) and `x_R` is returned as is.
  """
  lead = row_uid_R.ndim - 1
  if row_uid_R.shape[-1] == N:
    return x_R

  def one(x, r):
    idx = jnp.where(r >= 0, r, N)
    return jnp.zeros((N,) + x.shape[1:], x.dtype).at[idx].set(x, mode="drop")

  for _ in range(lead):
    one = jax.vmap(one)
  return one(x_R, row_uid_R)


def row_of_N(row_uid_R: jax.Array, N: int) -> jax.Array:
  """i32[N]: the row of each uid, -1 for a uid without a row (one batch: no leading axes)."""
  R = row_uid_R.shape[-1]
  if R == N:
    return jnp.arange(N, dtype=jnp.int32)
  idx = jnp.where(row_uid_R >= 0, row_uid_R, N)
  return jnp.full((N,), -1, jnp.int32).at[idx].set(jnp.arange(R, dtype=jnp.int32), mode="drop")


def _check_range(name: str, arr: np.ndarray, lo, hi, *, integer: bool) -> None:
  """Raises ValueError naming `name` unless every entry is finite, in [lo, hi] (and integral)."""
  if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
    raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
  if arr.size == 0:
    return
  if np.issubdtype(arr.dtype, np.floating):
    if not np.isfinite(arr).all():
      raise ValueError(f"{name}: contains NaN or inf")
    if integer and (arr != np.floor(arr)).any():
      first = arr[arr != np.floor(arr)].flat[0].item()
      raise ValueError(f"{name}: expected integers, got {first!r}")
  if (arr < lo).any():
    raise ValueError(f"{name}: {arr[arr < lo].flat[0].item()!r} is below {lo}"
                     + (" (negative)" if lo == 0 else ""))
  if (arr > hi).any():
    first = arr[arr > hi].flat[0].item()
    raise ValueError(f"{name}: {first!r} is above the largest value the chain or this ledger "
                     f"can hold ({hi})")


def _scalar(name: str, v, lo, hi) -> int:
  """A Python integer in [lo, hi] (a block or an amount of rao), else ValueError naming it."""
  if isinstance(v, (np.ndarray, jax.Array)) and np.ndim(v) == 0:
    v = v.item()
  if isinstance(v, np.generic):
    v = v.item()
  if isinstance(v, float) and v.is_integer():
    v = int(v)
  if isinstance(v, bool) or not isinstance(v, int):
    raise ValueError(f"{name}: expected an integer, got {v!r:.60}")
  if not lo <= v <= hi:
    raise ValueError(f"{name}: {v} is outside [{lo}, {hi}]")
  return v


def _check_row_capacity(rows, N: int) -> int:
  """R as a Python int in [1, N] (None: N), else ValueError naming `rows`."""
  if rows is None:
    return N
  if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or not 1 <= rows <= N:
    raise ValueError(f"rows: expected an integer in [1, {N}] (the uid capacity) or None, got "
                     f"{rows!r:.60}")
  return int(rows)


def empty_subnet(capacity: int, hyper: Hyper | None = None, *, block: int = 0,
                 total_issuance: int = 0, rows: int | None = None) -> Subnet:
  """A subnet with `capacity` free uid slots.

  Args:
    capacity: N, the number of uid slots (`max_allowed_uids`, a u16: 1..65535).
    hyper: hyperparameters (default: chain storage defaults).
    block: the current block, in [0, MAX_BLOCK].
    total_issuance: rao issued so far, in [0, MAX_RAO].
    rows: R, the static number of weight/bond rows (docs/chain.md §1.16), in [1, N]; None: N
      (dense: row i is uid i).

  Raises:
    ValueError naming the argument that is out of range.
  """
  require_x64()
  if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or not (
      1 <= capacity <= U16_MAX):
    raise ValueError(f"capacity: expected an integer in [1, {U16_MAX}] (max_allowed_uids is a "
                     f"u16), got {capacity!r:.60}")
  block = _scalar("block", block, 0, MAX_BLOCK)
  total_issuance = _scalar("total_issuance", total_issuance, 0, MAX_RAO)
  N = int(capacity)
  R = _check_row_capacity(rows, N)
  z = lambda dt: jnp.zeros((N,), dt)
  zz = lambda dt: jnp.zeros((R, N), dt)
  return Subnet(
      in_use_N=z(bool), stake_N=z(jnp.float64),
      row_uid_R=jnp.arange(R, dtype=jnp.int32) if R == N else jnp.full((R,), -1, jnp.int32),
      weights_RxN=zz(jnp.int32), has_weight_RxN=zz(bool), bonds_RxN=zz(jnp.int32),
      has_bond_RxN=zz(bool),
      last_update_N=z(jnp.int64), registered_at_N=z(jnp.int64), permit_N=z(bool),
      active_N=z(bool), consensus_N=z(jnp.float64), validator_trust_N=z(jnp.float64),
      incentive_N=z(jnp.float64), dividends_N=z(jnp.float64), emission_N=z(jnp.int64),
      block=jnp.asarray(block, jnp.int64), last_epoch_block=jnp.asarray(0, jnp.int64),
      pending_emission=jnp.asarray(0, jnp.int64),
      total_issuance=jnp.asarray(total_issuance, jnp.int64),
      epoch_count=jnp.asarray(0, jnp.int64), commit_count_N=z(jnp.int32),
      commit_block_NxC=jnp.zeros((N, COMMIT_SLOTS), jnp.int64),
      commit_epoch_NxC=jnp.zeros((N, COMMIT_SLOTS), jnp.int64),
      commit_weights_RxCxN=jnp.zeros((R, COMMIT_SLOTS, N), jnp.uint16),
      commit_present_RxCxN=jnp.zeros((R, COMMIT_SLOTS, N), bool),
      hyper=hyper if hyper is not None else Hyper.create())


def _vector(name: str, values, n: int, dtype, hi=None) -> np.ndarray:
  """A host vector of n entries: booleans, or nonnegative finite numbers up to `hi`."""
  try:
    arr = np.asarray(values)
  except (ValueError, TypeError, OverflowError) as e:
    raise ValueError(f"{name}: not a vector of numbers ({e})") from e
  if arr.shape != (n,):
    raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
  if dtype is bool:
    if arr.dtype != bool and not (np.issubdtype(arr.dtype, np.number)
                                  and np.isin(arr, (0, 1)).all()):
      raise ValueError(f"{name}: expected booleans")
    return arr.astype(bool)
  integer = np.issubdtype(np.dtype(dtype), np.integer)
  _check_range(name, arr, 0, hi, integer=integer)
  return arr.astype(dtype)


def subnet_from_neurons(stake, registered_at, last_update, validator_permit, *,
                        capacity: int | None = None, hyper: Hyper | None = None,
                        block: int = 0, rows: int | None = None) -> Subnet:
  """A subnet whose uids `0..n-1` are registered with the given per-uid state (host-side checks).

  Args:
    stake: f64[n] stake weight per uid (before the threshold): finite, in [0, MAX_STAKE] (the
      chain holds stake as u64 rao), so the total is finite too.
    registered_at: i64[n] block at registration per uid, integers in [0, MAX_BLOCK].
    last_update: i64[n] block of the last weight setting per uid, integers in [0, MAX_BLOCK].
    validator_permit: bool[n] permits as written by a previous epoch.
    capacity: number of uid slots, at least n (default n), at most 65535 (u16).
    hyper: hyperparameters (default chain storage defaults).
    block: the current block, in [0, MAX_BLOCK].
    rows: R, the number of weight/bond rows (docs/chain.md §1.16), in [1, capacity]; None:
      capacity (dense).

  Raises:
    ValueError naming the argument that the chain (or this int64 ledger) cannot hold.
  """
  n = len(np.asarray(stake, dtype=object).reshape(-1))
  if n < 1:
    raise ValueError("stake: a subnet needs at least one neuron")
  capacity = n if capacity is None else capacity
  if not isinstance(capacity, (int, np.integer)) or capacity < n:
    raise ValueError(f"max_allowed_uids: capacity {capacity!r:.60} is below the number of "
                     f"neurons {n}")
  stake_n = _vector("stake", stake, n, np.float64, MAX_STAKE)
  registered_n = _vector("registered_at", registered_at, n, np.int64, MAX_BLOCK)
  last_update_n = _vector("last_update", last_update, n, np.int64, MAX_BLOCK)
  permit_n = _vector("validator_permit", validator_permit, n, bool)
  sub = empty_subnet(capacity, hyper, block=block, rows=rows)
  pad = lambda a: np.concatenate([a, np.zeros((capacity - n,), a.dtype)])
  return sub.replace(
      in_use_N=jnp.asarray(pad(np.ones((n,), bool))),
      stake_N=jnp.asarray(pad(stake_n)),
      registered_at_N=jnp.asarray(pad(registered_n)),
      last_update_N=jnp.asarray(pad(last_update_n)),
      permit_N=jnp.asarray(pad(permit_n)),
      active_N=jnp.asarray(pad(np.ones((n,), bool))))


def check_hyper_leaves(h: Hyper) -> None:
  """Host-side check of a Hyper built or changed without `Hyper.create` (any leading axes)."""
  for name, (_, lo, hi) in HYPER_SPEC.items():
    v = np.asarray(getattr(h, name))
    if name in _BOOL_HYPER:
      if v.dtype != bool:
        raise HyperError(name, f"expected a bool leaf, got dtype {v.dtype}")
      continue
    try:
      floating = name in _FLOAT_HYPER
      _check_range(f"hyperparameter {name}", v, lo, float(hi) if floating else min(hi, I64_MAX),
                   integer=not floating)
    except ValueError as e:
      raise HyperError(name, str(e).split(": ", 1)[1]) from e
  if (np.asarray(h.alpha_low) > np.asarray(h.alpha_high)).any():
    raise HyperError("alpha_low", "must be <= alpha_high")


def check_subnet(sub: Subnet) -> None:
  """Host-side validation of a ledger before it enters jit (any leading batch axes).

  Checks shapes, that stake is finite, nonnegative and at most MAX_STAKE per uid, that weights
  and bonds are u16, that blocks are in [0, MAX_BLOCK], that rao amounts are nonnegative, that the
  last epoch's outputs are finite and that every hyperparameter is within its storage range.

  Raises:
    ValueError naming the field.
  """
  N = sub.in_use_N.shape[-1]
  R = sub.row_uid_R.shape[-1]
  for f in dataclasses.fields(Subnet):
    v = getattr(sub, f.name)
    if f.name == "hyper":
      continue
    want = {"_RxCxN": (R, COMMIT_SLOTS, N), "_NxC": (N, COMMIT_SLOTS), "_RxN": (R, N),
            "_N": (N,), "_R": (R,)}.get("_" + f.name.rsplit("_", 1)[-1], ())
    if tuple(v.shape[-len(want):] if want else ()) != want:
      dense_name = {v: k for k, v in DENSE_NAMES.items()}.get(f.name)
      raise ValueError(f"{f.name}{f' (the rows of {dense_name})' if dense_name else ''}: "
                       f"expected trailing shape {want}, got {tuple(v.shape)}")
  check_row_map(sub)
  stake = np.asarray(sub.stake_N)
  _check_range("stake_N", stake, 0, MAX_STAKE, integer=False)
  for name in ("weights_RxN", "bonds_RxN"):
    _check_range(f"{name} (the rows of {name.replace('_RxN', '_NxN')})",
                 np.asarray(getattr(sub, name)), 0, U16_MAX, integer=True)
  for name in ("last_update_N", "registered_at_N", "block", "last_epoch_block"):
    _check_range(name, np.asarray(getattr(sub, name)), 0, MAX_BLOCK, integer=True)
  for name in ("emission_N", "pending_emission", "total_issuance"):
    _check_range(name, np.asarray(getattr(sub, name)), 0, MAX_RAO, integer=True)
  for name in ("consensus_N", "validator_trust_N", "incentive_N", "dividends_N"):
    _check_range(name, np.asarray(getattr(sub, name)), 0, math.inf, integer=False)
  check_hyper_leaves(sub.hyper)


def check_row_map(sub: Subnet) -> None:
  """Host-side check of the row map `row_uid_R` (any leading batch axes; docs/chain.md §1.16).

  R = N: the identity. R < N: entries in [-1, N), each uid at most once.

  Raises:
    ValueError naming `row_uid_R`.
  """
  N, R = sub.in_use_N.shape[-1], sub.row_uid_R.shape[-1]
  r = np.asarray(sub.row_uid_R).reshape(-1, R)
  if R > N:
    raise ValueError(f"row_uid_R: {R} rows exceed the uid capacity {N}")
  if R == N:
    if not (r == np.arange(N)).all():
      raise ValueError("row_uid_R: a dense ledger (R = N) maps row i to uid i")
    return
  if ((r < -1) | (r >= N)).any():
    raise ValueError(f"row_uid_R: entries must be a uid in [0, {N}) or -1 (free)")
  for one in r:
    held = one[one >= 0]
    if len(np.unique(held)) != len(held):
      raise ValueError("row_uid_R: a uid holds more than one row")


def usable_weights_N(has_weight_NxN: np.ndarray, owner: int) -> np.ndarray:
  """bool[N] (host): the uid's weight row holds an entry the epoch can use (docs/chain.md §1.16).

  Any entry but the uid's own self-weight, which the epoch drops unless the uid is the owner.
  """
  N = has_weight_NxN.shape[-1]
  eye = np.eye(N, dtype=bool) & (np.arange(N) != owner)[:, None]
  return (has_weight_NxN & ~eye).any(-1)


def with_dense(sub: Subnet, **dense) -> Subnet:
  """Host-side: the ledger with dense N x N weights / bonds written into its rows.

  For tests, studies and benchmarks that build a ledger from matrices (`Subnet.replace` routes
  these names here). Keywords: any of `weights_NxN`, `has_weight_NxN`, `bonds_NxN`,
  `has_bond_NxN` (and, dense only, `commit_weights_NxCxN`, `commit_present_NxCxN`). A dense ledger
  (R = N) stores them as given (any batch axes; traced values are fine). With R < N (one subnet,
  concrete values; the others keep their current value) the uids whose rows hold usable weights or bonds (or pending commits) get rows,
  keeping the rows they hold; other rows are dropped (docs/chain.md §1.16).

  Raises:
    ValueError naming the field for a wrong shape, or naming `rows` when more uids need a row
    than the ledger has.
  """
  N, R = sub.capacity, sub.rows
  names = ("weights_NxN", "has_weight_NxN", "bonds_NxN", "has_bond_NxN")
  unknown = sorted(set(dense) - set(DENSE_NAMES))
  if unknown:
    raise ValueError(f"{unknown[0]}: not a dense ledger field; expected one of {DENSE_NAMES}")
  if R == N:  # the identity map: the rows are the dense matrices (any batch axes, traced or not)
    return _field_replace(sub, **{DENSE_NAMES[k]: v for k, v in dense.items()})
  unknown = sorted(set(dense) - set(names))
  if unknown:
    raise ValueError(f"{unknown[0]}: only a dense ledger (rows = N) takes it as a dense matrix")
  for k, v in dense.items():
    if tuple(np.shape(v)) != (N, N):
      raise ValueError(f"{k}: expected shape ({N}, {N}), got {tuple(np.shape(v))}")
  if sub.row_uid_R.ndim != 1:
    raise ValueError("with_dense: one subnet at a time (no batch axes) when rows < capacity")
  full = {k: np.asarray(dense[k]) if k in dense else np.asarray(getattr(sub, k)) for k in names}
  owner = int(sub.hyper.subnet_owner_uid)
  need_N = (usable_weights_N(full["has_weight_NxN"], owner) | full["has_bond_NxN"].any(-1)
            | (np.asarray(sub.commit_count_N) > 0) & (np.asarray(row_of_N(sub.row_uid_R, N)) >= 0))
  row_uid = np.asarray(sub.row_uid_R).copy()
  row_uid[(row_uid >= 0) & ~need_N[np.maximum(row_uid, 0)]] = -1
  new = [u for u in np.nonzero(need_N)[0] if u not in set(row_uid.tolist())]
  free = np.nonzero(row_uid < 0)[0]
  if len(new) > len(free):
    raise ValueError(f"rows: {int(need_N.sum())} uids store usable weights or bonds but the "
                     f"ledger has rows={R} (docs/chain.md §1.16); build it with more rows")
  fresh = np.zeros(R, bool)
  fresh[free[:len(new)]] = True
  row_uid[free[:len(new)]] = new
  held = row_uid >= 0
  out = {}
  for k in names:
    x = full[k][np.maximum(row_uid, 0)]
    out[k.replace("_NxN", "_RxN")] = jnp.asarray(
        np.where(held.reshape((R,) + (1,) * (x.ndim - 1)), x, 0).astype(
            getattr(sub, k.replace("_NxN", "_RxN")).dtype))
  zero3 = lambda x: jnp.where(jnp.asarray(fresh | ~held)[:, None, None], jnp.zeros_like(x), x)
  return _field_replace(sub, row_uid_R=jnp.asarray(row_uid, jnp.int32),
                        commit_weights_RxCxN=zero3(sub.commit_weights_RxCxN),
                        commit_present_RxCxN=zero3(sub.commit_present_RxCxN), **out)


# the dense names `Subnet.replace` accepts for the row storage (docs/chain.md §1.16)
DENSE_NAMES = {"weights_NxN": "weights_RxN", "has_weight_NxN": "has_weight_RxN",
               "bonds_NxN": "bonds_RxN", "has_bond_NxN": "has_bond_RxN",
               "commit_weights_NxCxN": "commit_weights_RxCxN",
               "commit_present_NxCxN": "commit_present_RxCxN"}
_field_replace = Subnet.replace


def _replace(self: Subnet, **updates) -> Subnet:
  """`dataclasses.replace`, also taking the dense names (`weights_NxN`, ...) via `with_dense`."""
  dense = {k: updates.pop(k) for k in list(updates) if k in DENSE_NAMES}
  out = _field_replace(self, **updates)
  return with_dense(out, **dense) if dense else out


Subnet.replace = _replace


def needs_row_N(sub: Subnet) -> np.ndarray:
  """bool[N] (host, one subnet): the uids that hold something a row keeps (docs/chain.md §1.16).

  Usable weights (an entry other than a non-owner's own self-weight), a stored bond, or a pending
  commit. An R < N ledger never holds more rows than this counts.
  """
  owner = int(sub.hyper.subnet_owner_uid)
  return (usable_weights_N(np.asarray(sub.has_weight_NxN), owner)
          | np.asarray(sub.has_bond_NxN).any(-1) | (np.asarray(sub.commit_count_N) > 0))


def with_rows(sub: Subnet, rows: int | None) -> Subnet:
  """Host-side: the same subnet stored on `rows` rows (docs/chain.md §1.16; one subnet).

  The uids of `needs_row_N` get rows in uid order; what no row keeps (a non-owner's lone
  self-weight, an empty row) is what the epoch ignores, so every epoch output is unchanged.

  Raises:
    ValueError naming `rows` when it is out of range or more uids need a row than it allows.
  """
  N = sub.capacity
  R = _check_row_capacity(rows, N)
  need = needs_row_N(sub)
  if R < N and need.sum() > R:
    raise ValueError(f"rows: {int(need.sum())} uids hold weights, bonds or commits the epoch can "
                     f"use but rows={R} (docs/chain.md §1.16)")
  row_uid = np.arange(N) if R == N else np.concatenate(
      [np.nonzero(need)[0], np.full(R - need.sum(), -1)])
  held = (row_uid >= 0) & (need[np.maximum(row_uid, 0)] | (R == N))
  gather = lambda x: np.where(held.reshape((R,) + (1,) * (x.ndim - 1)),
                              np.asarray(x)[np.maximum(row_uid, 0)], 0)
  return _field_replace(
      sub, row_uid_R=jnp.asarray(row_uid, jnp.int32),
      weights_RxN=jnp.asarray(gather(sub.weights_NxN), jnp.int32),
      has_weight_RxN=jnp.asarray(gather(sub.has_weight_NxN), bool),
      bonds_RxN=jnp.asarray(gather(sub.bonds_NxN), jnp.int32),
      has_bond_RxN=jnp.asarray(gather(sub.has_bond_NxN), bool),
      commit_weights_RxCxN=jnp.asarray(gather(sub.commit_weights_NxCxN), jnp.uint16),
      commit_present_RxCxN=jnp.asarray(gather(sub.commit_present_NxCxN), bool))


def ledger_bytes(sub: Subnet) -> int:
  """Bytes of every array of the ledger (hyperparameters included)."""
  return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(sub)))
