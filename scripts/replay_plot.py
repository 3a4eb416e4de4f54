r"""Replays chain scenario files (scenarios/FORMAT.md) and plots each one.

  python scripts/replay_plot.py tests/testdata/chain/scenarios/yuma3_one_epoch_switch.json
  python scripts/replay_plot.py --out_dir=plots tests/testdata/chain/scenarios/*.json

Writes <out_dir>/<scenario name>.png (dividends, incentive, consensus and emission per uid over
the epochs, and the last bonds matrix) and prints the paths. Seconds per file on CPU.
"""
import pathlib

import jax
from absl import app, flags

from bittensor_jax import cli, plots, replay

flags.DEFINE_string("out_dir", ".", "Folder for the PNGs.")
FLAGS = flags.FLAGS


def main(argv):
  files = argv[1:]
  if not files:
    raise app.UsageError("Give one or more scenario JSON files.")
  jax.config.update("jax_enable_x64", True)
  out_dir = pathlib.Path(FLAGS.out_dir)
  for path in files:
    try:
      doc = replay.load(path)
    except replay.ScenarioError as e:
      raise app.UsageError(f"{path}: {e}") from e
    rows = list(replay.run(doc))
    print(plots.plot_scenario(rows, out_dir / f"{doc['name']}.png", title=doc["name"]))


if __name__ == "__main__":
  cli.run(main)
