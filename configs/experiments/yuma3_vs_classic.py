r"""The same network under classic Yuma and under Yuma3 (per-server bonds, fixed EMA).

Run both and compare the dividends of the lazy (weight-copying) validator with the honest ones:

  python scripts/train.py --config=configs/experiments/yuma3_vs_classic.py:classic \
      --workdir=runs/classic
  python scripts/train.py --config=configs/experiments/yuma3_vs_classic.py:yuma3 \
      --workdir=runs/yuma3

The arg is "classic" or "yuma3", optionally followed by a preset of configs/default.py
("yuma3,smoke"); the default preset is small (a few minutes on CPU).
"""
import pathlib

import ml_collections

from bittensor_jax import config as config_lib

VARIANTS = ("classic", "yuma3")


DEFAULT = pathlib.Path(__file__).resolve().parents[1] / "default.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """arg = "classic" | "yuma3" [",<preset>"]."""
  variant, _, preset = (arg or "classic").partition(",")
  if variant not in VARIANTS:
    raise ValueError(f"yuma3_vs_classic.py: arg must start with one of {VARIANTS}, got {arg!r}")
  c = config_lib.load_config_file(f"{DEFAULT}:{preset}")
  c.network.yuma3 = variant == "yuma3"
  c.network.lazy_validators = max(1, c.network.num_validators // 4)
  return c
