"""`network`: the federated network step (train, query, score, set weights, chain, register).

Measured in one process:
  presets   blocks/s and training tokens/s of the `smoke` and `small` presets (configs/default.py),
            one compiled `lax.scan` of `tempo` blocks per call (as `scripts/train.py` runs), min
            and median over repetitions, and the compile time of the first call;
  flops     the achieved FLOP/s of each preset (XLA's cost analysis of the compiled call over the
            measured time) as a share of a large float32 matmul timed in the same process;
  scaling   step time and XLA's peak memory (arguments + outputs + temporaries of the compiled
            call) from 8 to 64 uids (2 validators, width-32 models), interleaved repetitions, and
            a PNG of both against the number of uids.
Training tokens per block = servers x local_steps x batch x seq_len.
"""
# pylint: disable=invalid-name
from __future__ import annotations

import dataclasses
import importlib.util
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bittensor_jax import config as config_lib
from bittensor_jax import network
from bittensor_jax.neurons import transformer

SIZES = {
    "full": dict(presets=("smoke", "small"), calls=3, servers=(6, 14, 30, 62), width=32,
                 scale_blocks=20, repeats=3, matmul=1024),
    "tiny": dict(presets=("tiny",), calls=1, servers=(2,), width=8, scale_blocks=2,
                 repeats=1, matmul=64),
}


def _tiny_config() -> network.NetworkConfig:
  return network.NetworkConfig(
      num_validators=2, num_servers=2, noise_servers=0, offline_servers=0, copier_servers=0,
      model=transformer.ModelConfig(width=8, depth=1, heads=1, context=8), seq_len=8, batch=2,
      query_batch=2, tempo=2, max_server_tokens=5_000, max_eval_tokens=2_000)


def preset_config(name: str) -> network.NetworkConfig:
  if name == "tiny":
    return _tiny_config()
  spec = importlib.util.spec_from_file_location("configs_default",
                                                config_lib.repo_path("configs/default.py"))
  default = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(default)
  return config_lib.network_config(default.get_config(name))


def matmul_flops_per_s(n: int, repeats: int = 5) -> float:
  """FLOP/s of an n x n float32 matmul (2 n^3 flops), best of `repeats`."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  jax.block_until_ready(f(a))
  best = min(_timed(lambda: f(a)) for _ in range(repeats))
  return 2 * n**3 / best


def _timed(fn) -> float:
  t = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t


class _Runner:
  """One network and its compiled call of `blocks` blocks, with the call's XLA cost figures."""

  def __init__(self, cfg: network.NetworkConfig, blocks: int):
    self.cfg, self.blocks = cfg, blocks
    self.net = network.Network(cfg)
    self.state = self.net.init()
    # compiled as `Network.run` compiles it: state donated, its layout kept from call to call
    fn = jax.jit(lambda s, d: network.run_blocks(cfg, s, d, blocks), donate_argnums=0,
                 out_shardings=(self.net.sharding(self.state), None))
    t = time.perf_counter()
    compiled = fn.lower(self.state, self.net.data).compile()
    self.compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.flops = float((cost or {}).get("flops", float("nan")))
    mem = compiled.memory_analysis()
    self.peak_bytes = (int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                           + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
                       if mem is not None else -1)
    self.compiled = compiled
    jax.block_until_ready(self())  # first run (allocations)

  def __call__(self):
    self.state, metrics = self.compiled(self.state, self.net.data)
    return metrics


def run(size: str = "full", png: str | None = None) -> dict:
  """Runs the benchmark; returns a flat dict of results (and writes the PNG when `png`)."""
  c = SIZES[size]
  res = {"devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind, "size": size}
  res["matmul_flops_per_s"] = matmul_flops_per_s(c["matmul"])
  for name in c["presets"]:
    cfg = preset_config(name)
    r = _Runner(cfg, cfg.tempo)
    times = [_timed(r) for _ in range(c["calls"])]
    tokens = cfg.num_servers * cfg.local_steps * cfg.batch * cfg.seq_len
    res[f"{name}_compile_s"] = r.compile_s
    res[f"{name}_blocks_per_s"] = cfg.tempo / min(times)
    res[f"{name}_blocks_per_s_median"] = cfg.tempo / statistics.median(times)
    res[f"{name}_tokens_per_s"] = tokens * res[f"{name}_blocks_per_s"]
    res[f"{name}_flops_per_s"] = r.flops / min(times)
    res[f"{name}_flops_share_of_matmul"] = res[f"{name}_flops_per_s"] / res["matmul_flops_per_s"]
    res[f"{name}_peak_mib"] = r.peak_bytes / 2**20
  # scaling: step time and peak memory against the number of uids, interleaved
  base = dataclasses.replace(
      _tiny_config() if size == "tiny" else network.NetworkConfig(),
      num_validators=2, model=transformer.ModelConfig(width=c["width"], depth=1, heads=2 if c[
          "width"] >= 16 else 1, context=32 if size != "tiny" else 8),
      seq_len=32 if size != "tiny" else 8, tempo=10 if size != "tiny" else 2)
  runners = {}
  for k in c["servers"]:
    runners[k] = _Runner(dataclasses.replace(base, num_servers=k), c["scale_blocks"])
  times = {k: [] for k in runners}
  for _ in range(c["repeats"]):
    for k, r in runners.items():
      times[k].append(_timed(r))
  uids = [runners[k].cfg.num_uids for k in runners]
  step_ms = [min(times[k]) / c["scale_blocks"] * 1e3 for k in runners]
  step_med = [statistics.median(times[k]) / c["scale_blocks"] * 1e3 for k in runners]
  peak = [runners[k].peak_bytes / 2**20 for k in runners]
  res.update(scaling_uids=uids, scaling_step_ms=step_ms, scaling_step_ms_median=step_med,
             scaling_peak_mib=peak, scaling_compile_s=[runners[k].compile_s for k in runners],
             scaling_time_ratio=step_ms[-1] / step_ms[0],
             scaling_time_ratio_median=step_med[-1] / step_med[0])
  if png:
    _plot(res, png)
    res["png"] = png
  return res


def _plot(res: dict, path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
  u = np.asarray(res["scaling_uids"])
  a1.plot(u, res["scaling_step_ms"], "o-", label="measured (min)")
  a1.plot(u, res["scaling_step_ms"][0] * u / u[0], "--", color="gray", label="linear in uids")
  a1.set(xlabel="uids", ylabel="ms per block", title="network step time")
  a1.legend()
  a2.plot(u, res["scaling_peak_mib"], "o-")
  a2.set(xlabel="uids", ylabel="MiB", title="peak memory of the compiled call (XLA)")
  fig.suptitle(f"{res['device_kind']} x{res['devices']}")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def report(res: dict) -> str:
  lines = [f"network: {res['device_kind']} x{res['devices']}, matmul "
           f"{res['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s"]
  for k in [k[:-len("_blocks_per_s")] for k in res if k.endswith("_blocks_per_s")]:
    lines.append(
        f"  {k:6s} {res[f'{k}_blocks_per_s']:8.2f} blocks/s (median "
        f"{res[f'{k}_blocks_per_s_median']:.2f})  {res[f'{k}_tokens_per_s']:10.0f} tokens/s  "
        f"{res[f'{k}_flops_per_s'] / 1e9:6.2f} GFLOP/s = {100 * res[f'{k}_flops_share_of_matmul']:.1f}% "
        f"of the matmul  compile {res[f'{k}_compile_s']:.1f} s  peak {res[f'{k}_peak_mib']:.1f} MiB")
  lines.append("  uids  ms/block (min, median)  peak MiB  compile s")
  for u, t, m, p, cs in zip(res["scaling_uids"], res["scaling_step_ms"],
                            res["scaling_step_ms_median"], res["scaling_peak_mib"],
                            res["scaling_compile_s"]):
    lines.append(f"  {u:4d}  {t:8.2f} {m:8.2f}            {p:8.1f}  {cs:8.1f}")
  lines.append(f"  time {res['scaling_uids'][-1]} / {res['scaling_uids'][0]} uids: "
               f"{res['scaling_time_ratio']:.1f}x (median {res['scaling_time_ratio_median']:.1f}x)")
  return "\n".join(lines)
