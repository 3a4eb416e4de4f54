"""Per-subnet TAO/alpha pools: constant-product swaps, spot price, EMA price, flow EMA.

Pools are constant product x·y = k as at the launch of dynamic TAO (subtensor
`staking/stake_utils.rs`, swap v1); later runtimes moved to concentrated liquidity, not modelled.
Reserves are int64 rao; the swap's output is computed in float64 and floored after a 2^-50
relative shrink, so it never exceeds the exact constant-product output: k never falls (no swap
mints) and the pool keeps at least one rao. docs/chain.md §3.4.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import jax
import jax.numpy as jnp

_SHRINK = 1.0 - 2.0**-50   # makes the float estimate a lower bound of the exact quotient


def swap_out(reserve_in: jax.Array, reserve_out: jax.Array, amount_in: jax.Array) -> jax.Array:
  """Constant-product output floor(reserve_out·a / (reserve_in + a)), never above the exact value.

  Args:
    reserve_in, reserve_out: int64 rao reserves (any matching shapes).
    amount_in: int64 rao paid into the pool (>= 0).

  Returns:
    int64 rao paid out, in [0, reserve_out - 1] (the pool is never drained).
  """
  a = amount_in.astype(jnp.float64)
  exact = reserve_out.astype(jnp.float64) * (a / jnp.maximum(reserve_in.astype(jnp.float64) + a,
                                                             1.0))
  out = jnp.floor(exact * _SHRINK).astype(jnp.int64)
  return jnp.clip(out, 0, jnp.maximum(reserve_out - 1, 0))


def stake(tao_in: jax.Array, alpha_in: jax.Array, tao: jax.Array):
  """Stake = swap TAO for alpha (stake_utils.rs::swap_tao_for_alpha).

  Returns:
    (tao_in', alpha_in', alpha_bought): the new reserves and the alpha paid out (int64 rao).
  """
  bought = swap_out(tao_in, alpha_in, tao)
  return tao_in + tao, alpha_in - bought, bought


def unstake(tao_in: jax.Array, alpha_in: jax.Array, alpha: jax.Array):
  """Unstake = swap alpha for TAO (stake_utils.rs::swap_alpha_for_tao).

  Returns:
    (tao_in', alpha_in', tao_received).
  """
  got = swap_out(alpha_in, tao_in, alpha)
  return tao_in - got, alpha_in + alpha, got


def spot_price(tao_in: jax.Array, alpha_in: jax.Array) -> jax.Array:
  """TAO per alpha, SubnetTAO / SubnetAlphaIn (0 for an empty pool)."""
  return jnp.where(alpha_in > 0, tao_in.astype(jnp.float64)
                   / jnp.maximum(alpha_in, 1).astype(jnp.float64), 0.0)


def ema_weight(blocks_since_start: jax.Array, moving_alpha, halving_blocks) -> jax.Array:
  """Per-block EMA weight with the young-subnet damping: moving_alpha·b / (b + h)
  (stake_utils.rs::update_moving_price; b = blocks since start_call, h = EMAPriceHalvingBlocks).
  h = 0 gives moving_alpha from the first block."""
  b = jnp.maximum(blocks_since_start, 0).astype(jnp.float64)
  return moving_alpha * b / jnp.maximum(b + halving_blocks, 1.0)


def ema_price_step(ema_price: jax.Array, spot: jax.Array, weight: jax.Array) -> jax.Array:
  """One block of SubnetMovingPrice: w·min(price, 1) + (1 - w)·ema (stake_utils.rs, the chain caps
  the spot price at 1 TAO in the EMA). After n blocks of a constant price the EMA has closed
  1 - (1 - w)^n of its gap: half after ln 2 / -ln(1 - w) ≈ ln 2 / w blocks."""
  return weight * jnp.minimum(spot, 1.0) + (1.0 - weight) * ema_price


def flow_ema_step(flow_ema: jax.Array, block_flow: jax.Array, flow_alpha) -> jax.Array:
  """One block of SubnetEmaTaoFlow: (1 - f)·ema + f·flow, flow = this block's net TAO in (rao)
  (subnet_emissions.rs::get_ema_flow)."""
  return (1.0 - flow_alpha) * flow_ema + flow_alpha * block_flow.astype(jnp.float64)


def root_proportion(root_tao: jax.Array, alpha_issuance: jax.Array, tao_weight) -> jax.Array:
  """τ·TAO_root / (τ·TAO_root + alpha_issuance) (block_step.rs::root_proportion)."""
  w = tao_weight * root_tao.astype(jnp.float64)
  den = w + alpha_issuance.astype(jnp.float64)
  return jnp.where(den > 0, w / jnp.maximum(den, 1e-300), 0.0)


def inject(share_tao: jax.Array, spot: jax.Array, alpha_emission: jax.Array,
           root_prop: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """A subnet's TAO emission as pool injection and excess (run_coinbase.rs::get_subnet_terms).

  alpha_in = tao/price, capped at root_prop·alpha_emission; when capped, tao_in = alpha_in·price
  and the rest is excess TAO, which buys alpha through the pool.

  Args:
    share_tao: int64 rao of TAO emission for the subnet this block.
    spot: f64 spot price.
    alpha_emission: int64 alpha rao emitted this block (halving of alpha issuance).
    root_prop: f64 root proportion.

  Returns:
    (tao_in, alpha_in, excess_tao) int64 rao; tao_in + excess_tao = share_tao.
  """
  t = share_tao.astype(jnp.float64)
  alpha_want = jnp.where(spot > 0, t / jnp.maximum(spot, 1e-300), 0.0)
  cap = root_prop * alpha_emission.astype(jnp.float64)
  capped = alpha_want > cap
  alpha_in = jnp.floor(jnp.where(capped, cap, alpha_want)).astype(jnp.int64)
  tao_in = jnp.where(capped, jnp.floor(alpha_in.astype(jnp.float64) * spot).astype(jnp.int64),
                     share_tao)
  tao_in = jnp.clip(tao_in, 0, share_tao)
  return tao_in, alpha_in, share_tao - tao_in
