"""The `Economy` pytree: many subnets with a static capacity axis S, the root subnet, the pools.

Dims: S subnet slots (in use where `in_use_S`), N uids per subnet (each subnet a chain ledger,
`bittensor_jax.chain.ledger.Subnet`, stacked on a leading S axis), V root validators. Every amount
of money is int64 rao, except the ledgers' stake (float64 holding whole rao, as the chain ledger
keeps it) and prices (float64 TAO per alpha).

Layout of each subnet's ledger (`create`): uid 0 is the owner hotkey (`subnet_owner_uid = 0`,
immortal, docs/chain.md §5.2), uids 1..V the validators, who are also the root validators (their
root TAO stake `root_tao_V` counts on every subnet with TaoWeight), uids V+1..N-1 the miners.
Nominators stake on the validators; `nominated_SxN` is their part of each uid's stake.

Accounting (the conservation invariants, `holdings`):
  TAO:   tao_minted - tao_recycled = total_issuance
         = Σ tao_in_S + Σ root_tao_V + wallet_tao (+ ledger stake and pending in root/single)
  alpha: alpha_minted_S = alpha_in_S + alpha_out_S + alpha_recycled_S + alpha_burned_S, and
         alpha_out_S = Σ stake + retired + pending (server, validator, root, owner) + owner,
         root and protocol holdings.
Genesis amounts are counted as minted.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from bittensor_jax.chain import ledger
from bittensor_jax.economy.config import EconomyConfig


@flax.struct.dataclass
class Economy:
  """State of the economy between subnets (docs/chain.md §3.3, §3.4)."""
  in_use_S: jax.Array            # bool[S] subnet slot in use (registered and started)
  subnets: ledger.Subnet         # [S]-stacked chain ledgers (alpha stake in dtao, TAO otherwise)
  block: jax.Array               # i64[]
  total_issuance: jax.Array      # i64[] TAO rao
  tao_in_S: jax.Array            # i64[S] SubnetTAO, pool TAO reserve
  alpha_in_S: jax.Array          # i64[S] SubnetAlphaIn, pool alpha reserve
  alpha_out_S: jax.Array         # i64[S] SubnetAlphaOut, alpha outside the pool
  ema_price_S: jax.Array         # f64[S] SubnetMovingPrice
  flow_ema_S: jax.Array          # f64[S] SubnetEmaTaoFlow (rao/block)
  flow_block_S: jax.Array        # i64[S] SubnetTaoFlow, net TAO in since the last EMA update
  start_block_S: jax.Array       # i64[S] block of start_call (young-subnet damping)
  pending_server_S: jax.Array    # i64[S] PendingServerEmission (alpha)
  pending_validator_S: jax.Array  # i64[S] PendingValidatorEmission
  pending_root_S: jax.Array      # i64[S] PendingRootAlphaDivs
  pending_owner_S: jax.Array     # i64[S] PendingOwnerCut
  miner_burned_S: jax.Array      # f64[S] MinerBurned of the last epoch
  share_S: jax.Array             # f64[S] this block's TAO shares (after the gate)
  gate_theta: jax.Array          # f64[] the gate's q-mass bar, recomputed every gate_interval
  nominated_SxN: jax.Array       # f64[S,N] nominators' alpha inside the ledgers' stake
  retired_S: jax.Array           # i64[S] stake of hotkeys replaced by a registration
  owner_alpha_S: jax.Array       # i64[S] owner cut paid to the owner
  root_alpha_S: jax.Array        # i64[S] root dividends held by root stakers
  protocol_alpha_S: jax.Array    # i64[S] SubnetProtocolAlpha (bought with excess TAO)
  root_tao_V: jax.Array          # i64[V] root stake of the root validators (TAO rao)
  root_weights_VxS: jax.Array    # f64[V,S] root weights over subnets (root regime)
  target_weights_SxNxN: jax.Array  # i32[S,N,N] u16 rows the validators submit every epoch
  burn_S: jax.Array              # i64[S] registration burn price (TAO rao)
  wallet_tao: jax.Array          # i64[] free TAO of stakers and newcomers
  tao_minted: jax.Array          # i64[] cumulative (genesis included)
  tao_recycled: jax.Array        # i64[]
  tao_emission_S: jax.Array      # i64[S] cumulative TAO emission per subnet
  alpha_minted_S: jax.Array      # i64[S] cumulative (genesis included)
  alpha_recycled_S: jax.Array    # i64[S]
  alpha_burned_S: jax.Array      # i64[S] burned by registrations
  miner_burned_alpha_S: jax.Array  # i64[S] owner-hotkey incentive recycled (MinerBurned)

  @property
  def capacity(self) -> int:
    return self.in_use_S.shape[-1]


def ledger_alpha_S(econ: Economy) -> jax.Array:
  """i64[S] stake held in the ledgers' in-use uids plus their pending emission."""
  sub = econ.subnets
  staked = jnp.where(sub.in_use_N, sub.stake_N, 0.0).sum(-1)
  return jnp.round(staked).astype(jnp.int64) + sub.pending_emission


def holdings(econ: Economy, regime: str = "dtao") -> dict[str, jax.Array]:
  """The two sides of each conservation invariant (see the module docstring).

  Args:
    econ: the state.
    regime: the config's regime; outside dtao the ledgers hold TAO, not alpha.

  Returns:
    dict with tao_issued (= minted - recycled), tao_issuance, tao_held, alpha_minted_S,
    alpha_accounted_S (in + out + recycled + burned), alpha_out_S, alpha_held_S.
  """
  V_tao = econ.root_tao_V.sum()
  alpha_held = (ledger_alpha_S(econ) + econ.retired_S + econ.pending_server_S
                + econ.pending_validator_S + econ.pending_root_S + econ.pending_owner_S
                + econ.owner_alpha_S + econ.root_alpha_S + econ.protocol_alpha_S)
  return dict(
      tao_issued=econ.tao_minted - econ.tao_recycled, tao_issuance=econ.total_issuance,
      tao_held=(econ.tao_in_S.sum() + V_tao + econ.wallet_tao
                + (0 if regime == "dtao" else ledger_alpha_S(econ).sum())),
      alpha_minted_S=econ.alpha_minted_S,
      alpha_accounted_S=(econ.alpha_in_S + econ.alpha_out_S + econ.alpha_recycled_S
                         + econ.alpha_burned_S),
      alpha_out_S=econ.alpha_out_S, alpha_held_S=alpha_held)


def _int_vector(name: str, v, S: int, lo: int = 0) -> np.ndarray:
  arr = np.asarray(v)
  if arr.shape == ():
    arr = np.full((S,), arr)
  if arr.shape != (S,):
    raise ValueError(f"{name}: expected shape ({S},), got {arr.shape}")
  if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
    raise ValueError(f"{name}: expected finite numbers")
  if (arr != np.floor(arr)).any():
    raise ValueError(f"{name}: expected whole rao")
  if (arr < lo).any() or (arr > 2**62).any():
    raise ValueError(f"{name}: values must be in [{lo}, 2^62]")
  return arr.astype(np.int64)


def create(cfg: EconomyConfig, *, capacity: int, in_use: int, n_uids: int = 8,
           n_validators: int = 3, pool_tao=10**12, pool_alpha=10**13, validator_alpha=10**12,
           root_tao=None, wallet_tao: int = 10**15, total_issuance: int | None = None,
           weights_SxNxN=None, root_weights_VxS=None, start_block=0) -> Economy:
  """An economy with `in_use` of `capacity` subnet slots (host-side checks, then arrays).

  Args:
    cfg: the static configuration (checked here).
    capacity: S, subnet slots (1..4096).
    in_use: subnets in use (the first `in_use` slots); 1 for the `single` regime.
    n_uids: N uids per subnet (all registered: owner, validators, miners).
    n_validators: V validators per subnet, also the root validators (1 <= V <= N - 2).
    pool_tao, pool_alpha: initial pool reserves per subnet in rao (scalars or [S]).
    validator_alpha: stake of each validator in rao (own stake; alpha in dtao, TAO otherwise).
    root_tao: i64[V] root TAO stake per root validator (default 10^15 rao each, 1M TAO).
    wallet_tao: free TAO of stakers and newcomers, rao.
    total_issuance: TAO issuance at genesis (default: exactly what is held).
    weights_SxNxN: u16 rows the validators submit every epoch (default: each validator weights
      the miners equally).
    root_weights_VxS: root weights over subnets (default: equal over the subnets in use).
    start_block: block of each subnet's start_call (scalar or [S]).

  Raises:
    ValueError naming the argument.
  """
  ledger.require_x64()
  cfg.check()
  if not isinstance(capacity, int) or not 1 <= capacity <= 4096:
    raise ValueError(f"capacity: expected an integer in [1, 4096], got {capacity!r:.60}")
  if not isinstance(in_use, int) or not 1 <= in_use <= capacity:
    raise ValueError(f"in_use: expected an integer in [1, capacity={capacity}], got {in_use!r}")
  if cfg.regime == "single" and in_use != 1:
    raise ValueError(f"in_use: the single regime has exactly one subnet, got {in_use}")
  if not isinstance(n_uids, int) or not 3 <= n_uids <= 1024:
    raise ValueError(f"n_uids: expected an integer in [3, 1024], got {n_uids!r}")
  if not isinstance(n_validators, int) or not 1 <= n_validators <= n_uids - 2:
    raise ValueError(f"n_validators: expected an integer in [1, n_uids - 2], got {n_validators!r}")
  S, N, V = capacity, n_uids, n_validators
  pool_tao_S = _int_vector("pool_tao", pool_tao, S, 1 if cfg.regime == "dtao" else 0)
  pool_alpha_S = _int_vector("pool_alpha", pool_alpha, S, 1 if cfg.regime == "dtao" else 0)
  val_alpha = _int_vector("validator_alpha", validator_alpha, 1)[0]
  root_V = _int_vector("root_tao", 10**15 if root_tao is None else root_tao, V)
  wallet = _int_vector("wallet_tao", wallet_tao, 1)[0]
  start_S = _int_vector("start_block", start_block, S)
  if cfg.regime != "dtao":   # no pools before dTAO (and none in the single regime)
    pool_tao_S, pool_alpha_S = np.zeros(S, np.int64), np.zeros(S, np.int64)
  in_use_S = np.arange(S) < in_use
  pool_tao_S, pool_alpha_S = pool_tao_S * in_use_S, pool_alpha_S * in_use_S
  if weights_SxNxN is None:
    w = np.zeros((N, N), np.int64)
    w[1:V + 1, V + 1:] = ledger.U16_MAX
    weights_SxNxN = np.broadcast_to(w, (S, N, N))
  weights_SxNxN = np.asarray(weights_SxNxN)
  if weights_SxNxN.shape != (S, N, N) or (weights_SxNxN < 0).any() or (
      weights_SxNxN > ledger.U16_MAX).any():
    raise ValueError(f"weights_SxNxN: expected u16 values of shape {(S, N, N)}")
  if root_weights_VxS is None:
    root_weights_VxS = np.broadcast_to(in_use_S.astype(np.float64), (V, S))
  root_weights_VxS = np.asarray(root_weights_VxS, np.float64)
  if root_weights_VxS.shape != (V, S) or not np.isfinite(root_weights_VxS).all() or (
      root_weights_VxS < 0).any():
    raise ValueError(f"root_weights_VxS: expected non-negative finite values of shape {(V, S)}")
  held = int(pool_tao_S.sum()) + int(root_V.sum()) + int(wallet)
  if cfg.regime != "dtao":   # the ledgers' stake is TAO before dTAO
    held += int(in_use_S.sum()) * V * int(val_alpha)
  issuance = held if total_issuance is None else int(total_issuance)
  if cfg.regime != "single" and issuance != held:
    raise ValueError(f"total_issuance: must equal the TAO held ({held}) outside the single "
                     "regime")
  if not 0 <= issuance <= ledger.MAX_RAO:
    raise ValueError(f"total_issuance: {issuance} is outside [0, {ledger.MAX_RAO}]")

  hyper = ledger.Hyper.create(tempo=cfg.tempo, subnet_owner_uid=0, max_allowed_validators=V,
                              immunity_period=cfg.tempo, min_non_immune_uids=0,
                              kappa=cfg.kappa_u16)
  stake_N = np.zeros(N)
  stake_N[1:V + 1] = float(val_alpha)
  permit_N = np.zeros(N, bool)
  permit_N[1:V + 1] = True
  one = ledger.subnet_from_neurons(stake_N, np.zeros(N), np.zeros(N), permit_N, hyper=hyper,
                                   block=0, capacity=N)
  one = one.replace(total_issuance=jnp.asarray(issuance, jnp.int64))
  subnets = jax.tree.map(lambda x: jnp.broadcast_to(x, (S,) + x.shape), one)
  subnets = subnets.replace(in_use_N=subnets.in_use_N & jnp.asarray(in_use_S)[:, None],
                            stake_N=subnets.stake_N * jnp.asarray(in_use_S)[:, None])
  val_out_S = np.where(in_use_S, V * int(val_alpha), 0) if cfg.regime == "dtao" else np.zeros(S)
  alpha_out_S = val_out_S.astype(np.int64)
  i64 = lambda x: jnp.asarray(x, jnp.int64)
  zS = jnp.zeros((S,), jnp.int64)
  spot_S = np.where(pool_alpha_S > 0, pool_tao_S / np.maximum(pool_alpha_S, 1), 0.0)
  return Economy(
      in_use_S=jnp.asarray(in_use_S), subnets=subnets, block=i64(0),
      total_issuance=i64(issuance), tao_in_S=i64(pool_tao_S), alpha_in_S=i64(pool_alpha_S),
      alpha_out_S=i64(alpha_out_S), ema_price_S=jnp.asarray(np.minimum(spot_S, 1.0)),
      flow_ema_S=jnp.zeros((S,)), flow_block_S=zS, start_block_S=i64(start_S),
      pending_server_S=zS, pending_validator_S=zS, pending_root_S=zS, pending_owner_S=zS,
      miner_burned_S=jnp.zeros((S,)), share_S=jnp.zeros((S,)), gate_theta=jnp.asarray(0.0),
      nominated_SxN=jnp.zeros((S, N)), retired_S=zS, owner_alpha_S=zS, root_alpha_S=zS,
      protocol_alpha_S=zS, root_tao_V=i64(root_V), root_weights_VxS=jnp.asarray(root_weights_VxS),
      target_weights_SxNxN=jnp.asarray(weights_SxNxN, jnp.int32),
      burn_S=jnp.full((S,), cfg.initial_burn, jnp.int64), wallet_tao=i64(wallet),
      tao_minted=i64(issuance), tao_recycled=i64(0), tao_emission_S=zS,
      alpha_minted_S=i64(pool_alpha_S + alpha_out_S), alpha_recycled_S=zS, alpha_burned_S=zS,
      miner_burned_alpha_S=zS)
