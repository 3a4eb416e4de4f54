"""Pools, the EMA price, the registration burn and delegation (bittensor_jax.economy): properties
derived from the rules (docs/economy.md; docs/chain.md §3.4, §5.1)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bittensor_jax.economy import EconomyConfig, delegation, pools
from bittensor_jax.economy import registration_market as market

reserve = st.integers(1, 10**16)
amount = st.integers(0, 10**16)


@settings(max_examples=40, deadline=None)
@given(reserve, reserve, amount)
def test_a_swap_never_mints_and_keeps_k_up_to_rounding(r_in, r_out, a):
  """k never falls (exact integer check) and the output is the floor of the constant-product
  output up to float64 rounding (2 rao plus a 2^-48 relative part)."""
  out = int(pools.swap_out(jnp.int64(r_in), jnp.int64(r_out), jnp.int64(a)))
  assert 0 <= out < r_out or (out == 0 and r_out <= 1)
  assert (r_in + a) * (r_out - out) >= r_in * r_out
  exact_floor = (r_out * a) // (r_in + a)
  assert exact_floor - 2 - exact_floor // 2**48 <= out <= exact_floor


@settings(max_examples=25, deadline=None)
@given(reserve, reserve, amount)
def test_stake_then_unstake_never_returns_more_tao_than_was_paid(tao_in, alpha_in, tao):
  t1, a1, bought = pools.stake(jnp.int64(tao_in), jnp.int64(alpha_in), jnp.int64(tao))
  _, _, back = pools.unstake(t1, a1, bought)
  assert int(back) <= tao
  assert int(t1) == tao_in + tao and int(a1) == alpha_in - int(bought)


def test_the_ema_price_reaches_half_its_step_after_ln2_over_alpha_blocks():
  """A price step from 0 to p: after n blocks the EMA is p (1 - (1 - w)^n); the first block at
  which it reaches p/2 is within one block of ln 2 / w (no young-subnet damping)."""
  for alpha in (1e-3, 4e-3):
    w = pools.ema_weight(jnp.int64(10**6), alpha, 0)
    assert float(w) == alpha

    def body(ema, _):
      ema = pools.ema_price_step(ema, jnp.float64(0.5), w)
      return ema, ema
    _, path = jax.lax.scan(body, jnp.float64(0.0), None, length=int(3 / alpha))
    first = int(np.argmax(np.asarray(path) >= 0.25)) + 1
    assert abs(first - math.log(2) / alpha) <= 1.0


def test_the_ema_caps_the_price_at_one_and_young_subnets_are_damped():
  assert float(pools.ema_price_step(jnp.float64(0.0), jnp.float64(7.0), 1.0)) == 1.0
  h = EconomyConfig().ema_halving_blocks
  # at b = h blocks since start_call the weight is half of SubnetMovingAlpha
  assert float(pools.ema_weight(jnp.int64(h), 3e-6, h)) == pytest.approx(1.5e-6)
  assert float(pools.ema_weight(jnp.int64(0), 3e-6, h)) == 0.0


def _burn_growth_per_half_life(rate: float, periods: int = 24) -> tuple[float, int]:
  """(log(burn) change per 360 blocks, registrations) when `rate` registrations arrive per 360
  blocks, evenly spaced."""
  cfg = EconomyConfig()
  blocks = periods * cfg.burn_half_life
  k = np.arange(1, blocks + 1)
  reg = np.floor(k * rate / cfg.burn_half_life) > np.floor((k - 1) * rate / cfg.burn_half_life)

  def body(burn, r):
    burn = market.decay(burn, cfg.burn_half_life, cfg.min_burn, cfg.max_burn)
    return market.bump(burn, r, cfg.burn_increase_mult, cfg.min_burn, cfg.max_burn), None
  start = 10**9  # 1 TAO: far from both clamps for these rates
  end, _ = jax.lax.scan(body, jnp.int64(start), jnp.asarray(reg))
  return math.log(int(end) / start) / periods, int(reg.sum())


def test_the_burn_is_stationary_at_ln2_over_ln_1_26_registrations_per_half_life():
  """Per half-life the burn halves once and grows 1.26x per registration: log growth per 360
  blocks = n ln 1.26 / periods - ln 2 (to rao rounding), zero at ln 2 / ln 1.26 per 360."""
  cfg = EconomyConfig()
  periods = 24
  stationary = math.log(2) / math.log(cfg.burn_increase_mult)
  growth = {}
  for rate in (stationary - 0.5, stationary, stationary + 0.5):
    growth[rate], n = _burn_growth_per_half_life(rate, periods)
    predicted = n * math.log(cfg.burn_increase_mult) / periods - math.log(2)
    assert growth[rate] == pytest.approx(predicted, abs=2e-5)  # floor to rao each block
  # the registrations are whole, so the stationary rate is met to one registration in 24 periods
  assert abs(growth[stationary]) <= math.log(cfg.burn_increase_mult) / periods + 1e-6
  assert growth[stationary - 0.5] < -0.1 and growth[stationary + 0.5] > 0.1


def test_the_burn_stays_within_its_clamp():
  cfg = EconomyConfig()
  b = jnp.int64(cfg.max_burn)
  assert int(market.bump(b, jnp.asarray(True), 1.26, cfg.min_burn, cfg.max_burn)) == cfg.max_burn
  b = jnp.int64(cfg.min_burn)
  assert int(market.decay(b, 360, cfg.min_burn, cfg.max_burn)) == cfg.min_burn
  assert int(market.bump(b, jnp.asarray(False), 1.26, cfg.min_burn, cfg.max_burn)) == cfg.min_burn


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**12), st.just(0.0) | st.floats(1, 1e12),
                          st.floats(0, 1)),
                min_size=1, max_size=8), st.floats(0, 1))
def test_delegation_pays_every_rao_and_nominators_at_most_their_pro_rata_part(rows, take):
  d, stake, frac = (np.asarray(c) for c in zip(*rows))
  nominated = stake * frac
  owner, nom = delegation.split_dividends(jnp.asarray(d, jnp.int64), jnp.asarray(stake),
                                          jnp.asarray(nominated), take)
  owner, nom = np.asarray(owner), np.asarray(nom)
  np.testing.assert_array_equal(owner + nom, d)
  assert (nom >= 0).all() and (owner >= 0).all()
  bound = (1 - take) * d * np.where(stake > 0, nominated / np.where(stake > 0, stake, 1), 0)
  assert (nom <= bound + 1e-6).all() and (nom >= np.floor(bound) - 1).all()


def test_root_stake_counts_with_tao_weight():
  alpha, root = jnp.asarray([100.0, 0.0]), jnp.asarray([0.0, 1000.0])
  np.testing.assert_allclose(np.asarray(delegation.stake_weight(alpha, root, 0.18)), [100, 180])
  np.testing.assert_allclose(np.asarray(delegation.root_part(alpha, root, 0.18)), [0.0, 1.0])


def test_injection_is_capped_at_root_prop_times_alpha_emission_and_the_rest_is_excess():
  tao = jnp.int64(10**9)
  # uncapped: alpha_in = tao / price
  t_in, a_in, ex = pools.inject(tao, jnp.float64(2.0), jnp.int64(10**9), jnp.float64(0.9))
  assert (int(t_in), int(a_in), int(ex)) == (10**9, 5 * 10**8, 0)
  # capped: alpha_in = root_prop x alpha_emission, tao_in = alpha_in x price, the rest excess
  t_in, a_in, ex = pools.inject(tao, jnp.float64(0.5), jnp.int64(10**9), jnp.float64(0.25))
  assert int(a_in) == 25 * 10**7
  assert int(t_in) == int(25 * 10**7 * 0.5) and int(t_in) + int(ex) == 10**9
