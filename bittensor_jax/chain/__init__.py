"""The Subtensor chain as pure functions over a ledger pytree (docs/chain.md §1, §3, §5, §6).

This package knows nothing of neural networks: it imports nothing from `bittensor_jax.neurons`,
`network`, `scoring` or `data` (a test checks the boundary). Modules:
  ledger        the Subnet pytree and hyperparameters (static capacity, in-use mask)
  kernels       small array functions of the epoch math (normalize, median, clip, EMA, u16)
  yuma          the epoch (classic, Yuma3, liquid alpha; 2023 and LA-v1 variants)
  extrinsics    set_weights, commit_weights, add_stake, reset_bonds, payout, one block
                (re-exported here)
  commit_reveal the commit FIFO, the automatic reveal and the epoch's commit column mask
  registration  register, prune, replace
  emission      block emission, halving by issuance, the supply schedule
"""
from bittensor_jax.chain.extrinsics import (REASONS, Rejection, add_stake, block_step,
                                            commit_weights, commit_weights_rows, paid_total, pay,
                                            reset_bonds, set_weights, set_weights_rows)

__all__ = ["REASONS", "Rejection", "add_stake", "block_step", "commit_weights",
           "commit_weights_rows", "paid_total", "pay", "reset_bonds", "set_weights",
           "set_weights_rows"]
