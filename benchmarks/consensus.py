"""`consensus`: epochs per second of the chain-exact Yuma epoch, against its baselines.

At S subnets x (V validators, N uids) (default 1024 x (64, 256)), float32 and float64, in one
process and interleaved (each repetition runs every contender once, in turn):
  jax       `yuma.epoch_many` (the default: chunked vmap) on ledgers of R = V validator rows
            (docs/chain.md §1.16), static bond path
  jax_dense the same on dense ledgers (R = N rows: what the row storage buys), over the first
            `dense_subnets` subnets
  jax_loop  a Python loop of single jitted epochs (R = V rows), over `loop_subnets` subnets
  numpy     the same epoch in vectorized NumPy (benchmarks/numpy_epoch.py), checked first to give
            the JAX epoch's answers, over `numpy_subnets` subnets
  torch     the NumPy epoch ported to PyTorch (benchmarks/torch_epoch.py), one subnet per call,
            pinned to one thread, checked like numpy, over `numpy_subnets` subnets; only when torch
            imports (the `bench` extra), else its keys are absent
and the scaling in uids: one subnet of `big_uids` uids against one of N uids, both with V
validators (R = V rows), and the ledger's bytes per subnet on R = V rows and dense. Rates are
epochs/s; each contender reports min and median over the
repetitions (of the time, so `*_epochs_per_s` is the best rate and `*_median` the median rate).
"""
# pylint: disable=invalid-name
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import numpy_epoch, torch_epoch
from bittensor_jax.chain import ledger, yuma

SIZES = {
    # sized so that `--only consensus --json` finishes in under a minute on 2 cores once the
    # compilation cache is warm: two interleaved repetitions, the dense, loop and NumPy baselines
    # on the first subnets of the batch (their rates are per epoch, so comparable)
    "full": dict(subnets=1024, uids=256, validators=64, big_uids=4096, dense_subnets=64,
                 loop_subnets=32, numpy_subnets=16, repeats=2, scaling_repeats=5),
    "tiny": dict(subnets=4, uids=16, validators=4, big_uids=64, dense_subnets=4, loop_subnets=2,
                 numpy_subnets=2, repeats=2, scaling_repeats=2),
}
E = 10**9


def make_subnets(num: int, n: int, v: int, seed: int = 0, *, yuma3: bool = False,
                 liquid: bool = False, rows: int | None = None) -> ledger.Subnet:
  """`num` random subnets of n uids: uids 0..v-1 are staked validators holding permits, weights
  (half the entries present) and bonds; the other uids are unstaked servers. `rows`: the ledger's
  row capacity R (v or more; None: n, dense); the validators hold rows 0..v-1."""
  rng = np.random.default_rng(seed)
  R = n if rows is None else rows
  hyper = ledger.Hyper.create(tempo=100, max_allowed_validators=v, yuma3_enabled=yuma3,
                              liquid_alpha_enabled=liquid)
  one = ledger.subnet_from_neurons(np.ones(n), np.zeros(n, int), np.ones(n, int),
                                   np.arange(n) < v, hyper=hyper, block=50, rows=R)
  stake = np.zeros((num, n))
  stake[:, :v] = rng.pareto(1.5, (num, v)) * 1e12 + 1e9
  # the validators' rows 0..v-1 are drawn (the same draws for any R), the other rows are empty
  pad = lambda x: np.concatenate([x, np.zeros((num, R - v, n), x.dtype)], axis=1)
  pres = pad(rng.random((num, v, n)) < 0.5)
  w = pad(np.where(pres[:, :v], rng.integers(0, 65536, (num, v, n)), 0).astype(np.int32))
  bonds = pad(rng.integers(0, 65536, (num, v, n)).astype(np.int32))
  row_uid = np.where(np.arange(R) < v, np.arange(R), -1) if R < n else np.arange(n)
  stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + x.shape), one)
  return stacked.replace(stake_N=jnp.asarray(stake), weights_RxN=jnp.asarray(w),
                         has_weight_RxN=jnp.asarray(pres), bonds_RxN=jnp.asarray(bonds),
                         has_bond_RxN=jnp.asarray(bonds > 0),
                         row_uid_R=jnp.broadcast_to(jnp.asarray(row_uid, jnp.int32), (num, R)),
                         last_epoch_block=jnp.full((num,), 40, jnp.int64))


def ledger_bytes(n: int, rows: int | None) -> int:
  """Bytes of one subnet's ledger of n uids on `rows` rows (shapes only, nothing allocated)."""
  shapes = jax.eval_shape(lambda: ledger.empty_subnet(n, rows=rows))
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(shapes)))


def _dense_copy(subs: ledger.Subnet) -> ledger.Subnet:
  """The same stacked subnets on all N rows (their R rows hold uids 0..R-1, as make_subnets')."""
  N, R = subs.capacity, subs.rows
  pad = lambda x: jnp.concatenate([x, jnp.zeros(x.shape[:1] + (N - R,) + x.shape[2:], x.dtype)],
                                  axis=1)
  return subs.replace(
      row_uid_R=jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32), subs.in_use_N.shape),
      weights_RxN=pad(subs.weights_RxN), has_weight_RxN=pad(subs.has_weight_RxN),
      bonds_RxN=pad(subs.bonds_RxN), has_bond_RxN=pad(subs.has_bond_RxN),
      commit_weights_RxCxN=pad(subs.commit_weights_RxCxN),
      commit_present_RxCxN=pad(subs.commit_present_RxCxN))


def _index(tree, k):
  return jax.tree.map(lambda x: x[k], tree)


def _check_same(name: str, want: yuma.EpochOut, got: dict, dtype) -> None:
  """Raises AssertionError naming the output where a baseline's answer differs from the JAX one."""
  f32 = np.dtype(dtype) == np.float32
  for key, g in got.items():
    w = np.asarray(getattr(want, key))
    g = np.asarray(g)
    if key.endswith("emission_N"):  # rao amounts: floor(x E) of values that agree to ~1 ulp
      ok = np.abs(w - g).max(initial=0) <= (E * 2e-6 if f32 else 4)
    elif key == "bonds_NxN":  # stored u16: a floor of values that agree to ~1 ulp
      ok = np.abs(w - g).max(initial=0) <= (8 if f32 else 1)
    elif w.dtype == bool:
      ok = np.array_equal(w, g)
    else:
      ok = np.allclose(w, g, rtol=2e-4 if f32 else 1e-9, atol=2e-6 if f32 else 1e-12)
    if not ok:
      raise AssertionError(f"{name}: {key} differs from the JAX epoch "
                           f"(max abs diff {np.abs(w.astype(float) - g.astype(float)).max()})")


def _timed(fn) -> float:
  t = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t


def _rates(times: list[float], epochs: int) -> dict:
  return {"epochs_per_s": epochs / min(times), "median": epochs / statistics.median(times)}


def run(size: str = "full") -> dict:
  """Runs the benchmark; returns a flat dict of results (rates in epochs/s)."""
  cfg = SIZES[size]
  S, N, V = cfg["subnets"], cfg["uids"], cfg["validators"]
  subs = make_subnets(S, N, V, rows=V)
  D = cfg["dense_subnets"]
  dense_subs = _dense_copy(_index(subs, slice(0, D)))  # the same subnets on all N rows
  E_S = jnp.full((S,), E, jnp.int64)
  loop_subs = [_index(subs, k) for k in range(cfg["loop_subnets"])]
  host = [numpy_epoch.to_numpy(_index(subs, k)) for k in range(cfg["numpy_subnets"])]
  with_torch = torch_epoch.available()
  if with_torch:
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(1)  # its default (a thread per core) collapses on a shared machine
    host_t = [torch_epoch.from_numpy(h) for h in host]
  y3, la = yuma.bond_paths(subs.hyper)
  big = make_subnets(1, cfg["big_uids"], V, seed=1, rows=V)
  small = make_subnets(1, N, V, seed=1, rows=V)
  res = {"devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind,
         "subnets": S, "uids": N, "validators": V, "rows": V, "size": size,
         "ledger_bytes": ledger_bytes(N, V), "ledger_bytes_dense": ledger_bytes(N, None),
         "ledger_bytes_big": ledger_bytes(cfg["big_uids"], V),
         "ledger_bytes_big_dense": ledger_bytes(cfg["big_uids"], None)}
  for dt, tag in ((jnp.float32, ""), (jnp.float64, "_f64")):
    many = lambda s=subs, dt=dt: yuma.epoch_many(s, E_S, dtype=dt)
    dense = lambda s=dense_subs, dt=dt: yuma.epoch_many(s, E_S[:D], dtype=dt)
    # `epoch` is compiled inside; called eagerly, the ledger fields it does not write are not copied
    one = lambda s, dt=dt: yuma.epoch(s, jnp.int64(E), dtype=dt, yuma3=y3, liquid_alpha=la)
    loop = lambda dt=dt, one=one: [one(s) for s in loop_subs]
    npdt = np.dtype(dt)
    np_loop = lambda npdt=npdt: [numpy_epoch.epoch(h, E, npdt) for h in host[:cfg["numpy_subnets"]]]
    torch_loop = lambda npdt=npdt: [torch_epoch.epoch(h, E, npdt) for h in host_t]
    t0 = time.perf_counter()
    _, out = jax.block_until_ready(many())
    res[f"compile{tag}_s"] = time.perf_counter() - t0
    _, out_dense = jax.block_until_ready(dense())
    jax.block_until_ready(loop())
    for k in range(2):  # the baselines give the JAX epoch's answers
      _check_same("numpy", _index(out, k), numpy_epoch.epoch(host[k], E, npdt), dt)
      if with_torch:
        _check_same("torch", _index(out, k), torch_epoch.epoch(host_t[k], E, npdt), dt)
      _check_same("jax_dense", _index(out, k),
                  {f: getattr(_index(out_dense, k), f) for f in ("dividends_N", "incentive_N",
                                                                 "emission_N", "bonds_NxN")}, dt)
    contenders = {"jax": (many, S), "jax_dense": (dense, D), "jax_loop": (loop, len(loop_subs)),
                  "numpy": (np_loop, cfg["numpy_subnets"])}
    if with_torch:
      contenders["torch"] = (torch_loop, cfg["numpy_subnets"])
    times = {k: [] for k in contenders}
    for _ in range(cfg["repeats"]):
      for k, (fn, _) in contenders.items():
        times[k].append(_timed(fn))
    for k, (_, count) in contenders.items():
      r = _rates(times[k], count)
      name = "consensus" if k == "jax" else k
      res[f"{name}{tag}_epochs_per_s"] = r["epochs_per_s"]
      res[f"{name}{tag}_epochs_per_s_median"] = r["median"]
  # scaling in uids: one subnet of big_uids vs one of N uids, both V validators on R = V rows
  f_small = lambda s: yuma.epoch(s, jnp.int64(E), dtype=jnp.float32, yuma3=y3, liquid_alpha=la)
  sb, bb = _index(small, 0), _index(big, 0)
  jax.block_until_ready(f_small(sb))
  jax.block_until_ready(f_small(bb))  # a second shape: compiled separately
  ts, tb = [], []
  for _ in range(cfg["scaling_repeats"]):
    ts.append(_timed(lambda: f_small(sb)))
    tb.append(_timed(lambda: f_small(bb)))
  res["epoch_s_uids_small"] = min(ts)
  res["epoch_s_uids_big"] = min(tb)
  res["big_uids"] = cfg["big_uids"]
  res["uid_scaling_ratio"] = min(tb) / min(ts)
  res["uid_scaling_ratio_median"] = statistics.median(tb) / statistics.median(ts)
  return res


def report(res: dict) -> str:
  """Human-readable lines with the ratios the issue's targets name."""
  lines = [f"consensus: {res['subnets']} subnets x ({res['validators']} validators, "
           f"{res['uids']} uids), rows R = {res['rows']}, {res['device_kind']} x{res['devices']}"]
  for tag, label in (("", "float32"), ("_f64", "float64")):
    lines.append(f"  {label}:")
    base = res[f"consensus{tag}_epochs_per_s"]
    for k in ("consensus", "jax_dense", "jax_loop", "numpy", "torch"):
      if f"{k}{tag}_epochs_per_s" not in res:
        continue
      best, med = res[f"{k}{tag}_epochs_per_s"], res[f"{k}{tag}_epochs_per_s_median"]
      ratio = base / best
      lines.append(f"    {k:10s} {best:10.0f} epochs/s (median {med:10.0f})   epoch_many / "
                   f"this: {ratio:5.2f}x")
  lines.append(f"  ledger bytes per subnet: {res['ledger_bytes']:,} at R = {res['rows']} rows vs "
               f"{res['ledger_bytes_dense']:,} dense ({res['uids']} uids); "
               f"{res['ledger_bytes_big']:,} vs {res['ledger_bytes_big_dense']:,} at "
               f"{res['big_uids']} uids")
  lines.append(f"  uids: 1 x {res['big_uids']} uids costs {res['uid_scaling_ratio']:.1f}x "
               f"(median {res['uid_scaling_ratio_median']:.1f}x) 1 x {res['uids']} uids "
               f"({res['epoch_s_uids_big'] * 1e3:.2f} ms vs {res['epoch_s_uids_small'] * 1e3:.2f} ms)")
  return "\n".join(lines)
