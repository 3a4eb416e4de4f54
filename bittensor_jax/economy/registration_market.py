"""The registration burn price: per-block decay, a bump per registration (docs/chain.md §5.1).

subtensor `subnets/registration.rs::update_registration_prices_for_networks` multiplies the burn
each block by f with f^BurnHalfLife = 1/2 (the chain in Q32 fixed point; here float64, floored to
rao), and `bump_registration_price_after_registration` multiplies it by BurnIncreaseMult (1.26)
after each registration; both clamp to [MinBurn, MaxBurn]. With r registrations per half-life the
burn changes by 1.26^r / 2 per half-life, so it is stationary at r = ln 2 / ln 1.26 ≈ 3.0
registrations per 360 blocks. The TAO paid buys alpha through the pool, and that alpha is burned
(`do_register`: SubnetAlphaOut -= burned_alpha); the TAO counts as inflow for the flow EMA.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def decay(burn: jax.Array, half_life, min_burn, max_burn) -> jax.Array:
  """One block of decay: floor(burn·2^(-1/half_life)), clamped (half_life 0: no decay)."""
  factor = jnp.where(half_life > 0, 0.5 ** (1.0 / jnp.maximum(half_life, 1)), 1.0)
  new = jnp.floor(burn.astype(jnp.float64) * factor).astype(jnp.int64)
  return jnp.clip(new, min_burn, max_burn)


def bump(burn: jax.Array, registered: jax.Array, mult, min_burn, max_burn) -> jax.Array:
  """After a registration in this block (`registered`; at most one per subnet and block,
  MaxRegistrationsPerBlock = 1): floor(burn·mult), clamped; unchanged otherwise."""
  bumped = jnp.clip(jnp.floor(burn.astype(jnp.float64) * mult).astype(jnp.int64), min_burn,
                    max_burn)
  return jnp.where(registered, bumped, burn)
