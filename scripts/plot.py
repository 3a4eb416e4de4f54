r"""Draws the dashboard of a run and the TAO supply schedule.

  python scripts/plot.py --workdir=runs/smoke

Writes <workdir>/dashboard.png (stake shares, incentive, dividends, incentive vs quality, losses,
registrations; from <workdir>/history) and <workdir>/supply_schedule.png, and prints both paths.
Works while the run is still going (it reads the completed epochs).
"""
import pathlib

from absl import app, flags

from bittensor_jax import cli, loop, plots
from bittensor_jax.chain import emission

flags.DEFINE_string("workdir", None, "Run directory written by scripts/train.py.", required=True)
flags.DEFINE_float("years", 40.0, "Horizon of the supply schedule plot.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  workdir = pathlib.Path(FLAGS.workdir)
  if not (workdir / "history").is_dir():
    raise app.UsageError(f"{workdir} has no history/; is it a run directory?")
  dashboard = plots.plot_dashboard(loop.read_history(workdir), workdir / "dashboard.png",
                                   title=loop.describe(workdir))
  supply = emission.plot_supply_schedule(str(workdir / "supply_schedule.png"), years=FLAGS.years)
  print(dashboard)
  print(supply)


if __name__ == "__main__":
  cli.run(main)
