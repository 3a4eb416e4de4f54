r"""One vmapped Yuma epoch over many subnets vs a Python loop of single-subnet jitted epochs.

  python benchmarks/epoch_vmap.py [--subnets 1024] [--uids 256] [--dtype float32]

Prints the time of one compiled, vmapped epoch over all subnets, the time of the baseline (the same
epochs one subnet at a time, each call jitted and compiled once) measured in the same run, and
their ratio. Timings exclude compilation; each is the best of --repeats runs.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from bittensor_jax.chain import ledger, yuma  # noqa: E402


def make_subnets(num, n, seed=0):
  rng = np.random.default_rng(seed)
  one = ledger.subnet_from_neurons(np.ones(n), np.zeros(n, int), np.ones(n, int),
                                   np.ones(n, bool), hyper=ledger.Hyper.create(tempo=100),
                                   block=50)
  stake = rng.pareto(1.5, (num, n)) * 1e12
  pres = rng.random((num, n, n)) < 0.5
  w = rng.integers(0, 65536, (num, n, n)).astype(np.int32)
  bonds = rng.integers(0, 65536, (num, n, n)).astype(np.int32)
  stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + x.shape), one)
  return stacked.replace(stake_N=jnp.asarray(stake), weights_NxN=jnp.asarray(w),
                         has_weight_NxN=jnp.asarray(pres), bonds_NxN=jnp.asarray(bonds),
                         has_bond_NxN=jnp.asarray(bonds > 0),
                         last_epoch_block=jnp.full((num,), 40, jnp.int64))


def best_of(fn, repeats):
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return min(times)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--subnets", type=int, default=1024)
  p.add_argument("--uids", type=int, default=256)
  p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
  p.add_argument("--chunk", type=int, default=16, help="vmap width inside lax.map")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--baseline_subnets", type=int, default=None,
                 help="loop over this many subnets for the baseline (default: all)")
  a = p.parse_args()
  dt = jnp.dtype(a.dtype)
  subs = make_subnets(a.subnets, a.uids)
  E = jnp.full((a.subnets,), 10**9, jnp.int64)
  vm = jax.jit(jax.vmap(lambda s, e: yuma.epoch(s, e, dtype=dt)))
  jax.block_until_ready(vm(subs, E))
  t_vmap = best_of(lambda: vm(subs, E), a.repeats)
  chunked = lambda s, e: yuma.epoch_many(s, e, dtype=dt, chunk=a.chunk)
  jax.block_until_ready(chunked(subs, E))
  t_chunk = best_of(lambda: chunked(subs, E), a.repeats)

  nb = a.baseline_subnets or a.subnets
  singles = [jax.tree.map(lambda x, k=k: x[k], subs) for k in range(nb)]
  one = lambda s: yuma.epoch(s, jnp.int64(10**9), dtype=dt)
  jax.block_until_ready(one(singles[0]))
  t_loop = best_of(lambda: [one(s) for s in singles], 1) * a.subnets / nb

  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  dtype: {a.dtype}")
  print(f"vmapped epoch, {a.subnets} subnets x {a.uids} uids: {t_vmap * 1e3:.1f} ms "
        f"({t_vmap / a.subnets * 1e6:.1f} us per subnet)")
  print(f"baseline loop of jitted single-subnet epochs: {t_loop * 1e3:.1f} ms"
        + (f" (extrapolated from {nb})" if nb != a.subnets else ""))
  print(f"one call, lax.map over chunks of {a.chunk} vmapped subnets: {t_chunk * 1e3:.1f} ms "
        f"({t_chunk / a.subnets * 1e6:.1f} us per subnet)")
  print(f"ratio baseline/vmapped: {t_loop / t_vmap:.2f}x   baseline/chunked: "
        f"{t_loop / t_chunk:.2f}x")


if __name__ == "__main__":
  main()
