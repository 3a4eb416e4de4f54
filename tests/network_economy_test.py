"""The federated network takes its emission from an economy (issue 13): its subnet is netuid 0 of
`network.economy_subnets` subnets, paid its share of each block, and a newcomer pays the burn."""
import dataclasses

import jax
import numpy as np
import pytest

from bittensor_jax import economy, network
from bittensor_jax.chain import emission
from bittensor_jax.economy import staking
from bittensor_jax.neurons import transformer

CFG = network.NetworkConfig(
    num_validators=2, num_servers=3, noise_servers=0, offline_servers=0, copier_servers=0,
    model=transformer.ModelConfig(width=16, depth=1, heads=2, context=16), seq_len=16, batch=2,
    local_steps=1, query_batch=2, tempo=5, weights_rate=5, registration_interval=7,
    immunity_period=2, max_server_tokens=20_000, max_eval_tokens=5_000, twins="none",
    economy="price_burn", economy_subnets=4)
BLOCKS = 10  # two calls of tempo (5) blocks: one compiled program


@pytest.fixture(scope="module")
def econ_run():
  net = network.Network(CFG)
  state0 = net.init()
  econ0 = jax.device_get(state0.econ)
  issuance0 = int(state0.subnet.total_issuance)
  state, m = net.run(state0, BLOCKS)
  return econ0, issuance0, jax.device_get(state), jax.device_get(m)


def test_the_subnet_is_paid_its_share_and_conserves_it(econ_run):
  """Each block the subnet's issuance grows by what `economy.subnet_emission` says netuid 0
  receives (the same economy stepped alone, registrations paying the burn as the network's do),
  not the whole block emission; stake + pending + retired equals that issuance every block."""
  econ, issuance, _, m = econ_run
  ecfg = network.economy_config(CFG)
  S = CFG.economy_subnets
  want = []
  for b in range(1, BLOCKS + 1):
    got = int(economy.subnet_emission(econ, ecfg, 0)["epoch_emission"])
    issuance += got
    want.append(issuance)
    econ, _ = economy.step(econ, ecfg)
    if b % CFG.registration_interval == 0:
      econ = staking.pay_burn(econ, ecfg, np.arange(S) == 0)
  np.testing.assert_array_equal(m["total_issuance"], want)
  first = want[0] - econ_run[1]
  assert 0 < first < emission.DEFAULT_BLOCK_EMISSION_RAO  # a share, after the owner cut
  total = m["stake_N"].sum(-1) + m["pending_emission"] + m["retired_stake"]
  np.testing.assert_array_equal(total, m["total_issuance"].astype(np.float64))
  assert m["epoch_ran"].sum() == BLOCKS // CFG.tempo


def test_a_newcomer_pays_the_burn_of_netuid_0(econ_run):
  econ0, _, state, _ = econ_run
  assert int(state.registrations) == 1
  ecfg = network.economy_config(CFG)
  decay = 2.0 ** (-BLOCKS / ecfg.burn_half_life)
  burn = np.asarray(state.econ.burn_S, np.float64)
  # netuid 0 paid once (x1.26), the others only decayed (to the rao, floored each block)
  assert burn[0] == pytest.approx(burn[1] * ecfg.burn_increase_mult, rel=1e-6)
  assert burn[1] == pytest.approx(float(econ0.burn_S[1]) * decay, rel=1e-6)
  assert int(state.econ.alpha_burned_S[0]) > 0 and int(state.econ.alpha_burned_S[1:].sum()) == 0
  assert int(econ0.wallet_tao) > int(state.econ.wallet_tao)


def test_without_an_economy_the_subnet_takes_the_whole_block():
  cfg = dataclasses.replace(CFG, economy="none")
  assert network.init_state(cfg).econ is None and network.economy_config(cfg) is None


@pytest.mark.parametrize("field,value", [("economy", "bitcoin"), ("economy_subnets", 1)])
def test_bad_economy_settings_name_the_field(field, value):
  with pytest.raises(ValueError, match=f"network.{field}"):
    dataclasses.replace(CFG, **{field: value})
