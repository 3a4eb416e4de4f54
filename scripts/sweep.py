r"""Runs one network per value of a config field and plots chosen metrics against it.

  # validators that disagree: a 30%-stake cabal against an honest majority, kappa as fractions
  python scripts/sweep.py --config=configs/experiments/cabal_attack.py:smoke \
      --param=network.kappa --values=0.2,0.35,0.5 --workdir=runs/kappa_cabal \
      --metrics=validator_dividends,validator_vtrust,server_consensus,honest_stake_share

Each value runs in <workdir>/<param>=<value> (an existing one is resumed, so a killed sweep can be
restarted). <workdir>/sweep.json holds the summary of every <param>=<value> run found in the
workdir, so a second sweep with other values adds to the first; <workdir>/sweep.png plots the
metrics of all of them against the value, on plain (never offset) axes. The runtime is the chosen
preset's, once per new value. A sweep of `configs/default.py:smoke` over kappa answers little:
its two validators agree, so kappa changes nothing (results identical to 1e-3).

Metrics: any scalar of summary.json (ensemble_loss, honest_stake_share, ...), or one line per uid:
validator_dividends, validator_vtrust, validator_stake (TAO), server_consensus, server_incentive.
"""
import json
import pathlib

import jax
import numpy as np
from absl import flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from ml_collections import config_flags

from bittensor_jax import cli, loop
from bittensor_jax import config as config_lib

config_flags.DEFINE_config_file("config", "configs/default.py:smoke",
                                "Config file and preset; --config.x.y=z overrides apply to every "
                                "run.", lock_config=True)
flags.DEFINE_string("param", None, "Dotted config field to sweep, e.g. network.kappa.",
                    required=True)
flags.DEFINE_list("values", None, "Comma-separated values, parsed as the field's type.",
                  required=True)
flags.DEFINE_string("workdir", "runs/sweep", "Folder for the runs, sweep.json and sweep.png.")
DEFAULT_METRICS = ("ensemble_loss", "best_server_loss", "quality_incentive_spearman",
                   "honest_stake_share", "validator_dividends", "validator_vtrust")
PER_UID = {"validator_dividends": ("validators", "dividends"),
           "validator_vtrust": ("validators", "vtrust"),
           "validator_stake": ("validators", "stake_tao"),
           "server_consensus": ("final_consensus", None),
           "server_incentive": ("final_incentive", None)}
flags.DEFINE_list("metrics", list(DEFAULT_METRICS), "Metrics to plot: summary.json scalars or "
                  f"per-uid {sorted(PER_UID)}.")
FLAGS = flags.FLAGS


def _parse(current, text: str):
  """`text` as the type of the field's current value."""
  if isinstance(current, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"--values: {text!r} is not a bool")
    return text.lower() in ("true", "1")
  if isinstance(current, (int, float)):
    try:
      return type(current)(text)
    except ValueError as e:
      raise ValueError(f"--values: {text!r} is not a {type(current).__name__}") from e
  return text


def _lookup(tree: dict, dotted: str):
  for name in dotted.split("."):
    tree = tree[name]
  return tree


def collect(workdir: pathlib.Path, param: str) -> list[dict]:
  """Every finished `<param>=<value>` run in `workdir`: {value, **summary}, sorted by value."""
  runs = []
  for run_dir in workdir.glob(f"{param}=*"):
    summary, config = run_dir / "summary.json", run_dir / "config.json"
    if summary.is_file() and config.is_file():
      value = _lookup(json.loads(config.read_text()), param)
      runs.append({"value": value, "workdir": run_dir.name, **json.loads(summary.read_text())})
  try:
    return sorted(runs, key=lambda r: r["value"])
  except TypeError:
    return sorted(runs, key=lambda r: str(r["value"]))


def metric_lines(run: dict, metric: str) -> dict[str, float]:
  """{line label: value} of one metric in one run's summary (one line per uid for PER_UID)."""
  if metric in PER_UID:
    key, field = PER_UID[metric]
    if key == "validators":
      return {f"uid {v['uid']} ({v['behaviour']})": v[field] for v in run.get(key, [])}
    first = len(run.get("validators", []))
    return {f"uid {first + k}": x for k, x in enumerate(run.get(key, []))}
  value = run.get(metric)
  if isinstance(value, dict):
    value = value.get("total")
  return {metric: np.nan if value is None else float(value)}


def plot(param: str, runs: list[dict], metrics: list[str], path: pathlib.Path,
         title: str) -> pathlib.Path:
  """Writes one panel per metric against the swept value; plain axes, values marked."""
  cols = min(3, len(metrics))
  rows = -(-len(metrics) // cols)
  fig = Figure(figsize=(5.2 * cols, 3.9 * rows), layout="constrained")
  axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
  values = [r["value"] for r in runs]
  numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
  x = np.asarray(values, float) if numeric else np.arange(len(values))
  for ax, metric in zip(axes, metrics):
    lines: dict[str, list[float]] = {}
    for i, run in enumerate(runs):
      for label, v in metric_lines(run, metric).items():
        lines.setdefault(label, [np.nan] * len(runs))[i] = v
    for label, y in lines.items():
      ax.plot(x, y, marker="o", label=label)
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    finite = np.asarray([v for y in lines.values() for v in y], float)
    finite = finite[np.isfinite(finite)]
    if finite.size:
      lo, hi = finite.min(), finite.max()
      span = max(hi - lo, 0.02 * max(abs(hi), abs(lo), 1e-12))  # tiny spreads stay flat
      ax.set_ylim(lo - 0.15 * span, hi + 0.15 * span)
      if hi - lo <= 1e-3 * max(abs(hi), abs(lo), 1e-12):
        ax.text(0.5, 0.05, f"all runs within {hi - lo:.1e}", transform=ax.transAxes,
                ha="center", color="gray", fontsize=8)
    ax.set(title=metric, xlabel=param)
    if len(lines) > 1:
      ax.legend(fontsize=7, loc="best")
    if not numeric:
      ax.set_xticks(x, [str(v) for v in values])
  for ax in axes[len(metrics):]:
    ax.set_axis_off()
  fig.suptitle(title)
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=100)
  return path


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  jax.config.update("jax_enable_x64", True)
  workdir = pathlib.Path(FLAGS.workdir)
  known = set(PER_UID) | set(loop.SUMMARY_KEYS) | {"best_server_uid", "registrations",
                                                   "total_issuance_tao", "retired_stake_rao"}
  unknown = [m for m in FLAGS.metrics if m not in known]
  if unknown:
    raise ValueError(f"--metrics: unknown {unknown}; known: {sorted(known)}")
  node = FLAGS.config
  for name in FLAGS.param.split("."):
    if not hasattr(node, "keys") or name not in node:
      raise ValueError(f"--param: {FLAGS.param} is not a config field")
    node = node[name]
  values = [_parse(node, v) for v in FLAGS.values]
  workdir.mkdir(parents=True, exist_ok=True)
  for value in values:
    config_lib.override(FLAGS.config, FLAGS.param, value)  # in place: references follow
    loop.train_and_evaluate(FLAGS.config, workdir / f"{FLAGS.param}={value}")
    runs = collect(workdir, FLAGS.param)
    (workdir / "sweep.json").write_text(json.dumps({"param": FLAGS.param, "runs": runs},
                                                   indent=2))
  n = FLAGS.config.network
  title = (f"sweep over {FLAGS.param}: {n.num_validators} validators "
           f"({n.cabal_validators} cabal, {n.lazy_validators} lazy), {n.num_servers} servers, "
           f"{FLAGS.config.run.blocks} blocks, yuma3={n.yuma3}")
  plot(FLAGS.param, runs, list(FLAGS.metrics), workdir / "sweep.png", title)
  print(f"{len(runs)} runs in {workdir / 'sweep.json'}")
  print(workdir / "sweep.png")


if __name__ == "__main__":
  cli.run(main)
