r"""The same network under classic Yuma and under Yuma3 (per-server bonds, fixed EMA).

Run both and compare the dividends of the lazy (weight-copying) validator with the honest ones:

  python scripts/train.py --config=configs/experiments/yuma3_vs_classic.py:classic \
      --workdir=runs/classic
  python scripts/train.py --config=configs/experiments/yuma3_vs_classic.py:yuma3 \
      --workdir=runs/yuma3

The arg is "classic" or "yuma3", optionally followed by a preset of configs/default.py
("yuma3,smoke"); the default preset is small (a few minutes on CPU).
"""
import importlib.util
import pathlib

import ml_collections

VARIANTS = ("classic", "yuma3")


def _default():
  path = pathlib.Path(__file__).resolve().parents[1] / "default.py"
  spec = importlib.util.spec_from_file_location("btj_configs_default", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """arg = "classic" | "yuma3" [",<preset>"]."""
  variant, _, preset = (arg or "classic").partition(",")
  if variant not in VARIANTS:
    raise ValueError(f"yuma3_vs_classic.py: arg must start with one of {VARIANTS}, got {arg!r}")
  c = _default().get_config(preset or None)
  c.network.yuma3 = variant == "yuma3"
  c.network.lazy_validators = max(1, c.network.num_validators // 4)
  return c
