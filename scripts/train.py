r"""Runs (or resumes) a simulated Bittensor network and writes history, checkpoints and a summary.

  python scripts/train.py --config=configs/default.py:smoke --workdir=runs/smoke
  python scripts/train.py --config=configs/default.py:small --config.network.kappa=40000
  python scripts/train.py --config=configs/experiments/cabal_attack.py:smoke

Rerunning with the same --workdir resumes from the newest valid checkpoint (bit-exact); raising
--config.run.blocks extends a finished run.
"""
import datetime

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from bittensor_jax import loop

config_flags.DEFINE_config_file(
    "config", "configs/default.py:smoke", "Config file and preset, e.g. configs/default.py:small;"
    " override fields with --config.network.num_servers=12.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (default runs/<timestamp>); an existing one "
                    "is resumed.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  jax.config.update("jax_enable_x64", True)
  workdir = FLAGS.workdir or f"runs/{datetime.datetime.now():%Y%m%d-%H%M%S}"
  logging.info("devices %s, workdir %s", jax.devices(), workdir)
  loop.train_and_evaluate(FLAGS.config, workdir)


if __name__ == "__main__":
  app.run(main)
