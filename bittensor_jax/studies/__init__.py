"""Incentive-mechanism studies: one module per study, each a CLI over vmapped chain functions.

Every study is built on the chain's own pure functions (`bittensor_jax.chain.kernels` and
`bittensor_jax.chain.yuma.epoch`), so there is no second Yuma. Modules:
  consensus_guarantees  the Monte Carlo retention study of Subtensor's docs/consensus.md
  variants              community Yuma variants (bactensor/yuma-simulation): one core each, with
                        a dense step on the validator x server block
  variant_epoch         every variant with the chain's interface, a drop-in for `yuma.epoch`
  cases                 the yuma-simulation case library, run for every variant at once
  relaxation            a differentiable epoch (soft median) and a gradient attack by a cabal
  weight_copying        a copier validator against commit-reveal delays
  output                shared CLI plumbing (flags for --json, --csv, --plots; rows to files)
  figures               the PNG figures (matplotlib Figure + Agg, no pyplot state)

Run any study as `python -m bittensor_jax.studies.NAME --help`.
"""
