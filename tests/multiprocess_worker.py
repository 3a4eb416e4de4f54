"""One process of the two-process test (tests/distributed_test.py): a global mesh over gloo."""
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from bittensor_jax import distributed  # noqa: E402


def main():
  address, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
  distributed.initialize(address, 2, pid)
  from bittensor_jax import network  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.dirname(__file__))
  from distributed_test import CFG, BLOCKS  # pylint: disable=import-outside-toplevel
  assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
  net = network.Network(CFG, network.make_mesh())
  state, metrics = net.run(net.init(), BLOCKS)
  leaf = jax.tree.leaves(state.params)[0]
  local = len(leaf.addressable_shards)
  metrics = distributed.gather(metrics)
  params = distributed.gather(state.params)
  if pid == 0:
    np.savez(out, local_shards=local, **{f"m_{k}": v for k, v in metrics.items()},
             **{f"p_{i}": v for i, v in enumerate(jax.tree.leaves(params))})
  distributed.finish()


if __name__ == "__main__":
  main()
