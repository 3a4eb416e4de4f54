"""Tests for bittensor_jax.chain.emission (SPEC.md §3.1) against tests/testdata/chain/emission_schedule.json."""
import json

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from bittensor_jax.chain import emission

T = emission.TOTAL_SUPPLY_RAO
issuances = st.integers(min_value=0, max_value=T + 10**12)


@pytest.fixture
def cases(chain_data):
  with open(chain_data / "emission_schedule.json") as f:
    return json.load(f)["cases"]


def test_cases_python_int(cases):
  for case in cases:
    got = emission.block_emission(case["issuance_rao"])
    assert type(got) is int
    assert got == case["emission_rao"], case["label"]


def test_cases_numpy(cases):
  issuance = np.array([c["issuance_rao"] for c in cases], dtype=np.int64)
  got = emission.block_emission(issuance)
  assert got.dtype == np.int64 and isinstance(got, np.ndarray)
  np.testing.assert_array_equal(got, [c["emission_rao"] for c in cases])
  assert [emission.block_emission(np.int64(i)) for i in issuance] == [c["emission_rao"] for c in cases]


def test_cases_jit(cases):
  issuance = jnp.array([c["issuance_rao"] for c in cases], dtype=jnp.int64)
  got = jax.jit(emission.block_emission)(issuance)
  assert got.dtype == jnp.int64
  np.testing.assert_array_equal(np.asarray(got), [c["emission_rao"] for c in cases])
  scalar_fn = jax.jit(emission.block_emission)
  for c in cases:
    assert int(scalar_fn(jnp.int64(c["issuance_rao"]))) == c["emission_rao"]


@settings(max_examples=300, deadline=None)
@given(issuances)
def test_era_matches_integer_definition(issuance):
  era = emission.halving_era(issuance)
  if issuance >= T:
    assert era == emission.CAPPED_ERA and emission.block_emission(issuance) == 0
    return
  remaining = T - issuance  # Python big ints: no overflow.
  assert remaining * 2**era <= T < remaining * 2**(era + 1)
  assert emission.block_emission(issuance) == emission.DEFAULT_BLOCK_EMISSION_RAO // 2**era


@settings(max_examples=300, deadline=None)
@given(issuances, issuances)
def test_never_negative_and_monotone(a, b):
  lo, hi = min(a, b), max(a, b)
  e_lo, e_hi = emission.block_emission(lo), emission.block_emission(hi)
  assert 0 <= e_hi <= e_lo <= emission.DEFAULT_BLOCK_EMISSION_RAO


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=T), st.integers(min_value=0, max_value=10**15))
def test_mint_never_exceeds_cap(issuance, pending):
  new_issuance, new_pending, minted = emission.mint(issuance, pending)
  assert 0 <= minted and new_issuance == issuance + minted <= T
  assert new_pending == pending + minted


@settings(max_examples=20, deadline=None)
@given(st.lists(issuances, min_size=1, max_size=64))
def test_numpy_jit_python_agree_and_monotone(values):
  issuance = np.sort(np.array(values, dtype=np.int64))
  want = [emission.block_emission(int(i)) for i in issuance]
  np.testing.assert_array_equal(emission.block_emission(issuance), want)
  np.testing.assert_array_equal(emission.halving_era(issuance),
                                [emission.halving_era(int(i)) for i in issuance])
  got = jax.jit(emission.block_emission)(jnp.asarray(issuance))
  np.testing.assert_array_equal(np.asarray(got), want)
  assert (np.diff(want) <= 0).all() and (np.asarray(want) >= 0).all()
  new_issuance, _, minted = jax.jit(emission.mint)(jnp.asarray(issuance), jnp.zeros_like(issuance))
  assert (np.asarray(new_issuance) <= np.maximum(issuance, T)).all() and (np.asarray(minted) >= 0).all()


def test_mint_scan_reaches_first_halving():
  start = emission.TOTAL_SUPPLY_RAO // 2 - 3 * emission.DEFAULT_BLOCK_EMISSION_RAO

  def step(carry, _):
    issuance, pending = carry
    issuance, pending, minted = emission.mint(issuance, pending)
    return (issuance, pending), minted

  (issuance, pending), minted_T = jax.lax.scan(step, (jnp.int64(start), jnp.int64(0)), None, length=5)
  # SPEC.md 3.1: 1 TAO per block below half the supply, half of that from the first halving
  one = emission.DEFAULT_BLOCK_EMISSION_RAO
  chex.assert_trees_all_equal(minted_T, jnp.array([one] * 3 + [one // 2] * 2, dtype=jnp.int64))
  assert int(issuance) == start + int(minted_T.sum()) and int(pending) == int(minted_T.sum())


def test_negative_issuance_raises():
  with pytest.raises(ValueError, match="total_issuance_rao"):
    emission.block_emission(-1)
  with pytest.raises(ValueError, match="total_issuance_rao"):
    emission.halving_era(np.array([0, -5], dtype=np.int64))
  with pytest.raises(ValueError, match="total_issuance_rao"):
    emission.mint(-1, 0)


def test_supply_schedule():
  rows = emission.supply_schedule()
  assert [r["era"] for r in rows] == list(range(len(rows)))
  # SPEC.md 3.1 table: each of the first eras mints half of what remains at half the previous
  # rate, so lasts T/2 / DefaultBlockEmission = 10.5M blocks (3.99 years of 12 s blocks)
  one = emission.DEFAULT_BLOCK_EMISSION_RAO
  era_blocks = T // 2 // one
  for r in rows[:5]:
    assert r["blocks"] == era_blocks
    assert r["years"] == pytest.approx(era_blocks / emission.BLOCKS_PER_YEAR)
  assert round(rows[0]["years"], 2) == 3.99  # the figure SPEC.md 3.1 quotes
  assert [r["rao_per_block"] for r in rows[:2]] == [one, one // 2]
  for prev, nxt in zip(rows, rows[1:]):
    assert prev["end_issuance_rao"] == nxt["start_issuance_rao"]
    assert nxt["start_block"] == prev["start_block"] + prev["blocks"]
    assert prev["end_issuance_rao"] - prev["start_issuance_rao"] == prev["blocks"] * prev["rao_per_block"]
  last = rows[-1]
  # SPEC.md 3.1 / pitfall 10: the rate halves to 1 rao by era 29; emission is 0 from era 30
  assert last["era"] == 29 and last["rao_per_block"] == 1
  assert last["end_issuance_rao"] < T
  assert emission.block_emission(last["end_issuance_rao"]) == 0
  assert emission.block_emission(last["end_issuance_rao"] - 1) == 1
  assert emission.supply_schedule(last["end_issuance_rao"]) == []
  # Starting mid-era gives the same later rows.
  mid = emission.supply_schedule(rows[3]["start_issuance_rao"])
  assert [r["end_issuance_rao"] for r in mid] == [r["end_issuance_rao"] for r in rows[3:]]


def test_supply_curve():
  t_P, tao_P = emission.supply_curve(years=40)
  assert t_P[0] == 0 and t_P[-1] == 40
  assert (np.diff(t_P) > 0).all() and (np.diff(tao_P) >= 0).all()
  total_tao = T / emission.RAO_PER_TAO  # 21M TAO (SPEC.md 3.1 TotalSupply)
  np.testing.assert_allclose(tao_P[1], total_tao / 2)  # one era (4 years) mints half the supply
  _, full_P = emission.supply_curve()
  # never reaches the cap: era 29's last rao per block leaves a residue under 0.02 TAO
  assert total_tao - 0.02 < full_P[-1] < total_tao


def test_plot_writes_png(tmp_path):
  path = emission.plot_supply_schedule(str(tmp_path / "supply.png"), years=30)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
