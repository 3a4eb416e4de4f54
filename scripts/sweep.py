r"""Runs one network per value of a config field and plots the headline metrics against it.

  python scripts/sweep.py --config=configs/default.py:smoke --param=network.kappa \
      --values=16384,32767,45000 --workdir=runs/kappa_sweep

Each value runs in <workdir>/<param>=<value> (an existing one is resumed, so a killed sweep can be
restarted); <workdir>/sweep.json holds every run's summary and <workdir>/sweep.png the metrics
against the value. The runtime is the chosen preset's, once per value.
"""
import json
import pathlib

import jax
import numpy as np
from absl import app, flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from ml_collections import config_flags

from bittensor_jax import cli, config as config_lib
from bittensor_jax import loop

config_flags.DEFINE_config_file("config", "configs/default.py:smoke",
                                "Config file and preset; --config.x.y=z overrides apply to every "
                                "run.", lock_config=True)
flags.DEFINE_string("param", None, "Dotted config field to sweep, e.g. network.kappa.",
                    required=True)
flags.DEFINE_list("values", None, "Comma-separated values, parsed as the field's type.",
                  required=True)
flags.DEFINE_string("workdir", "runs/sweep", "Folder for the runs, sweep.json and sweep.png.")
FLAGS = flags.FLAGS
METRICS = ("ensemble_loss", "best_server_loss", "isolated_server_loss",
           "quality_incentive_spearman", "honest_stake_share", "deregistrations")


def _parse(current, text: str):
  """`text` as the type of the field's current value."""
  if isinstance(current, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise app.UsageError(f"--values: {text!r} is not a bool")
    return text.lower() in ("true", "1")
  if isinstance(current, (int, float)):
    try:
      return type(current)(text)
    except ValueError as e:
      raise app.UsageError(f"--values: {text!r} is not a {type(current).__name__}") from e
  return text


def _plot(param: str, values: list, results: list[dict], path: pathlib.Path) -> None:
  fig = Figure(figsize=(15, 8), layout="constrained")
  axes = fig.subplots(2, 3).ravel()
  numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
  x = np.asarray(values, float) if numeric else np.arange(len(values))
  for ax, key in zip(axes, METRICS):
    y = [r[key]["total"] if key == "deregistrations" else r[key] for r in results]
    y = [np.nan if v is None else v for v in y]
    ax.plot(x, y, marker="o")
    ax.set(title=key, xlabel=param)
    if not numeric:
      ax.set_xticks(x, [str(v) for v in values])
  fig.suptitle(f"sweep over {param}")
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=100)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  jax.config.update("jax_enable_x64", True)
  workdir = pathlib.Path(FLAGS.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  node = FLAGS.config
  for name in FLAGS.param.split("."):
    if not hasattr(node, "keys") or name not in node:
      raise app.UsageError(f"--param: {FLAGS.param} is not a config field")
    node = node[name]
  values = [_parse(node, v) for v in FLAGS.values]
  results = []
  for value in values:
    config_lib.override(FLAGS.config, FLAGS.param, value)  # in place: references follow
    summary = loop.train_and_evaluate(FLAGS.config, workdir / f"{FLAGS.param}={value}")
    results.append({"value": value, **summary})
    (workdir / "sweep.json").write_text(json.dumps(
        {"param": FLAGS.param, "runs": results}, indent=2))
  _plot(FLAGS.param, values, results, workdir / "sweep.png")
  print(workdir / "sweep.json")
  print(workdir / "sweep.png")


if __name__ == "__main__":
  cli.run(main)
