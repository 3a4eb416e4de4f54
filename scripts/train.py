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

from bittensor_jax import cli, distributed, loop

config_flags.DEFINE_config_file(
    "config", "configs/default.py:smoke", "Config file and preset, e.g. configs/default.py:small;"
    " override fields with --config.network.num_servers=12.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (default runs/<timestamp>); an existing one "
                    "is resumed.")
flags.DEFINE_string("data_dir", None, "A folder of UTF-8 text files to use instead of the "
                    "Shakespeare plays (same as --config.network.data_dir).")
flags.DEFINE_string("coordinator_address", None, "Many hosts: host:port of process 0's "
                    "coordinator (jax.distributed); leave unset for one process.")
flags.DEFINE_integer("num_processes", 1, "Many hosts: number of processes in the run.")
flags.DEFINE_integer("process_id", 0, "Many hosts: this process's index in [0, num_processes).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if FLAGS.num_processes > 1:
    if not FLAGS.coordinator_address:
      raise app.UsageError("--num_processes > 1 needs --coordinator_address=host:port")
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  jax.config.update("jax_enable_x64", True)
  workdir = FLAGS.workdir or f"runs/{datetime.datetime.now():%Y%m%d-%H%M%S}"
  logging.info("process %d/%d, devices %s, workdir %s", jax.process_index(), jax.process_count(),
               jax.devices(), workdir)
  config = FLAGS.config
  if FLAGS.data_dir:
    with config.unlocked():
      config.network.data_dir = FLAGS.data_dir
  loop.train_and_evaluate(config, workdir)
  distributed.finish()  # every process leaves together (many hosts), else gloo aborts


if __name__ == "__main__":
  cli.run(main)
