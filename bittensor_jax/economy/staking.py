"""Stake, unstake and register as swaps through the subnets' pools, elementwise over subnets.

Nominators stake TAO from the economy's wallet onto each subnet's delegate (validator uid 1); the
alpha bought is added to that uid's ledger stake and to `nominated_SxN`. Unstaking sells alpha
back into the pool. A registration pays the subnet's burn, which buys alpha that is burned
(subtensor `subnets/registration.rs::do_register`, docs/chain.md §5.1), and the ledger registers
the newcomer with the chain's `registration` (replacing the uid the chain would prune; that uid's
stake moves to `retired_S`, as a deregistered hotkey keeps its stake). Every TAO amount paid in
counts as inflow, every TAO paid out as outflow, for the flow EMA (SubnetTaoFlow).
"""
# pylint: disable=invalid-name
from __future__ import annotations

import jax
import jax.numpy as jnp

from bittensor_jax.chain import registration
from bittensor_jax.economy import pools
from bittensor_jax.economy import registration_market as market
from bittensor_jax.economy.config import EconomyConfig
from bittensor_jax.economy.state import Economy

DELEGATE_UID = 1   # nominators stake on the first validator of each subnet


def stake_tao(econ: Economy, tao_S: jax.Array) -> tuple[Economy, jax.Array]:
  """Stakes tao_S rao (from the wallet) on each subnet's delegate; returns (econ, alpha_bought_S).

  Orders are scaled down together when the wallet cannot pay them all; unused subnets buy nothing.
  """
  d = DELEGATE_UID
  want = jnp.where(econ.in_use_S, jnp.maximum(tao_S, 0), 0)
  total = want.sum()
  scale = jnp.where(total > econ.wallet_tao, econ.wallet_tao / jnp.maximum(total, 1), 1.0)
  paid_S = jnp.floor(want * scale).astype(jnp.int64)
  tao_in, alpha_in, bought = pools.stake(econ.tao_in_S, econ.alpha_in_S, paid_S)
  b = bought.astype(jnp.float64)
  return econ.replace(
      tao_in_S=tao_in, alpha_in_S=alpha_in, alpha_out_S=econ.alpha_out_S + bought,
      wallet_tao=econ.wallet_tao - paid_S.sum(), flow_block_S=econ.flow_block_S + paid_S,
      subnets=econ.subnets.replace(stake_N=econ.subnets.stake_N.at[:, d].add(b)),
      nominated_SxN=econ.nominated_SxN.at[:, d].add(b)), bought


def unstake_alpha(econ: Economy, alpha_S: jax.Array) -> tuple[Economy, jax.Array]:
  """Sells up to alpha_S of the nominators' alpha on each delegate; returns (econ, tao_got_S)."""
  d = DELEGATE_UID
  held = jnp.floor(econ.nominated_SxN[:, d]).astype(jnp.int64)
  a_S = jnp.where(econ.in_use_S, jnp.clip(alpha_S, 0, held), 0)
  tao_in, alpha_in, got = pools.unstake(econ.tao_in_S, econ.alpha_in_S, a_S)
  a = a_S.astype(jnp.float64)
  return econ.replace(
      tao_in_S=tao_in, alpha_in_S=alpha_in, alpha_out_S=econ.alpha_out_S - a_S,
      wallet_tao=econ.wallet_tao + got.sum(), flow_block_S=econ.flow_block_S - got,
      subnets=econ.subnets.replace(stake_N=econ.subnets.stake_N.at[:, d].add(-a)),
      nominated_SxN=econ.nominated_SxN.at[:, d].add(-a)), got


def pay_burn(econ: Economy, cfg: EconomyConfig, register_S: jax.Array) -> Economy:
  """The market side of a registration on each subnet with register_S: the burn is paid from the
  wallet (all or none of the block's registrations), the TAO buys alpha from the pool and that
  alpha is burned, and the burn price rises (docs/chain.md §5.1; [ST] `do_register`). The ledger
  side is the caller's: `register` here, or a network whose own ledger is the subnet's.

  Returns:
    the economy after paying (register_S & in use & affordable).
  """
  reg_S = register_S & econ.in_use_S
  cost_S = jnp.where(reg_S, econ.burn_S, 0)
  reg_S = reg_S & (cost_S.sum() <= econ.wallet_tao)
  cost_S = jnp.where(reg_S, cost_S, 0)
  tao_in, alpha_in, burned = pools.stake(econ.tao_in_S, econ.alpha_in_S, cost_S)
  return econ.replace(
      tao_in_S=tao_in, alpha_in_S=alpha_in,
      wallet_tao=econ.wallet_tao - cost_S.sum(), flow_block_S=econ.flow_block_S + cost_S,
      burn_S=market.bump(econ.burn_S, reg_S, cfg.burn_increase_mult, cfg.min_burn, cfg.max_burn),
      alpha_burned_S=econ.alpha_burned_S + burned)


def register(econ: Economy, cfg: EconomyConfig, register_S: jax.Array) -> Economy:
  """A newcomer registers on each subnet with register_S (at most one per subnet and block),
  paying the burn from the wallet (all or none of the block's registrations go through).

  The chain's pruning picks the uid (docs/chain.md §5.2). In these small ledgers (a handful of
  miners, where mainnet has 256 uids) it can land on a validator once every miner is immune; such
  a registration is refused here (nothing paid), so validators and their nominators' stake stay.
  """
  V = econ.root_tao_V.shape[0]
  prune_S = jax.vmap(registration.neuron_to_prune)(econ.subnets)
  full_S = econ.subnets.in_use_N.all(-1)
  validator_hit_S = full_S & (prune_S >= 1) & (prune_S <= V)
  reg_S = register_S & econ.in_use_S & ~validator_hit_S
  reg_S = reg_S & (jnp.where(reg_S, econ.burn_S, 0).sum() <= econ.wallet_tao)

  def reg_one(sub, nom_N, do):
    new, uid, replaced = registration._register(sub, 0.0)  # pylint: disable=protected-access
    hit_N = (jnp.arange(nom_N.shape[0]) == uid) & replaced
    retired = jnp.round(jnp.where(hit_N, sub.stake_N, 0.0).sum()).astype(jnp.int64)
    out = (new, jnp.where(hit_N, 0.0, nom_N), retired)
    return jax.tree.map(lambda a, b: jnp.where(do, a, b), out, (sub, nom_N, jnp.int64(0)))

  subs, nom_SxN, retired = jax.vmap(reg_one)(econ.subnets, econ.nominated_SxN, reg_S)
  econ = econ.replace(subnets=subs, nominated_SxN=nom_SxN, retired_S=econ.retired_S + retired)
  return pay_burn(econ, cfg, reg_S)
