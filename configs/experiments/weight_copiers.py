r"""Lazy validators: a quarter of the validators (at least one) copy the last consensus.

A weight copier sets weights equal to the chain's consensus vector instead of querying servers.
Under classic Yuma its bonds lag the honest validators'; compare its dividends with theirs.

  python scripts/train.py --config=configs/experiments/weight_copiers.py:small \
      --workdir=runs/weight_copiers

Same runtime as the chosen preset of configs/default.py.
"""
import pathlib

import ml_collections

from bittensor_jax import config as config_lib


DEFAULT = pathlib.Path(__file__).resolve().parents[1] / "default.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """configs/default.py:<arg> with max(1, V // 4) lazy validators (the last ones)."""
  c = config_lib.load_config_file(f"{DEFAULT}:{arg or ''}")
  c.network.lazy_validators = max(1, c.network.num_validators // 4)
  return c
