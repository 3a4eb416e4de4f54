"""The allocation study's measures and CLI (bittensor_jax.studies.allocation)."""
import subprocess
import sys

import numpy as np
import pytest

from bittensor_jax.studies import allocation


def _result(total_S, seeds=2, K=10):
  """Results shaped as `simulate` returns them: emission grows linearly to total_S."""
  total_S = np.asarray(total_S, np.float64)
  em = np.linspace(0, 1, K + 1)[1:, None] * total_S[None, :]          # [K, S]
  em = np.broadcast_to(em, (seeds, 2, K, total_S.size)).astype(np.int64)
  z = np.zeros((seeds, 2))
  return dict(emission_KxS=em, owner_alpha=z, spot=z, exit_tao=z.astype(np.int64),
              staked_tao=np.stack([np.zeros(seeds), np.full(seeds, 10 * allocation.RAO)], 1),
              run_s=2.0)


def test_equal_emission_has_zero_gini_every_subnet_above_one_percent_and_all_survive():
  row = allocation.summarize("price", _result(np.full(50, 10**12)), survival_bar=0.1,
                             blocks=100, n_runs=4)
  assert row["gini"] == pytest.approx(0.0, abs=1e-12)
  assert row["subnets_above_1pct"] == 50 and row["survival"] == 1.0
  assert row["blocks_per_s"] == 200.0
  # the attacker staked 10 TAO and got nothing back: -100%
  assert row["attack_profit_tao"] == -10.0 and row["attack_profit_pct"] == -100.0
  assert row["attack_profit_sd"] == 0.0 and row["attack_wins"] == 0.0


def test_one_subnet_taking_everything_is_the_gini_maximum_and_the_rest_die():
  total = np.zeros(8)
  total[3] = 10**12
  row = allocation.summarize("flow", _result(total), survival_bar=0.1, blocks=10, n_runs=1)
  assert row["gini"] == pytest.approx(7 / 8)
  assert row["subnets_above_1pct"] == 1 and row["survival"] == pytest.approx(1 / 8)


def test_rule_names_map_to_configs_and_bad_ones_are_named():
  assert allocation.config_for("flow+gate").gate and allocation.config_for("root").regime == "root"
  assert allocation.config_for("price_burn").share_rule == "price_burn"
  with pytest.raises(ValueError, match="rule"):
    allocation.config_for("nope")
  with pytest.raises(ValueError, match="blocks"):
    allocation.check_args(8, 101, 1, 10, 1.0, 8)
  with pytest.raises(ValueError, match="subnets"):
    allocation.check_args(129, 100, 1, 10, 1.0, 8)


def test_the_cli_exits_2_naming_a_bad_flag():
  res = subprocess.run([sys.executable, "-m", "bittensor_jax.studies.allocation", "--subnets",
                        "1", "--json"], capture_output=True, text=True, timeout=120)
  assert res.returncode == 2
  assert "subnets" in res.stderr and res.stdout == ""
