"""The ledger: one subnet's metagraph as a pytree of static shapes (docs/chain.md §1.1, §5, §6).

Dims: N uids (the subnet's capacity, `max_allowed_uids`); every matrix is N x N with row = the uid
that set the weights (validator) and column = the target (server), as in docs/chain.md §0.

Slots are allocated as the chain does: uids `0..n-1` are in use (`in_use_N`), registration appends
uid `n` until the capacity is reached, then replaces a pruned uid. So shapes never change and
registration never recompiles.

Validator rows (docs/chain.md §1.15): weights and bonds are stored N x N, but only the rows of
registered uids with an old permit (stored, or the owner), a new permit or a stored bond can change
an epoch, so `yuma.epoch(..., rows=R)` computes on those R rows (R x N) and scatters them back. A
row survives permit loss in storage (masked by the epoch); a uid may store weights, self-weights
included, without a permit (they take no row until it holds a permit). With more than R such rows
`yuma.check_rows` / `yuma.epoch_many` refuse by name and a traced `epoch` falls back to all rows.

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
  weights_NxN: jax.Array          # i32[N,N] stored u16 weights (row max-upscaled)
  has_weight_NxN: jax.Array       # bool[N,N] entry present; explicit zeros can be present
  bonds_NxN: jax.Array            # i32[N,N] stored u16 bonds
  has_bond_NxN: jax.Array         # bool[N,N]
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
  commit_weights_NxCxN: jax.Array  # u16[N,C,N] committed rows, max-upscaled as set_weights stores
  commit_present_NxCxN: jax.Array  # bool[N,C,N] entry present (explicit zeros kept)
  hyper: Hyper

  @property
  def capacity(self) -> int:
    return self.in_use_N.shape[-1]

  @property
  def n(self) -> jax.Array:
    """SubnetworkN: the number of registered uids."""
    return self.in_use_N.sum(-1)


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


def empty_subnet(capacity: int, hyper: Hyper | None = None, *, block: int = 0,
                 total_issuance: int = 0) -> Subnet:
  """A subnet with `capacity` free uid slots.

  Args:
    capacity: N, the number of uid slots (`max_allowed_uids`, a u16: 1..65535).
    hyper: hyperparameters (default: chain storage defaults).
    block: the current block, in [0, MAX_BLOCK].
    total_issuance: rao issued so far, in [0, MAX_RAO].

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
  z = lambda dt: jnp.zeros((N,), dt)
  zz = lambda dt: jnp.zeros((N, N), dt)
  return Subnet(
      in_use_N=z(bool), stake_N=z(jnp.float64), weights_NxN=zz(jnp.int32),
      has_weight_NxN=zz(bool), bonds_NxN=zz(jnp.int32), has_bond_NxN=zz(bool),
      last_update_N=z(jnp.int64), registered_at_N=z(jnp.int64), permit_N=z(bool),
      active_N=z(bool), consensus_N=z(jnp.float64), validator_trust_N=z(jnp.float64),
      incentive_N=z(jnp.float64), dividends_N=z(jnp.float64), emission_N=z(jnp.int64),
      block=jnp.asarray(block, jnp.int64), last_epoch_block=jnp.asarray(0, jnp.int64),
      pending_emission=jnp.asarray(0, jnp.int64),
      total_issuance=jnp.asarray(total_issuance, jnp.int64),
      epoch_count=jnp.asarray(0, jnp.int64), commit_count_N=z(jnp.int32),
      commit_block_NxC=jnp.zeros((N, COMMIT_SLOTS), jnp.int64),
      commit_epoch_NxC=jnp.zeros((N, COMMIT_SLOTS), jnp.int64),
      commit_weights_NxCxN=jnp.zeros((N, COMMIT_SLOTS, N), jnp.uint16),
      commit_present_NxCxN=jnp.zeros((N, COMMIT_SLOTS, N), bool),
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
                        block: int = 0) -> Subnet:
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
  sub = empty_subnet(capacity, hyper, block=block)
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
  for f in dataclasses.fields(Subnet):
    v = getattr(sub, f.name)
    if f.name == "hyper":
      continue
    want = {"_NxCxN": (N, COMMIT_SLOTS, N), "_NxC": (N, COMMIT_SLOTS), "_NxN": (N, N),
            "_N": (N,)}.get("_" + f.name.rsplit("_", 1)[-1], ())
    if tuple(v.shape[-len(want):] if want else ()) != want:
      raise ValueError(f"{f.name}: expected trailing shape {want}, got {tuple(v.shape)}")
  stake = np.asarray(sub.stake_N)
  _check_range("stake_N", stake, 0, MAX_STAKE, integer=False)
  for name in ("weights_NxN", "bonds_NxN"):
    _check_range(name, np.asarray(getattr(sub, name)), 0, U16_MAX, integer=True)
  for name in ("last_update_N", "registered_at_N", "block", "last_epoch_block"):
    _check_range(name, np.asarray(getattr(sub, name)), 0, MAX_BLOCK, integer=True)
  for name in ("emission_N", "pending_emission", "total_issuance"):
    _check_range(name, np.asarray(getattr(sub, name)), 0, MAX_RAO, integer=True)
  for name in ("consensus_N", "validator_trust_N", "incentive_N", "dividends_N"):
    _check_range(name, np.asarray(getattr(sub, name)), 0, math.inf, integer=False)
  check_hyper_leaves(sub.hyper)
