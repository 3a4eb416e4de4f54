"""Delegation: the validator take, nominators paid pro rata, and root stake in the stake weight.

docs/chain.md §3.3 and §3.4 item 5: a delegate hotkey keeps `take` (DefaultTake 11796/65535, 18%)
of its validator emission; the rest is added to the hotkey's stake, i.e. to every staker on it
(the hotkey's own stake and its nominators') pro rata. The stake weight the epoch sees is
alpha stake + TaoWeight · root TAO stake (docs/chain.md §1.3).
"""
# pylint: disable=invalid-name
from __future__ import annotations

import jax
import jax.numpy as jnp


def split_dividends(dividend_N: jax.Array, stake_N: jax.Array, nominated_N: jax.Array,
                    take) -> tuple[jax.Array, jax.Array]:
  """Splits each hotkey's dividend between its owner and its nominators (integer rao, exact).

  Args:
    dividend_N: int64 rao paid to each hotkey.
    stake_N: f64 total stake on each hotkey (own + nominated), before the payment.
    nominated_N: f64 the nominators' part of stake_N.
    take: the take as a fraction in [0, 1].

  Returns:
    (owner_N, nominators_N) int64 rao, owner_N + nominators_N = dividend_N: nominators get
    floor((1 - take)·d·nominated/stake); the owner the take, its own pro-rata part and the rounding.
  """
  frac_N = jnp.where(stake_N > 0, nominated_N / jnp.where(stake_N > 0, stake_N, 1.0), 0.0)
  nom_N = jnp.floor((1.0 - take) * dividend_N.astype(jnp.float64) * jnp.clip(frac_N, 0.0, 1.0))
  nom_N = jnp.clip(nom_N.astype(jnp.int64), 0, dividend_N)
  return dividend_N - nom_N, nom_N


def stake_weight(alpha_N: jax.Array, root_tao_N: jax.Array, tao_weight) -> jax.Array:
  """Stake weight alpha + τ·root TAO (docs/chain.md §1.3; τ = TaoWeight)."""
  return alpha_N + tao_weight * root_tao_N


def root_part(alpha_N: jax.Array, root_tao_N: jax.Array, tao_weight) -> jax.Array:
  """Fraction of a validator's dividend that is root's: τ·root / (alpha + τ·root)
  (docs/chain.md §3.4 item 5)."""
  w_N = tao_weight * root_tao_N
  den = alpha_N + w_N
  return jnp.where(den > 0, w_N / jnp.where(den > 0, den, 1.0), 0.0)
