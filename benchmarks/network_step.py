r"""Network step time vs the number of uids.

  python benchmarks/network_step.py [--servers 6,14,30,62] [--blocks 50]

For each size, one compiled `lax.scan` over --blocks blocks (train, query, score, set weights,
chain) is timed after compilation; the ratio column is the time per block against the smallest
network, measured in the same run.
"""
import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from bittensor_jax import network  # noqa: E402
from bittensor_jax.neurons import transformer  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--servers", default="6,14,30,62")
  p.add_argument("--validators", type=int, default=2)
  p.add_argument("--blocks", type=int, default=50)
  p.add_argument("--width", type=int, default=32)
  a = p.parse_args()
  base = network.NetworkConfig(
      num_validators=a.validators, model=transformer.ModelConfig(width=a.width, depth=1, heads=2,
                                                                 context=32),
      seq_len=32, batch=8, local_steps=1, query_batch=4, tempo=10, max_server_tokens=50_000,
      max_eval_tokens=20_000)
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, {a.blocks} blocks per call")
  print(f"{'uids':>6} {'servers':>8} {'ms/block':>10} {'blocks/s':>9} {'ratio':>7}")
  first = None
  for k in map(int, a.servers.split(",")):
    cfg = dataclasses.replace(base, num_servers=k)
    net = network.Network(cfg)
    state = net.init()
    state, m = net.run(state, a.blocks)
    jax.block_until_ready(m)
    t = time.perf_counter()
    state, m = net.run(state, a.blocks)
    jax.block_until_ready(m)
    per = (time.perf_counter() - t) / a.blocks
    first = first or per
    print(f"{cfg.num_uids:>6} {k:>8} {per * 1e3:>10.2f} {1 / per:>9.1f} {per / first:>7.2f}",
          flush=True)


if __name__ == "__main__":
  main()
