"""The economy between subnets: many subnets, root, dynamic-TAO pools, share rules, the
registration burn (docs/economy.md; docs/chain.md §3.3, §3.4, §5.1).

Modules:
  config               EconomyConfig: regime, share rule, gate and market constants (static)
  state                the Economy pytree (subnet axis S, per-subnet chain ledgers, pools, root)
  shares               share rules: price, price_burn, flow, hill_gate (and gini)
  pools                constant-product swaps, spot price, EMA price, flow EMA, injection
  registration_market  burn price: decay, bump per registration, clamp
  delegation           validator take, nominators pro rata, TaoWeight in the stake weight
  block                the pure block step (single, root, dtao), `run`, and the network hook
                       `subnet_emission`
"""
from bittensor_jax.economy.block import Actions, Terms, block_step, coinbase_terms, run, step, \
    subnet_emission
from bittensor_jax.economy.config import REGIMES, SHARE_RULES, EconomyConfig
from bittensor_jax.economy.shares import flow, gini, hill_gate, price, price_burn, q_mass_bar
from bittensor_jax.economy.state import Economy, create, holdings

__all__ = ["Actions", "Economy", "EconomyConfig", "REGIMES", "SHARE_RULES", "Terms", "block_step",
           "coinbase_terms", "create", "flow", "gini", "hill_gate", "holdings", "price",
           "price_burn", "q_mass_bar", "run", "step", "subnet_emission"]
