"""bittensor_jax: the Bittensor network (federated learners, validators, the Subtensor chain) in JAX.

Dims legend used in names throughout the package (nanodo style suffixes):
  N uids (a subnet's capacity, padded)   V validators   K servers   S subnets/scenarios
  T time (blocks or epochs of a scan)    B batch        L sequence length   D model width
  X vocabulary (256 byte tokens)
"""

__version__ = "0.1.0"
