r"""Baseline: every server honest, every validator honest.

  python scripts/train.py --config=configs/experiments/honest.py:small --workdir=runs/honest

Same runtime as the chosen preset of configs/default.py (README, "Config presets").
"""
import pathlib

import ml_collections

from bittensor_jax import config as config_lib


DEFAULT = pathlib.Path(__file__).resolve().parents[1] / "default.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """configs/default.py:<arg> with no noise, offline or copier servers."""
  c = config_lib.load_config_file(f"{DEFAULT}:{arg or ''}")
  c.network.noise_servers = c.network.offline_servers = c.network.copier_servers = 0
  c.network.lazy_validators = c.network.cabal_validators = c.network.cabal_servers = 0
  return c
