"""The dtao block step (bittensor_jax.economy.block): TAO and alpha are conserved to the rao every
block, and the network hook `subnet_emission` says exactly what the block then does
(docs/economy.md; docs/chain.md §3.4)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import economy
from bittensor_jax.economy import Actions, state as state_lib

S, N, V, TEMPO, BLOCKS = 4, 6, 2, 5, 26
CFG = economy.EconomyConfig(regime="dtao", share_rule="price_burn", gate=True, tempo=TEMPO,
                            gate_interval=7, ema_halving_blocks=3, moving_alpha=0.05)


def _economy():
  w = np.zeros((S, N, N), np.int64)
  w[:, 1:V + 1, 0] = [[0], [20000], [65535], [0]]   # owner hotkeys weighted: MinerBurned > 0
  w[:, 1:V + 1, V + 1:] = 65535
  return economy.create(CFG, capacity=S, in_use=3, n_uids=N, n_validators=V,
                        pool_tao=[10**12, 3 * 10**12, 5 * 10**11, 10**12],
                        pool_alpha=10**13, validator_alpha=10**12, wallet_tao=10**14,
                        weights_SxNxN=w, root_tao=[6 * 10**14, 6 * 10**14])


def _actions(key):
  k1, k2, k3 = jax.random.split(key, 3)
  return Actions(
      stake_tao_S=jax.random.randint(k1, (S,), 0, 5 * 10**10).astype(jnp.int64),
      unstake_alpha_S=jax.random.randint(k2, (S,), 0, 10**11).astype(jnp.int64),
      register_S=jax.random.uniform(k3, (S,)) < 0.3)


@pytest.fixture(scope="module")
def trace():
  """BLOCKS blocks with random stake, unstake and registrations, as one compiled scan; per block
  the conservation sides, the hook's numbers for subnet 1 and the state deltas they predict."""
  e0 = _economy()

  def body(e, key):
    hook = economy.subnet_emission(e, CFG, 1)
    e2, terms = economy.step(e, CFG, _actions(key))
    h = state_lib.holdings(e2)
    delta = dict(server=e2.pending_server_S[1] - e.pending_server_S[1],
                 validator=e2.pending_validator_S[1] - e.pending_validator_S[1],
                 owner=e2.pending_owner_S[1] - e.pending_owner_S[1],
                 tao=e2.tao_emission_S[1] - e.tao_emission_S[1],
                 alpha_minted=e2.alpha_minted_S[1] - e.alpha_minted_S[1])
    return e2, (h, hook, delta, terms.share_S, terms.block_emission, e2.block,
                e2.miner_burned_S, e2.alpha_burned_S)
  keys = jax.random.split(jax.random.key(0), BLOCKS)
  e, out = jax.jit(lambda e: jax.lax.scan(body, e, keys))(e0)
  return e0, e, jax.tree.map(np.asarray, out)


def test_tao_is_conserved_to_the_rao_every_block(trace):
  _, _, (h, *_rest) = trace
  np.testing.assert_array_equal(h["tao_issued"], h["tao_issuance"])
  np.testing.assert_array_equal(h["tao_issuance"], h["tao_held"])


def test_alpha_is_conserved_to_the_rao_every_block(trace):
  """minted = pool + outstanding + recycled + burned, and outstanding = stake + pending + held."""
  _, _, (h, *_rest) = trace
  np.testing.assert_array_equal(h["alpha_minted_S"], h["alpha_accounted_S"])
  np.testing.assert_array_equal(h["alpha_out_S"], h["alpha_held_S"])


def test_the_run_exercised_every_flow(trace):
  """The conservation checks above saw epochs, registrations (alpha burned), owner burn,
  recycling and issuance growth: each counter moved."""
  e0, e, (h, _, _, _, _, block, mb, burned) = trace
  assert int(e.block) == BLOCKS and block[-1] == BLOCKS
  assert (burned[-1][:3] > 0).all()
  # every validator weights the owner hotkey alike, so MinerBurned is its part of the row
  miners = 3 * 65535
  assert mb[-1][0] == 0
  assert mb[-1][1] == pytest.approx(20000 / (20000 + miners), abs=2e-3)
  assert mb[-1][2] == pytest.approx(65535 / (65535 + miners), abs=2e-3)
  assert int(e.alpha_recycled_S.sum()) > 0 and int(e.miner_burned_alpha_S[2]) > 0
  assert int(e.total_issuance) > int(e0.total_issuance)
  assert int(e.owner_alpha_S[:3].min()) > 0 and int(e.retired_S.sum()) >= 0
  assert (np.asarray(e.alpha_out_S)[3] == 0) and int(e.tao_emission_S[3]) == 0  # unused slot


def test_shares_sum_to_one_and_the_block_emission_is_shared(trace):
  _, _, (_, _, delta, share, E, *_r) = trace
  np.testing.assert_allclose(share.sum(1), 1.0, rtol=1e-12)
  assert (share[:, 3] == 0).all()
  assert (E == 10**9).all()


def test_the_network_hook_says_what_the_block_pays_the_subnet(trace):
  """`subnet_emission` (computed before the block) equals the pending alpha and TAO emission the
  block adds to subnet 1, except on epoch blocks, where the pending buckets are paid out."""
  _, _, (_, hook, delta, *_r) = trace
  blocks = np.arange(1, BLOCKS + 1)
  quiet = blocks % TEMPO != 0
  np.testing.assert_array_equal(delta["tao"], hook["tao"])
  np.testing.assert_array_equal(delta["alpha_minted"], hook["alpha_in"] + hook["alpha_out"])
  np.testing.assert_array_equal(delta["owner"][quiet], hook["owner_cut"][quiet])
  np.testing.assert_array_equal(delta["server"][quiet], hook["server"][quiet])
  np.testing.assert_array_equal(delta["validator"][quiet], hook["validator"][quiet])
  assert (hook["alpha_out"] + 0 == hook["owner_cut"] + hook["server"] + hook["validator"]
          + hook["root_alpha"]).all()
  assert (hook["epoch_emission"] <= hook["alpha_out"]).all()


def test_bad_inputs_are_value_errors_naming_the_field():
  with pytest.raises(ValueError, match="EconomyConfig.regime"):
    economy.EconomyConfig(regime="nope").check()
  with pytest.raises(ValueError, match="EconomyConfig.gate_q"):
    economy.EconomyConfig(gate_q=0.0).check()
  with pytest.raises(ValueError, match="EconomyConfig.min_burn"):
    economy.EconomyConfig(min_burn=10, max_burn=5).check()
  with pytest.raises(ValueError, match="capacity"):
    economy.create(CFG, capacity=0, in_use=1)
  with pytest.raises(ValueError, match="in_use"):
    economy.create(economy.EconomyConfig(regime="single"), capacity=4, in_use=2)
  with pytest.raises(ValueError, match="pool_tao"):
    economy.create(CFG, capacity=2, in_use=2, pool_tao=[-1, 5])
  with pytest.raises(ValueError, match="blocks"):
    economy.run(_economy(), CFG, 0)
