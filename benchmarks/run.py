"""Runs the benchmarks: `python -m benchmarks.run [--only NAME] [--size S] [--json] [--devices N]`.

NAME is `consensus` or `network` (default: both). Human-readable lines go to stdout, or, with
--json, one JSON object per benchmark (the results dict, with `benchmark`, the load average and
the wall time added). JAX's persistent compilation cache (--cache_dir, default
~/.cache/bittensor_jax/jax) makes repeat runs skip most compiles. Exit 2 on a bad flag.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

BENCHMARKS = ("consensus", "network")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
  p.add_argument("--only", choices=BENCHMARKS, action="append",
                 help="run only this benchmark (repeatable)")
  p.add_argument("--size", choices=("full", "tiny"), default="full",
                 help="tiny: every code path at a toy size, for CI (no meaningful numbers)")
  p.add_argument("--json", action="store_true", help="one JSON object per benchmark on stdout")
  p.add_argument("--png", default="benchmarks/network_scaling.png",
                 help="where `network` writes its scaling chart ('' for none)")
  p.add_argument("--devices", type=int, default=0,
                 help="`network` runs on the first N devices (default 0: all of them)")
  p.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/bittensor_jax/jax"),
                 help="JAX persistent compilation cache ('' to disable)")
  a = p.parse_args(argv)
  if a.devices < 0:
    p.error(f"--devices: must be >= 0, got {a.devices}")

  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_enable_x64", True)
  if a.devices > jax.device_count():
    p.error(f"--devices: {a.devices} asked, {jax.device_count()} present")
  if a.cache_dir:
    jax.config.update("jax_compilation_cache_dir", a.cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  from benchmarks import consensus, network  # pylint: disable=import-outside-toplevel
  mods = {"consensus": consensus, "network": network}
  for name in a.only or BENCHMARKS:
    t = time.perf_counter()
    kwargs = {"png": a.png or None, "devices": a.devices} if name == "network" else {}
    res = mods[name].run(a.size, **kwargs)
    res.update(benchmark=name, wall_s=time.perf_counter() - t, load_average=os.getloadavg(),
               cpu_count=os.cpu_count())
    if a.json:
      print(json.dumps(res), flush=True)
    else:
      print(mods[name].report(res))
      print(f"  ({res['wall_s']:.0f} s, load average {res['load_average'][0]:.1f} on "
            f"{res['cpu_count']} CPUs)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
