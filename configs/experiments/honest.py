r"""Baseline: every server honest, every validator honest.

  python scripts/train.py --config=configs/experiments/honest.py:small --workdir=runs/honest

Same runtime as the chosen preset of configs/default.py (smoke about a minute on CPU, small a few
minutes, large one GPU).
"""
import importlib.util
import pathlib

import ml_collections


def _default():
  path = pathlib.Path(__file__).resolve().parents[1] / "default.py"
  spec = importlib.util.spec_from_file_location("btj_configs_default", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """configs/default.py:<arg> with no noise, offline or copier servers."""
  c = _default().get_config(arg)
  c.network.noise_servers = c.network.offline_servers = c.network.copier_servers = 0
  c.network.lazy_validators = c.network.cabal_validators = c.network.cabal_servers = 0
  return c
