"""The ledger: one subnet's metagraph as a pytree with static shapes (SPEC.md sections 1.1, 5, 6).

Dims: N uids (the subnet's capacity, `max_allowed_uids`); every matrix is N x N with row = the uid
that set the weights (validator) and column = the target (server), as in SPEC.md section 0.2.

Slots are allocated as the chain does: uids `0..n-1` are in use (`in_use_N`), registration appends
uid `n` until the capacity is reached, then replaces a pruned uid. So shapes never change and
registration never recompiles.

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


def require_x64() -> None:
  """Raises a clear error when float64/int64 are unavailable (money needs int64 rao)."""
  if not jax.config.jax_enable_x64:
    raise RuntimeError(
        "bittensor_jax's ledger counts rao in int64 and needs float64 for chain-exact mode: call "
        "jax.config.update('jax_enable_x64', True) before creating a subnet.")


# Hyperparameters (SPEC.md section 6). Integers are stored as on chain (u16 proportions etc.).
# name -> (default, lower bound, upper bound). Defaults are the chain storage defaults for the
# keys of scenarios/FORMAT.md; the weight-setting checks default to the permissive test-mock values
# (no rate limit, no minimum length, no max-weight limit), as the scenario files assume.
HYPER_SPEC: dict[str, tuple[Any, float, float]] = {
    "tempo": (360, 1, 50400),
    "activity_cutoff_factor_milli": (13889, 1, 10**9),
    "kappa": (32767, 0, U16_MAX),
    "bonds_moving_average": (900000, 0, 1_000_000),
    "bonds_penalty": (U16_MAX, 0, U16_MAX),
    "yuma3_enabled": (False, 0, 1),
    "liquid_alpha_enabled": (False, 0, 1),
    "alpha_low": (45875, 0, U16_MAX),
    "alpha_high": (58982, 0, U16_MAX),
    "alpha_sigmoid_steepness": (1000, -32768, 32767),
    "max_allowed_validators": (128, 0, 1 << 20),
    "stake_threshold": (0, 0, math.inf),
    "immunity_period": (4096, 0, 1 << 40),
    "min_non_immune_uids": (10, 0, 1 << 20),
    "bonds_reset_enabled": (False, 0, 1),
    "subnet_owner_uid": (NO_OWNER, NO_OWNER, 1 << 20),
    "weights_set_rate_limit": (0, 0, 1 << 40),
    "min_allowed_weights": (0, 0, 1 << 20),
    "max_weights_limit": (U16_MAX, 0, U16_MAX),
}
_BOOL_HYPER = ("yuma3_enabled", "liquid_alpha_enabled", "bonds_reset_enabled")
_FLOAT_HYPER = ("stake_threshold",)


@flax.struct.dataclass
class Hyper:
  """Numeric hyperparameters as array leaves, so a sweep can vmap over them (SPEC.md section 6)."""
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

  @classmethod
  def create(cls, **overrides) -> "Hyper":
    """Chain defaults with overrides; a bad name or value raises ValueError naming the field."""
    require_x64()  # before any array: int64 fields would silently become int32
    unknown = set(overrides) - set(HYPER_SPEC)
    if unknown:
      raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)}; known: {sorted(HYPER_SPEC)}")
    values = {}
    for name, (default, lo, hi) in HYPER_SPEC.items():
      v = overrides.get(name, default)
      if v is None and name == "subnet_owner_uid":
        v = NO_OWNER
      if isinstance(v, bool) and name not in _BOOL_HYPER:
        raise ValueError(f"hyperparameter {name}: expected a number, got {v!r}")
      if not isinstance(v, (int, float, bool, np.integer, np.floating, np.bool_)):
        raise ValueError(f"hyperparameter {name}: expected a number, got {v!r}")
      if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"hyperparameter {name}: must be finite, got {v!r}")
      if name not in _FLOAT_HYPER and name not in _BOOL_HYPER and float(v) != int(v):
        raise ValueError(f"hyperparameter {name}: must be an integer, got {v!r}")
      if not lo <= v <= hi:
        raise ValueError(f"hyperparameter {name}: {v!r} is outside [{lo}, {hi}]")
      if name in _BOOL_HYPER:
        values[name] = jnp.asarray(bool(v))
      elif name in _FLOAT_HYPER:
        values[name] = jnp.asarray(float(v), jnp.float64)
      else:
        values[name] = jnp.asarray(int(v), jnp.int64)
    if values["alpha_low"] > values["alpha_high"]:
      raise ValueError("hyperparameter alpha_low: must be <= alpha_high")
    return cls(**values)


@flax.struct.dataclass
class Subnet:
  """One subnet's metagraph: stored chain state plus the outputs of the last epoch."""
  in_use_N: jax.Array             # bool[N] uid registered (uids 0..n-1)
  stake_N: jax.Array              # f64[N] stake weight s~ before the threshold (SPEC 1.1)
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
  hyper: Hyper

  @property
  def capacity(self) -> int:
    return self.in_use_N.shape[-1]

  @property
  def n(self) -> jax.Array:
    """SubnetworkN: the number of registered uids."""
    return self.in_use_N.sum(-1)


def empty_subnet(capacity: int, hyper: Hyper | None = None, *, block: int = 0,
                 total_issuance: int = 0) -> Subnet:
  """A subnet with `capacity` free uid slots."""
  require_x64()
  if not isinstance(capacity, (int, np.integer)) or capacity < 1:
    raise ValueError(f"capacity: expected a positive integer, got {capacity!r}")
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
      hyper=hyper if hyper is not None else Hyper.create())


def _vector(name: str, values, n: int, dtype) -> np.ndarray:
  arr = np.asarray(values)
  if arr.shape != (n,):
    raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
  if dtype is bool:
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
      raise ValueError(f"{name}: expected booleans")
    return arr.astype(bool)
  if not np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
    raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
  if not np.isfinite(arr).all():
    raise ValueError(f"{name}: contains NaN or inf")
  if (arr < 0).any():
    raise ValueError(f"{name}: contains negative values (e.g. {arr[arr < 0][0]})")
  return arr.astype(dtype)


def subnet_from_neurons(stake, registered_at, last_update, validator_permit, *,
                        capacity: int | None = None, hyper: Hyper | None = None,
                        block: int = 0) -> Subnet:
  """A subnet whose uids `0..n-1` are registered with the given per-uid state (host-side checks).

  Args:
    stake: stake weight per uid (before the threshold), nonnegative and finite.
    registered_at: block at registration per uid.
    last_update: block of the last weight setting per uid.
    validator_permit: permits as written by a previous epoch.
    capacity: number of uid slots, at least n (default n).
    hyper: hyperparameters (default chain storage defaults).
    block: the current block.
  """
  n = len(np.asarray(stake).reshape(-1))
  capacity = n if capacity is None else capacity
  if capacity < n:
    raise ValueError(f"max_allowed_uids: capacity {capacity} is below the number of neurons {n}")
  sub = empty_subnet(capacity, hyper, block=block)
  pad = lambda a: np.concatenate([a, np.zeros((capacity - n,), a.dtype)])
  return sub.replace(
      in_use_N=jnp.asarray(pad(np.ones((n,), bool))),
      stake_N=jnp.asarray(pad(_vector("stake", stake, n, np.float64))),
      registered_at_N=jnp.asarray(pad(_vector("registered_at", registered_at, n, np.int64))),
      last_update_N=jnp.asarray(pad(_vector("last_update", last_update, n, np.int64))),
      permit_N=jnp.asarray(pad(_vector("validator_permit", validator_permit, n, bool))),
      active_N=jnp.asarray(pad(np.ones((n,), bool))))


def check_subnet(sub: Subnet) -> None:
  """Host-side validation of a ledger before it enters jit; ValueError names the field."""
  N = sub.in_use_N.shape[-1]
  for f in dataclasses.fields(Subnet):
    v = getattr(sub, f.name)
    if f.name == "hyper":
      continue
    want = (N, N) if f.name.endswith("_NxN") else (N,) if f.name.endswith("_N") else ()
    if tuple(v.shape[-len(want):] if want else ()) != want:
      raise ValueError(f"{f.name}: expected trailing shape {want}, got {tuple(v.shape)}")
  stake = np.asarray(sub.stake_N)
  if not np.isfinite(stake).all():
    raise ValueError("stake_N: contains NaN or inf")
  if (stake < 0).any():
    raise ValueError("stake_N: contains negative stake")
  for name in ("weights_NxN", "bonds_NxN"):
    v = np.asarray(getattr(sub, name))
    if (v < 0).any() or (v > U16_MAX).any():
      raise ValueError(f"{name}: values must be u16 (0..65535)")
