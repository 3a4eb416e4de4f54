"""`network`: the federated network step (train, query, score, set weights, chain, register).

Measured in one process:
  presets   blocks/s and training tokens/s of the `smoke` and `small` presets (configs/default.py),
            one compiled `lax.scan` of `tempo` blocks per call (as `scripts/train.py` runs), min
            and median over repetitions, and the compile time of the first call; in the full
            size a repetition runs `eval_every` blocks (whole calls), so that it holds the
            test-split evaluation that the FLOP count spreads over `eval_every` blocks;
  flops     the achieved FLOP/s of each preset as a share of a large float32 matmul timed in the
            same process. The FLOPs of a block are its model arithmetic (`model_flops_per_block`:
            XLA's count of one model's forward pass and of one training step, times how many the
            block runs, evaluation spread over `eval_every`). XLA's count of the whole compiled
            call is not used: it counts a `lax.scan` body once (a call of `tempo` blocks counts
            as one block) and a `cond` as its dearer branch (every evaluation each block);
  phases    each phase of `network_step` (`small`) jitted alone, timed at a block where it is not
            due and at one where it is, and its expected share of a block (weighted by how often
            it is due);
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
                 scale_blocks=20, repeats=3, matmul=1024, phases="small", phase_repeats=5,
                 whole_evaluation=True),
    "tiny": dict(presets=("tiny",), calls=1, servers=(2,), width=8, scale_blocks=2,
                 repeats=1, matmul=64, phases="tiny", phase_repeats=1, whole_evaluation=False),
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


def _xla_flops(fn, *args) -> float:
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", float("nan")))


def model_flops_per_block(cfg: network.NetworkConfig, num_devices: int = 1) -> dict:
  """The model arithmetic of one block, from XLA's count of one model's pieces.

  forward: one model on one window of `seq_len` bytes; train_step: one `train.local_step` of one
  model on `batch` windows (forward, backward, clipping, AdamW). A block runs M x local_steps
  training steps (every stacked model, copiers and padding included), V x K x (query_batch +
  probe_windows) server answers, V x query_batch forwards of the first twin (its loss in the
  block metrics) and of the network model (syncing exchanges), and every `eval_every` blocks
  M forwards of every (chunk-padded) test window.

  Returns:
    {"forward", "train_step", "train", "query", "extra", "evaluate", "total"}: FLOPs.
  """
  from bittensor_jax.neurons import train  # pylint: disable=import-outside-toplevel
  V, K, L = cfg.num_validators, cfg.num_servers, cfg.seq_len
  M = network.num_models(cfg, num_devices)
  model = transformer.TransformerLM.from_config(cfg.model)
  params = jax.tree.map(lambda p: p[0], transformer.init_stacked(jax.random.key(0), 1, cfg.model,
                                                                 L))
  fwd = _xla_flops(lambda p, t: model.apply({"params": p}, t), params,
                   jnp.zeros((1, L), jnp.int32))
  opt = train.make_optimizer(cfg.train).init(params)
  step = _xla_flops(lambda p, o, t: train.local_step(p, o, t, 1.0, model_cfg=cfg.model,
                                                      train_cfg=cfg.train)[:2],
                    params, opt, jnp.zeros((cfg.batch, L + 1), jnp.int32))
  twins = (network.twin_models(cfg) >= 0).any()
  syncing = cfg.exchange in network.exchange.SYNCING
  windows = (cfg.test_bytes - 1) // L
  chunk = network.evaluation.chunk_for(M)  # evaluation.evaluate's chunks (as evaluate_phase)
  padded = -(-windows // chunk) * chunk
  out = {"forward": fwd, "train_step": step, "train": M * cfg.local_steps * step,
         "query": V * K * (cfg.query_batch + cfg.probe_windows) * fwd,
         "extra": V * cfg.query_batch * (int(twins) + int(syncing)) * fwd,
         "evaluate": M * padded * fwd / cfg.eval_every}
  out["total"] = out["train"] + out["query"] + out["extra"] + out["evaluate"]
  return out


class _Runner:
  """One network and its compiled call of `blocks` blocks, with the call's XLA cost figures."""

  def __init__(self, cfg: network.NetworkConfig, blocks: int, devices=None):
    self.cfg, self.blocks = cfg, blocks
    self.net = network.Network(cfg, network.make_mesh(devices))
    self.state = self.net.init()
    # compiled as `Network.run` compiles it: state donated, its layout kept from call to call
    fn = jax.jit(lambda s, d: network.run_blocks(cfg, s, d, blocks), donate_argnums=0,
                 out_shardings=(self.net.sharding(self.state), None))
    t = time.perf_counter()
    compiled = fn.lower(self.state, self.net.data).compile()
    self.compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.xla_call_flops = float((cost or {}).get("flops", float("nan")))
    self.flops_per_block = model_flops_per_block(cfg, self.net.num_devices)["total"]
    mem = compiled.memory_analysis()
    self.peak_bytes = (int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                           + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
                       if mem is not None else -1)
    self.compiled = compiled
    jax.block_until_ready(self())  # first run (allocations)

  def __call__(self):
    self.state, metrics = self.compiled(self.state, self.net.data)
    return metrics


def _phase_fns(cfg: network.NetworkConfig) -> dict:
  """name -> (fn(state, data, key, block, q) -> outputs, period in blocks: 0 = never due)."""
  V, K = cfg.num_validators, cfg.num_servers
  syncing = cfg.exchange in network.exchange.SYNCING

  def chain(s, d, k, b, q):
    del d, k, q
    # block_step produces block `b` and runs the epoch when b - last_epoch_block >= tempo: due
    # here when b is a multiple of tempo
    last = jnp.where(b % cfg.tempo == 0, b - cfg.tempo, b - 1)
    return network.chain_phase(cfg, s.subnet.replace(block=b - 1, last_epoch_block=last))

  return {
      "exchange": (lambda s, d, k, b, q: network.exchange_phase(cfg, s, b),
                   cfg.sync_every if syncing else 0),
      "train": (lambda s, d, k, b, q: network.train_phase(cfg, s, d, k, b), cfg.copy_lag),
      "query": (lambda s, d, k, b, q: network.query_phase(cfg, s, d, k, b), 1),
      "score": (lambda s, d, k, b, q: network.score_phase(cfg, s, q, k), 1),
      "weights": (lambda s, d, k, b, q: network.weights_phase(cfg, s.subnet, s.scores_VxK, b),
                  cfg.weights_rate),
      "chain": (chain, cfg.tempo),
      "metrics": (lambda s, d, k, b, q: network._block_metrics(  # pylint: disable=protected-access
          cfg, s, q, jnp.zeros((V, K), jnp.float32)), 1),
      "evaluate": (lambda s, d, k, b, q: network.evaluate_phase(cfg, s, d, k, b), cfg.eval_every),
      "register": (lambda s, d, k, b, q: network.register_phase(cfg, s, k, b),
                   cfg.registration_interval),
  }


def _not_due_block(cfg: network.NetworkConfig) -> int:
  periods = [p for _, p in _phase_fns(cfg).values() if p > 1]
  return next(b for b in range(2, 10**6) if all(b % p for p in periods))


def phase_times(cfg: network.NetworkConfig, repeats: int = 5, devices=None) -> dict:
  """Each phase of `network_step` jitted alone on the initial state: seconds (min of `repeats`)
  at a block where it is not due and at one where it is, and its expected seconds per block.

  Jitted alone, a phase cannot fuse with its neighbours and pays one dispatch; the sum of the
  phases is therefore compared with the whole step jitted the same way (`step`).
  """
  net = network.Network(cfg, network.make_mesh(devices))
  state, data_ = net.init(), net.data
  key = jax.random.key(1)
  quiet = _not_due_block(cfg)
  blk = lambda b: jnp.asarray(b, jnp.int64)  # noqa: E731
  q = jax.jit(lambda s, d, k, b: network.query_phase(cfg, s, d, k, b))(state, data_, key,
                                                                      blk(quiet))
  out = {}
  fns = dict(_phase_fns(cfg))
  step = jax.jit(lambda s, d, k, b: network.network_step(
      cfg, s.replace(subnet=s.subnet.replace(block=b - 1)), d, k))
  for name, (fn, period) in fns.items():
    f = jax.jit(fn)
    args = lambda b: (state, data_, key, blk(b), q)  # noqa: E731
    jax.block_until_ready(f(*args(quiet)))
    idle = min(_timed(lambda: f(*args(quiet))) for _ in range(repeats))
    if period > 1:
      jax.block_until_ready(f(*args(period)))
      due = min(_timed(lambda: f(*args(period))) for _ in range(repeats))
    else:
      due = idle
    per_block = idle if period == 1 else (due / period + idle * (1 - 1 / period) if period
                                          else idle)
    out[name] = {"idle_s": idle, "due_s": due, "period": period, "per_block_s": per_block}
  jax.block_until_ready(step(state, data_, key, blk(quiet)))
  step_s = min(_timed(lambda: step(state, data_, key, blk(quiet))) for _ in range(repeats))
  out["step"] = {"idle_s": step_s, "due_s": step_s, "period": 1, "per_block_s": step_s}
  return out


def run(size: str = "full", png: str | None = None, devices: int = 0) -> dict:
  """Runs the benchmark; returns a flat dict of results (and writes the PNG when `png`).

  `devices` > 0 runs every network on the first `devices` devices (default: all of them)."""
  c = SIZES[size]
  devs = jax.devices()[:devices] if devices > 0 else jax.devices()
  res = {"devices": len(devs), "device_kind": devs[0].device_kind, "size": size}
  runners = {}  # (config, blocks) -> _Runner: an equal network compiles once (tiny: the preset
  # is the scaling's one size)

  def runner(cfg, blocks):
    if (cfg, blocks) not in runners:
      runners[cfg, blocks] = _Runner(cfg, blocks, devs)
    return runners[cfg, blocks]

  res["matmul_flops_per_s"] = matmul_flops_per_s(c["matmul"])
  for name in c["presets"]:
    cfg = preset_config(name)
    r = runner(cfg, cfg.tempo)
    # calls per repetition: with whole_evaluation, enough to span eval_every blocks
    per = -(-cfg.eval_every // cfg.tempo) if c["whole_evaluation"] else 1
    times = [sum(_timed(r) for _ in range(per)) for _ in range(c["calls"])]
    tokens = cfg.num_servers * cfg.local_steps * cfg.batch * cfg.seq_len
    res[f"{name}_compile_s"] = r.compile_s
    res[f"{name}_blocks_per_repetition"] = per * cfg.tempo
    res[f"{name}_blocks_per_s"] = per * cfg.tempo / min(times)
    res[f"{name}_blocks_per_s_median"] = per * cfg.tempo / statistics.median(times)
    res[f"{name}_tokens_per_s"] = tokens * res[f"{name}_blocks_per_s"]
    res[f"{name}_model_flops_per_block"] = r.flops_per_block
    res[f"{name}_xla_call_flops"] = r.xla_call_flops
    res[f"{name}_flops_per_s"] = r.flops_per_block * res[f"{name}_blocks_per_s"]
    res[f"{name}_flops_share_of_matmul"] = res[f"{name}_flops_per_s"] / res["matmul_flops_per_s"]
    res[f"{name}_peak_mib"] = r.peak_bytes / 2**20
  phases = phase_times(preset_config(c["phases"]), c["phase_repeats"], devs)
  total = sum(v["per_block_s"] for k, v in phases.items() if k != "step")
  res["phases_preset"] = c["phases"]
  res["phases"] = {k: dict(v, share=v["per_block_s"] / total) for k, v in phases.items()}
  # scaling: step time and peak memory against the number of uids, interleaved
  base = dataclasses.replace(
      _tiny_config() if size == "tiny" else network.NetworkConfig(),
      num_validators=2, model=transformer.ModelConfig(width=c["width"], depth=1, heads=2 if c[
          "width"] >= 16 else 1, context=32 if size != "tiny" else 8),
      seq_len=32 if size != "tiny" else 8, tempo=10 if size != "tiny" else 2)
  scaling = {k: runner(dataclasses.replace(base, num_servers=k), c["scale_blocks"])
             for k in c["servers"]}
  times = {k: [] for k in scaling}
  for _ in range(c["repeats"]):
    for k, r in scaling.items():
      times[k].append(_timed(r))
  uids = [scaling[k].cfg.num_uids for k in scaling]
  step_ms = [min(times[k]) / c["scale_blocks"] * 1e3 for k in scaling]
  step_med = [statistics.median(times[k]) / c["scale_blocks"] * 1e3 for k in scaling]
  peak = [scaling[k].peak_bytes / 2**20 for k in scaling]
  flops = [scaling[k].flops_per_block for k in scaling]
  res.update(scaling_flops_per_block=flops, scaling_flops_ratio=flops[-1] / flops[0])
  res.update(scaling_uids=uids, scaling_step_ms=step_ms, scaling_step_ms_median=step_med,
             scaling_peak_mib=peak, scaling_compile_s=[scaling[k].compile_s for k in scaling],
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
  lines.append(f"  phases of `{res['phases_preset']}` jitted alone (ms: not due / due / every; "
               f"expected ms per block, share of the phases' sum)")
  for name, v in res["phases"].items():
    lines.append(f"    {name:9s} {1e3 * v['idle_s']:8.2f} {1e3 * v['due_s']:8.2f} "
                 f"{v['period']:5d}  {1e3 * v['per_block_s']:8.2f}  {100 * v['share']:5.1f}%")
  lines.append("  uids  ms/block (min, median)  peak MiB  compile s")
  for u, t, m, p, cs in zip(res["scaling_uids"], res["scaling_step_ms"],
                            res["scaling_step_ms_median"], res["scaling_peak_mib"],
                            res["scaling_compile_s"]):
    lines.append(f"  {u:4d}  {t:8.2f} {m:8.2f}            {p:8.1f}  {cs:8.1f}")
  lines.append(f"  time {res['scaling_uids'][-1]} / {res['scaling_uids'][0]} uids: "
               f"{res['scaling_time_ratio']:.1f}x (median {res['scaling_time_ratio_median']:.1f}x)"
               f" for {res['scaling_flops_ratio']:.1f}x the model FLOPs")
  return "\n".join(lines)
