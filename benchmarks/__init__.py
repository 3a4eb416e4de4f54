"""Benchmarks of bittensor_jax: `python -m benchmarks.run [--only NAME] [--json]`.

Modules: `consensus` (the chain epoch against a NumPy loop and a loop of jitted epochs),
`network` (the federated network step), `numpy_epoch` (the NumPy baseline epoch). Results with
the machine are in benchmarks/RESULTS.md.
"""
