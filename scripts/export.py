r"""Writes a run's history and final metagraph as tables (pandas): CSV or Parquet.

  python scripts/export.py --workdir=runs/demo                   # history.csv, metagraph.csv
  python scripts/export.py --workdir=runs/demo --format=parquet --out_dir=tables

history.<fmt> is long format, one row per (epoch, uid, field): epoch, block, uid, role,
behaviour, field, value (per-epoch fields have uid -1, role "network"); metagraph.<fmt> is the
last epoch in btcli's columns. Prints the paths. Works while the run is still going.
"""
from absl import flags

from bittensor_jax import cli, export

flags.DEFINE_string("workdir", None, "Run directory written by scripts/train.py.", required=True)
flags.DEFINE_enum("format", "csv", list(export.FORMATS), "Table format.")
flags.DEFINE_string("out_dir", None, "Where to write (default: the workdir).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  for path in export.write(FLAGS.workdir, FLAGS.format, FLAGS.out_dir):
    print(path)


if __name__ == "__main__":
  cli.run(main)
