"""The TAO share rules and the Hill gate (bittensor_jax.economy.shares): properties that follow
from their definitions (docs/economy.md; docs/chain.md §3.4)."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bittensor_jax import economy
from bittensor_jax.economy import shares

positive = st.lists(st.floats(1e-6, 1e3), min_size=1, max_size=40)
gate_q = st.floats(0.05, 1.0)
gate_h = st.floats(0.0, 16.0)


def _norm(x):
  x = np.asarray(x, np.float64)
  return x / x.sum()


@settings(max_examples=25, deadline=None)
@given(positive, gate_q, gate_h)
def test_gate_output_is_a_distribution(x, q, h):
  out = np.asarray(economy.hill_gate(jnp.asarray(_norm(x)), q, h))
  assert (out >= 0).all()
  assert out.sum() == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 64), gate_q, gate_h)
def test_gate_leaves_equal_shares_equal(n, q, h):
  s = np.full(n, 1.0 / n)
  out = np.asarray(economy.hill_gate(jnp.asarray(s), q, h))
  np.testing.assert_allclose(out, s, rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(positive, gate_q)
def test_gate_tends_to_the_identity_as_h_goes_to_zero(x, q):
  s = _norm(x)
  for h, tol in ((1e-3, 1e-2), (1e-6, 1e-5), (1e-9, 1e-8)):
    np.testing.assert_allclose(np.asarray(economy.hill_gate(jnp.asarray(s), q, h)), s,
                               rtol=tol * max(1.0, abs(math.log(s.min()))) * 4)


@settings(max_examples=20, deadline=None)
@given(positive, gate_q, st.floats(0.1, 16.0))
def test_gate_keeps_the_order_and_favours_large_shares(x, q, h):
  """gate(s) is increasing in s, so s'_i / s'_j >= s_i / s_j whenever s_i >= s_j."""
  s = _norm(x)
  out = np.asarray(economy.hill_gate(jnp.asarray(s), q, h))
  i, j = int(np.argmax(s)), int(np.argmin(s))
  assert out[i] * s[j] >= out[j] * s[i] * (1 - 1e-9)


@settings(max_examples=25, deadline=None)
@given(positive, gate_q)
def test_q_mass_bar_is_the_share_where_the_sorted_cumulative_sum_reaches_q(x, q):
  s = _norm(x)
  desc = sorted(s, reverse=True)
  cum, want = 0.0, desc[-1]
  for v in desc:
    cum += v
    if cum >= q * (1 - 1e-12):
      want = v
      break
  assert float(shares.q_mass_bar(jnp.asarray(s), q)) == want


def test_a_large_exponent_keeps_only_the_subnets_at_or_above_the_bar():
  s = _norm([8, 4, 2, 1, 1])
  out = np.asarray(economy.hill_gate(jnp.asarray(s), 0.5, 60.0))
  theta = float(shares.q_mass_bar(jnp.asarray(s), 0.5))
  assert theta == s[0]
  assert out[1:].sum() < 1e-6


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 1), st.floats(-1e6, 1e6),
                          st.booleans()), min_size=1, max_size=30))
def test_every_rule_gives_non_negative_shares_summing_to_one_over_the_subnets_in_use(rows):
  p, burned, f, m = (jnp.asarray(c) for c in zip(*rows))
  for out in (economy.price(p, m), economy.price_burn(p, burned, m), economy.flow(f, m)):
    out = np.asarray(out)
    assert (out >= 0).all() and (out[~np.asarray(m)] == 0).all()
    assert out.sum() == pytest.approx(1.0, abs=1e-12) or out.sum() == 0.0


def test_price_burn_weights_price_by_the_unburned_fraction():
  p = jnp.asarray([1.0, 1.0, 2.0, 0.5])
  m = jnp.asarray([True, True, True, False])
  burned = jnp.asarray([0.0, 0.5, 0.25, 0.0])
  want = _norm(np.array([1.0, 0.5, 1.5, 0.0]))
  np.testing.assert_allclose(np.asarray(economy.price_burn(p, burned, m)), want, rtol=1e-12)
  np.testing.assert_allclose(np.asarray(economy.price_burn(p, 0 * burned, m)),
                             np.asarray(economy.price(p, m)), rtol=1e-12)
  # every subnet burning everything: the chain falls back to the price shares
  np.testing.assert_allclose(np.asarray(economy.price_burn(p, 0 * burned + 1, m)),
                             np.asarray(economy.price(p, m)), rtol=1e-12)


def test_flow_shares_are_the_offset_flows_normalized_and_outflow_gets_nothing():
  f = jnp.asarray([3.0, 1.0, -5.0, 0.0])
  m = jnp.ones(4, bool)
  np.testing.assert_allclose(np.asarray(economy.flow(f, m)), [0.75, 0.25, 0, 0], rtol=1e-12)
  # exponent p: shares ∝ z^p
  np.testing.assert_allclose(np.asarray(economy.flow(f, m, exponent=2.0)), [0.9, 0.1, 0, 0],
                             rtol=1e-12)
  # a cutoff above zero is the lower limit: z = max(f - cutoff, 0)
  np.testing.assert_allclose(np.asarray(economy.flow(f, m, cutoff=2.0)), [1, 0, 0, 0])


def test_gini_of_equal_amounts_is_zero_and_of_one_taker_is_n_minus_one_over_n():
  assert float(economy.gini(jnp.ones(7))) == pytest.approx(0.0, abs=1e-12)
  x = jnp.zeros(8).at[3].set(5.0)
  assert float(economy.gini(x)) == pytest.approx(7 / 8)
  m = jnp.asarray([True] * 4 + [False] * 4)
  assert float(economy.gini(jnp.asarray([1.0, 1, 1, 1, 9, 0, 0, 0]), m)) == pytest.approx(0.0)


@pytest.mark.parametrize("q,h,name", [(0.0, 2.0, "q"), (1.5, 2.0, "q"), (0.5, -1.0, "h"),
                                      (0.5, float("nan"), "h"), ("x", 2.0, "q")])
def test_bad_gate_arguments_are_a_value_error_naming_them(q, h, name):
  with pytest.raises(ValueError, match=f"hill_gate {name}"):
    economy.hill_gate(jnp.asarray([0.5, 0.5]), q, h)
