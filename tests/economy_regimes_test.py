"""The `single` and `root` regimes, and the 128-subnet run as one compiled call
(bittensor_jax.economy; docs/economy.md; docs/chain.md §3.1, §3.3)."""
import jax
import numpy as np

from bittensor_jax import chain, economy
from bittensor_jax.chain import emission
from bittensor_jax.economy import state as state_lib


def test_single_is_exactly_the_chain_block_step_and_today_s_block_emission():
  """One subnet taking the whole block emission: the ledger after B blocks equals B calls of
  `chain.block_step` leaf for leaf, and each block mints `emission.block_emission` of the issuance
  (the run crosses the first halving, so the rate changes inside it)."""
  cfg = economy.EconomyConfig(regime="single", tempo=4)
  start = 10_500_000 * 10**9 - 5 * 10**9          # 5 blocks before the first halving
  e0 = economy.create(cfg, capacity=1, in_use=1, n_uids=5, n_validators=2,
                      total_issuance=start)
  B = 11
  e, _ = economy.run(e0, cfg, B)
  ref = jax.tree.map(lambda x: x[0], e0.subnets)
  minted = []
  for _ in range(B):
    before = int(ref.total_issuance)
    ref, _, _ = chain.block_step(ref)
    minted.append(int(ref.total_issuance) - before)
    assert minted[-1] == emission.block_emission(before)
  got = jax.tree.map(lambda x: x[0], e.subnets)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert int(e.total_issuance) == int(ref.total_issuance) == start + sum(minted)
  assert set(minted) == {10**9, 5 * 10**8}
  assert int(e.tao_emission_S[0]) == sum(minted)
  assert float(ref.stake_N.sum()) > 0                 # epochs ran and paid


def _root_economy(S=5, V=3):
  cfg = economy.EconomyConfig(regime="root", tempo=3, rho=10.0)
  root_w = np.array([[1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [1, 1, 1, 1, 0]], np.float64)
  e0 = economy.create(cfg, capacity=S, in_use=4, n_uids=6, n_validators=V,
                      root_tao=[5 * 10**14, 3 * 10**14, 2 * 10**14], root_weights_VxS=root_w)
  return cfg, e0, root_w


def test_root_shares_are_proportional_to_consensus_times_rank():
  """EmissionValues_k ∝ C_k R_k with R = S·W (W row-normalized), T_k the stake with any weight on
  k and C_k = sigmoid(ρ (T_k - κ)) (docs/chain.md §3.3)."""
  cfg, e0, root_w = _root_economy()
  s_V = np.array([0.5, 0.3, 0.2])
  W = root_w / root_w.sum(1, keepdims=True)
  R, T = s_V @ W, s_V @ (W > 0)
  C = 1 / (1 + np.exp(-cfg.rho * (T - cfg.kappa_u16 / 65535)))
  want = C * R / (C * R).sum()
  got = np.asarray(economy.coinbase_terms(e0, cfg).share_S)
  np.testing.assert_allclose(got, want, rtol=1e-12)
  assert got[1] > got[2] > got[3] > got[4] == 0    # more stake behind it: more consensus


def test_root_regime_conserves_tao_to_the_rao_every_block_and_pays_the_take():
  cfg, e0, _ = _root_economy()

  def body(e, _):
    e, _ = economy.step(e, cfg)
    h = state_lib.holdings(e, "root")
    return e, (h["tao_issued"], h["tao_issuance"], h["tao_held"])
  e, (issued, issuance, held) = jax.jit(lambda e: jax.lax.scan(body, e, None, length=10))(e0)
  np.testing.assert_array_equal(issued, issuance)
  np.testing.assert_array_equal(issuance, held)
  # 1 TAO minted per block; the floor remainders of the shares are recycled (never issued)
  recycled = int(e.tao_recycled)
  assert 0 <= recycled < 10 * 4
  assert int(e.total_issuance) - int(e0.total_issuance) == 10 * 10**9 - recycled
  # the validators' stake grew by what the epochs paid: the 50/50 split of §1.11
  paid = np.asarray(e.subnets.stake_N - e0.subnets.stake_N)[:4]
  assert (paid[:, 1:4].sum(1) > 0).all() and (paid[:, 4:].sum(1) > 0).all()


def test_a_128_subnet_run_is_one_compiled_call():
  """`economy.run` over 128 subnets (few blocks here; docs/economy.md gives the 10,000-block
  rate) compiles one program, with the progress bar updated from inside it."""
  cfg = economy.EconomyConfig(regime="dtao", share_rule="price_burn", gate=True, tempo=2)
  e0 = economy.create(cfg, capacity=128, in_use=128, n_uids=4, n_validators=1)
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, *_a, **_k: compiles.append(name) if name.endswith("backend_compile_duration")
      else None)
  e, share_BxS = economy.run(e0, cfg, 4, progress=True, every=2)
  jax.block_until_ready(e)
  assert len(compiles) == 1, compiles
  assert share_BxS.shape == (4, 128) and int(e.block) == 4
  np.testing.assert_allclose(np.asarray(share_BxS).sum(1), 1.0, rtol=1e-12)
  h = state_lib.holdings(e)
  assert int(h["tao_issued"]) == int(h["tao_held"])
