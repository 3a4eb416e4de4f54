r"""A cabal: a minority of validators holding 30% of the stake puts all its weight on its own
(noise) servers.

The cabal's servers are the last `cabal_servers` servers, which are the noise servers here (no
offline or copier servers), so the honest majority sees them as useless. With kappa = 0.5 the
consensus clips the cabal's weights; watch the cabal servers' incentive and the cabal validators'
dividends. The cabal's share is `network.cabal_stake_share` (change it with
`--config.network.cabal_stake_share=0.45`). Server churn never deregisters a validator unless
`--config.network.deregister_validators=True`.

  python scripts/train.py --config=configs/experiments/cabal_attack.py:small \
      --workdir=runs/cabal_attack

Same runtime as the chosen preset of configs/default.py.
"""
import pathlib

import ml_collections

from bittensor_jax import config as config_lib

DEFAULT = pathlib.Path(__file__).resolve().parents[1] / "default.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """configs/default.py:<arg> with a cabal of max(1, V // 4) validators holding 30% of stake."""
  c = config_lib.load_config_file(f"{DEFAULT}:{arg or ''}")
  n = c.network
  V, K = n.num_validators, n.num_servers  # pylint: disable=invalid-name
  cabal_k = max(1, K // 6)
  n.cabal_validators, n.cabal_servers = max(1, V // 4), cabal_k
  n.noise_servers, n.offline_servers, n.copier_servers = cabal_k, 0, 0
  n.cabal_stake_share = 0.3
  return c
