r"""The same network under classic Yuma and under Yuma3 (per-server bonds), with one lazy validator.

A quarter of the validators (at least one) copy the last consensus instead of querying servers;
compare their dividends with the honest validators' under each bond model:

  python scripts/train.py --config=configs/experiments/yuma3_vs_classic.py:classic \
      --workdir=runs/classic
  python scripts/train.py --config=configs/experiments/yuma3_vs_classic.py:yuma3 \
      --workdir=runs/yuma3
  python scripts/train.py --config=configs/experiments/yuma3_vs_classic.py:yuma3,liquid_alpha,smoke

The arg is a comma-separated list of words in any order: "classic" or "yuma3" (default classic),
"liquid_alpha" (liquid alpha 2.0 on; off otherwise), and a preset of configs/default.py (default
small; runtimes in the README's "Config presets" table). ":smoke" alone is classic Yuma on the smoke preset.
"""
import pathlib

import ml_collections

from bittensor_jax import config as config_lib

VARIANTS = ("classic", "yuma3")
PRESETS = ("smoke", "small", "large")

DEFAULT = pathlib.Path(__file__).resolve().parents[1] / "default.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """arg = words among {classic | yuma3, liquid_alpha, smoke | small | large}."""
  words = [w.strip() for w in (arg or "").split(",") if w.strip()]
  unknown = [w for w in words if w not in VARIANTS + PRESETS + ("liquid_alpha",)]
  if unknown:
    raise ValueError(f"yuma3_vs_classic.py: unknown word {unknown[0]!r} in {arg!r}; use "
                     f"{VARIANTS}, 'liquid_alpha' and a preset {PRESETS}")
  variants = [w for w in words if w in VARIANTS]
  presets = [w for w in words if w in PRESETS]
  if len(variants) > 1 or len(presets) > 1:
    raise ValueError(f"yuma3_vs_classic.py: {arg!r} names more than one variant or preset")
  c = config_lib.load_config_file(f"{DEFAULT}:{presets[0] if presets else ''}")
  c.network.yuma3 = (variants or ["classic"])[0] == "yuma3"
  c.network.liquid_alpha = "liquid_alpha" in words
  c.network.lazy_validators = max(1, c.network.num_validators // 4)
  return c
