"""Tests of the incentive-mechanism studies: properties that follow from the definitions, on tiny
networks and grids, plus one smoke test per CLI (JSON rows and files written)."""
# pylint: disable=invalid-name
import functools
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax.chain import kernels as K
from bittensor_jax.studies import cases
from bittensor_jax.studies import consensus_guarantees as cg
from bittensor_jax.studies import relaxation, variant_epoch, variants, weight_copying

ROOT = pathlib.Path(__file__).resolve().parents[1]
F32 = jnp.float32


def _tiny(honest_stake=0.6, sigma_w=0.4, seed=0):
  hv, hk = (jnp.asarray(m) for m in cg.side_masks(honest_stake, n_neurons=40, n_validators=8))
  net = cg.sample_network(jax.random.key(seed), hv, hk, F32(honest_stake), F32(sigma_w))
  return hv, hk, net


def test_side_masks_keep_one_of_each_and_match_the_share():
  for sh in (0.01, 0.6, 0.99):
    hv, hk = cg.side_masks(sh)
    for m in (hv, hk):
      assert 1 <= m.sum() <= m.size - 1
  hv, hk = cg.side_masks(0.6)
  assert (hv.sum() + hk.sum()) == round(0.6 * cg.N_NEURONS)
  with pytest.raises(ValueError, match="honest_stake"):
    cg.side_masks(1.0)


def test_sampled_quadrants_sum_to_the_self_weights():
  hv, hk, (stake_V, own, other) = _tiny()
  np.testing.assert_allclose(stake_V[hv].sum(), 0.6, rtol=1e-6)
  W = cg.weights_for(own, other, hv, 0.7, 0.2)
  honest_on_honest = np.asarray(W)[np.asarray(hv)][:, np.asarray(hk)].sum(1)
  cabal_on_cabal = np.asarray(W)[~np.asarray(hv)][:, ~np.asarray(hk)].sum(1)
  np.testing.assert_allclose(honest_on_honest, 0.7, rtol=1e-5)
  np.testing.assert_allclose(cabal_on_cabal, 0.2, rtol=1e-5)


def test_cabal_without_stake_gets_nothing():
  # Full honest utility and a cabal of 0 stake: the cabal servers have no kappa support (consensus
  # 0, incentive 0) and the cabal validators no bonds, so the honest side keeps everything.
  hv, hk, (stake_V, own, other) = _tiny()
  stake_V = jnp.where(hv, stake_V, 0)
  for w_c in (0.0, 0.5, 1.0):
    for beta in (0.0, 1.0):
      e = cg.honest_emission(stake_V, own, other, hv, hk, 1.0, w_c, 0.5, beta, 0.5)
      np.testing.assert_allclose(e, 1.0, rtol=1e-5)


def test_vmapped_grid_equals_a_loop_of_single_evaluations():
  hv, hk, _ = _tiny()
  key = jax.random.key(3)
  n_grid = 5
  betas = (0.0, 0.5, 1.0)
  inc, div = cg.emission_grid(key, hv, hk, 0.6, 0.4, 0.5, jnp.asarray(betas, F32), n_samples=2,
                              n_grid=n_grid, batch=3)
  grid = np.linspace(0, 1, n_grid)
  keys = jax.random.split(key, 2)
  for s in range(2):
    stake_V, own, other = cg.sample_network(keys[s], hv, hk, F32(0.6), F32(0.4))
    for h in (0, 2, 4):
      for c in (1, 3):
        for b, beta in enumerate(betas):
          for xi in (0.0, 0.5):
            want = cg.honest_emission(stake_V, own, other, hv, hk, F32(grid[h]), F32(grid[c]),
                                      F32(0.5), F32(beta), F32(xi))
            got = cg.emission(inc[s, h, c], div[s, h, c, b], xi)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_crossing_is_interpolated_between_the_sign_change():
  grid = np.linspace(0, 1, 6)
  # Worst case over W_C (the last axis) crosses 0.6 between grid points 2 and 3.
  E = np.array([[0.1, 0.2, 0.5, 0.7, 0.8, 0.9]])[:, :, None] + np.array([0.0, 0.05])[None, None]
  got = cg.utility_required(E, grid, 0.6)
  np.testing.assert_allclose(got, [0.4 + 0.5 * 0.2])
  assert np.isnan(cg.utility_required(E * 0.1, grid, 0.6)[0])
  np.testing.assert_allclose(cg.utility_required(E + 1, grid, 0.6), [0.0])
  # And on a real grid: the crossing lies where min over W_C of E_H - S_H changes sign.
  hv, hk, _ = _tiny(0.7)
  n = 11
  inc, div = cg.emission_grid(jax.random.key(1), hv, hk, 0.7, 0.4, 0.5, jnp.asarray([1.0], F32),
                              n_samples=1, n_grid=n)
  E = cg.emission(inc, div[..., 0], 0.5)
  x = cg.utility_required(np.asarray(E), np.linspace(0, 1, n), 0.7)[0]
  f = np.asarray(E)[0].min(-1) - 0.7
  k = int(np.argmax(f >= 0))
  assert k > 0 and f[k - 1] < 0 <= f[k]
  assert (k - 1) / (n - 1) <= x <= k / (n - 1)


def test_run_rows_and_the_kappa_and_bonds_penalty_directions():
  rows, grids = cg.run(samples=1, grid_step=0.1, honest_stakes=(0.6,),
                       sweeps={"bonds_penalty": (0.0, 1.0), "validator_share": (0.0, 0.5)},
                       keep_grids=[dict(cg.BASELINE, honest_stake=0.6)])
  by = {(r["bonds_penalty"], r["validator_share"]): r["honest_utility_required"] for r in rows}
  assert len(rows) == 3 and set(cg.ROW_KEYS) <= set(rows[0])
  # docs/consensus.md's finding (78 % at beta = 0 against 73 % at beta = 1): cutting bonds above
  # consensus moves dividends from the cabal to the honest side, so a full bonds penalty needs
  # less honest utility (an expectation checked on this draw, not a theorem).
  assert by[(1.0, 0.5)] <= by[(0.0, 0.5)] + 1e-9
  assert grids[tuple(cg.BASELINE[k] for k in cg.ROW_KEYS[:4]) + (0.6,)].shape == (11, 11)


def test_soft_median_tends_to_the_hard_median():
  key = jax.random.key(5)
  stake = jax.random.uniform(key, (16,), F32, 0.1, 1.0)
  W = jax.random.uniform(jax.random.key(6), (16, 12), F32)
  hard = K.weighted_median_col(stake, W, F32(0.5))
  errs = [float(jnp.abs(relaxation.soft_weighted_median_col(stake, W, 0.5, t) - hard).max())
          for t in (1e-1, 1e-2, 1e-5)]
  assert errs[-1] < 1e-4
  assert errs[0] > errs[-1]
  g = jax.grad(lambda w: relaxation.soft_weighted_median_col(stake, w, 0.5, 1e-2).sum())(W)
  assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).sum()) > 0


def test_gradient_attack_is_scored_on_the_exact_epoch():
  hv, hk, (stake_V, own, other) = _tiny()
  W, soft, hard = relaxation.attack(stake_V, own, other, hv, hk, F32(0.7), F32(0.8), F32(0.5),
                                    F32(1.0), F32(0.5), F32(1e-3), F32(0.05), steps=5)
  np.testing.assert_array_equal(np.asarray(W)[np.asarray(hv)],
                                np.asarray(cg.weights_for(own, other, hv, 0.7, 0.8))[
                                    np.asarray(hv)])
  best = relaxation.hard_honest_emission(stake_V, W, hv, hk, F32(0.5), F32(1.0), F32(0.5))
  np.testing.assert_allclose(best, np.asarray(hard).min(), rtol=1e-6)
  assert soft.shape == (5,)


def test_no_memory_is_classic_with_alpha_one_and_classic_matches_the_chain():
  stake, weights = cases.stack(cases.library(epochs=8))
  p = variants.Params()
  D_nm, _ = cases.run_variant("no_memory", stake, weights, p)
  D_a1, _ = cases.run_variant("classic", stake, weights, p._replace(alpha=1.0))
  np.testing.assert_allclose(D_nm, D_a1, atol=1e-12)
  # Cases without a stake change keep every permit, so the dense classic variant is the chain's
  # classic epoch up to its u16 weight and bond storage.
  keep = [i for i, c in enumerate(cases.library(epochs=8)) if c.name != "merged_validators"]
  D_chain, I_chain = cases.run_variant("chain_classic", stake[keep], weights[keep], p)
  D_dense, I_dense = cases.run_variant("classic", stake[keep], weights[keep], p)
  np.testing.assert_allclose(D_dense, D_chain, atol=2e-3)
  np.testing.assert_allclose(I_dense, I_chain, atol=2e-3)
  # Likewise the dense Yuma3 (fixed alpha) is the chain's Yuma3 up to u16 storage.
  D_chain3, _ = cases.run_variant("chain_yuma3", stake[keep], weights[keep], p)
  D_dense3, _ = cases.run_variant("yuma3", stake[keep], weights[keep], p)
  np.testing.assert_allclose(D_dense3, D_chain3, atol=2e-3)
  assert np.abs(D_dense3 - D_dense).max() > 1e-2  # and Yuma3 is not classic on these cases
  with pytest.raises(ValueError, match="variant"):
    variants.get("yuma4")


def test_liquid_alpha_consensus_modes_agree_when_consensus_is_constant():
  # With weights that never change, the previous epoch's consensus equals this epoch's, so the
  # three liquid-alpha modes give the same bonds and dividends.
  stake = np.tile([[0.5, 0.3, 0.2]], (6, 1))
  W = np.tile([[[0.7, 0.3], [0.6, 0.4], [0.2, 0.8]]], (6, 1, 1))
  outs = [variants.run(n, jnp.asarray(stake), jnp.asarray(W)) for n in
          ("yuma3_liquid_current", "yuma3_liquid_previous", "yuma3_liquid_mixed")]
  for o in outs[1:]:
    np.testing.assert_allclose(o.dividends_V, outs[0].dividends_V, atol=1e-12)
  assert not np.allclose(variants.run("yuma3", jnp.asarray(stake), jnp.asarray(W),
                                      variants.Params(alpha=0.9)).bonds_VxK,
                         outs[0].bonds_VxK)


def test_capacity_bonds_stay_within_stake():
  stake, weights = cases.stack(cases.library(epochs=10))
  out = jax.vmap(lambda s, w: variants.run("capacity", s, w))(jnp.asarray(stake),
                                                              jnp.asarray(weights))
  S = stake / stake.sum(-1, keepdims=True)
  assert (np.asarray(out.bonds_VxK) <= S[..., None] + 1e-12).all()


def test_measures_per_1000_tao_and_relative_dividends():
  S = np.array([[0.8, 0.1, 0.1], [0.8, 0.2, 0.0]])
  D = np.array([[0.8, 0.1, 0.1], [0.6, 0.4, 0.0]])
  per_tao, rel = cases.measures(D, S)
  np.testing.assert_allclose(per_tao, [0.041 + 0.41 * 0.6 / 0.8 * 0.1, 0.041 + 0.082, 0.041])
  np.testing.assert_allclose(rel, [-0.1, 0.1, 0.0])


def test_copier_with_no_delay_earns_like_an_honest_validator():
  # Noise-free honest validators all set the same row; the copier's copy of the consensus is that
  # row, so without commit-reveal it earns exactly what honest validators earn per stake.
  kw = dict(variants_=("classic", "yuma3"), draws=2, n_honest=3, n_servers=4, epochs=12,
            warmup=2, noise=0.0, switch_prob=0.3)
  rows = weight_copying.run(reveal_periods=(0, 2), **kw)
  by = {(r["variant"], r["reveal_period_epochs"]): r["copier_dividend_ratio"] for r in rows}
  for v in ("classic", "yuma3"):
    np.testing.assert_allclose(by[(v, 0)], 1.0, atol=1e-3)
    # Copying weights two epochs older than everyone else's loses when servers change rank.
    assert by[(v, 2)] < 0.99
  with pytest.raises(ValueError, match="copier_stake"):
    weight_copying.run(copier_stake=1.0, **kw)


@pytest.mark.skipif(not weight_copying.COMMIT_REVEAL, reason="the chain has no commit-reveal yet")
def test_chain_commit_reveal_agrees_with_the_reveal_point_model():
  # Once the start-up (no revealed rows yet) has left the bonds, the chain's commit-reveal and the
  # reveal-point set_weights model give the same weights in force, hence the same ratio.
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  V, n_servers, R = 4, 5, 2
  n = V + n_servers
  kw = dict(n_honest=V - 1, n_servers=n_servers, epochs=60)
  ratios = []
  for use_cr in (False, True):
    sub = ledger.subnet_from_neurons(
        np.zeros(n), registered_at=np.ones(n, np.int64), last_update=np.ones(n, np.int64),
        validator_permit=np.arange(n) < V, block=1,
        hyper=weight_copying.hyper_for("yuma3", V, R if use_cr else 0))
    D, S = weight_copying.simulate(jax.random.key(0), sub, R, 0.1, 0.1, 0.3, use_cr=use_cr, **kw)
    D = np.asarray(D)[35:].sum(0)
    S = np.asarray(S)
    ratios.append(D[-1] / S[-1] / (D[:-1].sum() / S[:-1].sum()))
  np.testing.assert_allclose(ratios[1], ratios[0], atol=0.02)
  assert ratios[1] < 0.99


def _cli(module, *args, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  res = subprocess.run([sys.executable, "-m", f"bittensor_jax.studies.{module}", "--json",
                        "--csv", str(tmp_path / f"{module}.csv"), "--plots", str(tmp_path),
                        *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
                       check=False)
  assert res.returncode == 0, res.stderr[-3000:]
  assert (tmp_path / f"{module}.csv").stat().st_size > 0
  return json.loads(res.stdout)


def test_cli_consensus_guarantees(tmp_path):
  rows = _cli("consensus_guarantees", "--samples", "1", "--grid_step", "0.25",
              "--honest_stakes", "0.6", tmp_path=tmp_path)
  assert len(rows) == 9
  assert all(set(r) == set(cg.ROW_KEYS) for r in rows)
  assert all(0 <= r["honest_utility_required"] <= 1 for r in rows
             if r["honest_utility_required"] is not None)
  for name in ("consensus_emission_60.png", "consensus_retention_lines.png",
               "consensus_sweeps.png"):
    assert (tmp_path / name).stat().st_size > 0


def test_cli_cases_weight_copying_relaxation(tmp_path):
  rows = _cli("cases", "--variants", "classic,yuma3", tmp_path=tmp_path)
  assert len(rows) == 2 * len(cases.library()) * 3
  assert set(rows[0]) == {"case", "variant", "validator", "dividends_per_1000_tao",
                          "relative_dividends"}
  assert (tmp_path / "cases_relative_dividends.png").exists()
  rows = _cli("weight_copying", "--variants", "classic", "--reveal_periods", "0,1", "--draws",
              "2", "--epochs", "6", "--warmup", "1", tmp_path=tmp_path)
  assert [r["reveal_period_epochs"] for r in rows] == [0, 1]
  assert set(rows[0]) == set(weight_copying.ROW_KEYS)
  assert (tmp_path / "weight_copying.png").exists()
  rows = _cli("relaxation", "--honest_utilities", "0.7", "--steps", "3", tmp_path=tmp_path)
  assert rows[0]["honest_utility"] == 0.7 and "attack_gain" in rows[0]
  assert (tmp_path / "relaxation_attack.png").exists()


def test_cli_bad_flag_exits_2(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  res = subprocess.run([sys.executable, "-m", "bittensor_jax.studies.consensus_guarantees",
                        "--grid_step", "0.3"], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=300, check=False)
  assert res.returncode == 2 and "grid_step" in res.stderr


# ---- the variants' chain interface (studies/variant_epoch.py) --------------------------------


def _random_ledger(seed, n=7, cap=8, block=100):
  """A classic-Yuma ledger with every mask in play: zero and sub-threshold stake, inactive and
  re-registered uids, permits that change, an unused slot, stored weights and bonds."""
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  stake = rng.integers(0, 10**6, n).astype(float)
  stake[rng.random(n) < 0.25] = 0
  hyper = ledger.Hyper.create(tempo=10, bonds_penalty=int(rng.integers(0, 65536)),
                              bonds_moving_average=int(rng.integers(0, 10**6 + 1)),
                              max_allowed_validators=int(rng.integers(1, n + 1)))
  sub = ledger.subnet_from_neurons(stake, rng.integers(0, 95, n), rng.integers(0, block, n),
                                   rng.random(n) < 0.7, capacity=cap, hyper=hyper, block=block)
  w, pres, bonds = (np.zeros((cap, cap), t) for t in (np.int32, bool, np.int32))
  w[:n, :n] = rng.integers(0, 65536, (n, n))
  pres[:n, :n] = rng.random((n, n)) < 0.6
  bonds[:n, :n] = rng.integers(0, 65536, (n, n)) * (rng.random((n, n)) < 0.5)
  return sub.replace(weights_NxN=jnp.asarray(w), has_weight_NxN=jnp.asarray(pres),
                     bonds_NxN=jnp.asarray(bonds), has_bond_NxN=jnp.asarray(bonds > 0),
                     last_epoch_block=jnp.asarray(block - 10))


def _assert_trees_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_classic_through_the_chain_interface_is_the_chains_epoch():
  from bittensor_jax.chain import yuma  # pylint: disable=import-outside-toplevel
  step = variant_epoch.epoch_fn("classic")
  for seed in range(2):
    sub = _random_ledger(seed)
    state = variant_epoch.init_state(sub)
    for _ in range(3):  # later epochs read the bonds the earlier ones stored
      want_sub, want = yuma.epoch(sub, 10**9)
      got_sub, got, state = step(sub, 10**9, state)
      _assert_trees_equal(got, want)
      _assert_trees_equal(got_sub, want_sub)
      sub = want_sub.replace(block=want_sub.block + 10)
  with pytest.raises(ValueError, match="variant"):
    variant_epoch.epoch_fn("yuma4")


def test_classic_through_the_chain_interface_replays_a_scenario_file(chain_data, monkeypatch):
  # Every epoch the replay runs goes through the chain's epoch and the classic variant, which
  # must agree on the outputs and the ledger left behind (9 epochs of bonds EMA).
  from bittensor_jax import replay  # pylint: disable=import-outside-toplevel
  from bittensor_jax.chain import yuma  # pylint: disable=import-outside-toplevel
  chain_epoch, seen = yuma.epoch, []

  def both(sub, emission, **kw):
    want = chain_epoch(sub, emission, **kw)
    got_sub, got, _ = variant_epoch.epoch(sub, emission, variant_epoch.init_state(sub),
                                          variant="classic")
    _assert_trees_equal((got_sub, got), want)
    seen.append(int(sub.block))
    return want

  monkeypatch.setattr(yuma, "epoch", both)
  doc = replay.load(chain_data / "scenarios" / "bonds_ema_trace.json")
  results = list(replay.run(doc))
  for res in results:
    replay.check(res)
  assert len(seen) == len(results) > 1


def _dense_ledger(hyper_kw):
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  V, n = 3, 6
  return ledger.subnet_from_neurons(
      np.zeros(n), registered_at=np.ones(n, np.int64), last_update=np.ones(n, np.int64),
      validator_permit=np.arange(n) < V, block=1,
      hyper=ledger.Hyper.create(tempo=1, max_allowed_validators=V, **hyper_kw))


def test_each_variants_ledger_form_is_its_dense_form():
  # A dense ledger (3 validators, all permitted and active, 3 servers): each epoch, the dense step
  # fed the ledger's stored bonds (read as the ledger form reads them) and the same weights and
  # stake gives the ledger form's consensus, incentive, dividends and bonds, up to the I32F32
  # stake shares; the ledger stores those bonds as u16 (to within one unit).
  V = 3
  sub = _dense_ledger(dict(bonds_penalty=32768, alpha_low=9000, alpha_high=30000))
  h = sub.hyper
  p = variants.Params(kappa=float(K.u16_proportion(h.kappa, jnp.float64)),
                      bonds_penalty=32768 / 65535, alpha=0.1, alpha_low=9000 / 65535,
                      alpha_high=30000 / 65535, steepness=float(h.alpha_sigmoid_steepness) / 100)
  stake_V = jnp.asarray([0.5, 0.3, 0.2]) * 1e6
  # B leads, A follows, C last; A keeps some weight on server 3, then B moves some there too
  W_ExVxK = jnp.asarray([[[1, 0, 0], [1, 0, 0], [1, 0, 0]],
                         [[.8, 0, .2], [0, 1, 0], [1, 0, 0]],
                         [[0, .8, .2], [0, 1, 0], [1, 0, 0]],
                         [[0, .8, .2], [0, .6, .4], [0, 1, 0]]], jnp.float64)
  for name in sorted(variants.CORES):
    out, want = _ledger_and_dense(name, sub, variant_epoch.init_state(sub), stake_V, W_ExVxK, p)
    tol = dict(rtol=1e-8, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(out.consensus_N[:, V:], want.consensus_K, **tol)
    np.testing.assert_allclose(out.incentive_N[:, V:], want.incentive_K, **tol)
    np.testing.assert_allclose(out.dividends_N[:, :V], want.dividends_V, **tol)
    bonds = np.asarray(out.bonds_NxN)
    stored = (K.q16(K.col_max_upscale(want.bonds_VxK)) if name in variants.READ_COLNORM
              else K.q16(want.bonds_VxK))
    np.testing.assert_allclose(bonds[:, :V, V:], stored, atol=1, err_msg=name)
    assert (bonds[:, :, :V] == 0).all() and (bonds[:, V:] == 0).all()
    assert bonds[-1].max() > 0 and np.asarray(out.dividends_N[-1]).sum() > 0.99


@functools.partial(jax.jit, static_argnames=("name",))
def _ledger_and_dense(name, sub, state, stake_V, W_ExVxK, p):
  """Epochs of the ledger form, each next to the dense step on the same inputs (one compile)."""
  V = stake_V.shape[0]

  def body(carry, W_VxK):
    sub, state = carry
    block = sub.block + 1
    q_VxK = K.max_upscale_u16(W_VxK)
    sub = sub.replace(block=block, stake_N=sub.stake_N.at[:V].set(stake_V),
                      weights_NxN=sub.weights_NxN.at[:V, V:].set(q_VxK),
                      has_weight_NxN=sub.has_weight_NxN.at[:V, V:].set(q_VxK > 0),
                      last_update_N=sub.last_update_N.at[:V].set(block))
    Bq = sub.bonds_NxN[:V, V:].astype(jnp.float64)
    B_read = K.col_normalize(Bq) if name in variants.READ_COLNORM else Bq / 65535
    dense_state = variants.State(B_read, state.weights_NxN[:V, V:], state.consensus_N[V:],
                                 state.started)
    _, want = variants.dense_step(name, dense_state, stake_V, q_VxK.astype(jnp.float64), p)
    sub, out, state = variant_epoch.epoch(sub, jnp.asarray(10**9, jnp.int64), state,
                                          variant=name)
    return (sub, state), (out, want)

  _, (out, want) = jax.lax.scan(body, (sub, state), W_ExVxK)
  return out, want


# ---- the case library ------------------------------------------------------------------------


def test_library_has_every_ys_case_with_valid_rows():
  lib = cases.library()
  assert sorted(c.ys for c in lib) == list(range(1, 23))
  assert len({c.name for c in lib}) == len(lib) and all(c.note for c in lib)
  for c in lib:
    sums = c.weights_ExVxK.sum(-1)
    assert (c.weights_ExVxK >= 0).all() and (sums <= 1 + 1e-9).all(), c.name
    assert c.reset is None or 0 <= c.reset[1] < cases.N_SERVERS
  reset, wta = cases.schedule(lib)
  assert reset.sum() == sum(c.reset is not None for c in lib) and wta.sum() >= 2
  # client-side winner-takes-all: every row one-hot; server-side: the same scores, proportional
  by = {c.name: c for c in lib}
  W = by["client_side_wta"].weights_ExVxK
  assert set(np.unique(W)) == {0.0, 1.0}
  np.testing.assert_array_equal(W.argmax(-1), by["server_side_wta"].weights_ExVxK.argmax(-1))


def test_bond_reset_is_the_chains_reset_bonds():
  from bittensor_jax import chain  # pylint: disable=import-outside-toplevel
  sub = _random_ledger(7)
  for enabled in (False, True):
    s = sub.replace(hyper=sub.hyper.replace(bonds_reset_enabled=jnp.asarray(enabled)))
    want, _ = chain.reset_bonds(s, 3)
    _assert_trees_equal(cases.reset_bond_columns(s, jnp.arange(8) == 3), want)


def test_dense_bond_reset_zeroes_the_column_before_the_epoch():
  lib = [c for c in cases.library(epochs=22) if c.name == "copier_moves_late"]
  stake, weights = cases.stack(lib)
  reset, _ = cases.schedule(lib)
  assert reset[0, 20, 1] and reset.sum() == 1
  p = variants.Params()
  got = variants.run("yuma3", jnp.asarray(stake[0]), jnp.asarray(weights[0]), p,
                     reset_ExK=jnp.asarray(reset[0]))
  step = jax.jit(variants.yuma3)
  st = variants.init_state(3, cases.N_SERVERS, jnp.float64)
  for e in range(22):
    if e == 20:
      st = st._replace(bonds_VxK=st.bonds_VxK.at[:, 1].set(0))
    st, out = step(st, jnp.asarray(stake[0, e]), jnp.asarray(weights[0, e]), p)
    np.testing.assert_allclose(got.dividends_V[e], out.dividends_V, atol=1e-12)
  no_reset = variants.run("yuma3", jnp.asarray(stake[0]), jnp.asarray(weights[0]), p)
  assert np.abs(np.asarray(no_reset.bonds_VxK[20] - got.bonds_VxK[20])).max() > 1e-3
  # the chain variants: the reset changes Yuma3's dividends from epoch 20 on, not before
  D, _ = cases.run_variant("chain_yuma3", stake, weights, p, reset)
  D0, _ = cases.run_variant("chain_yuma3", stake, weights, p)
  np.testing.assert_array_equal(D[:, :20], D0[:, :20])
  assert np.abs(D[:, 20:] - D0[:, 20:]).max() > 1e-3


def test_server_side_winner_takes_all_pays_the_top_rank_only():
  lib = [c for c in cases.library(epochs=8) if c.name == "server_side_wta"]
  stake, weights = cases.stack(lib)
  reset, wta = cases.schedule(lib)
  assert wta.all()
  _, I = cases.run_variant("classic", stake, weights, variants.Params(), reset, wta)
  _, I_prop = cases.run_variant("classic", stake, weights, variants.Params(), reset)
  assert set(np.unique(I)) <= {0.0, 1.0} and np.allclose(I.sum(-1), 1)
  np.testing.assert_array_equal(I.argmax(-1), I_prop.argmax(-1))
  assert (I_prop.max(-1) < 1).all()
