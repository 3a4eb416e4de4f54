"""Exact where the chain is exact (kernels.py module note; SPEC.md sections 0.2, 1.10, 1.11, 1.14).

The chain computes in fixed point, where x / x = 1, u16 / 65535 is exact at 0 and 1, alpha =
1 - 1e6/1e6 = 0 and W + 1 (C - W) = C. Every expectation here follows from one of those facts
(a sole validator gets exactly E, alpha 0 freezes the bonds, equal clipped weights store equal
bonds, ...); no number is copied from the spec. Each test draws many inputs of its kind and runs
them through one compiled epoch (a fixed capacity), so it stays fast.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax.chain import kernels as K
from bittensor_jax.chain import ledger, yuma

CAP = 6                    # every epoch below uses this capacity: one compile per dtype
BLOCK = 1000
_epoch = jax.jit(yuma.epoch, static_argnames=("dtype",))


def make_subnet(stake, permit, *, weights=None, bonds=None, hyper=None, last_update=None):
  """Uids 0..n-1 registered long ago (no outdated weight, no bond mask), in CAP slots."""
  n = len(stake)
  last_update = np.full(n, BLOCK - 1) if last_update is None else last_update
  sub = ledger.subnet_from_neurons(np.asarray(stake, float), np.zeros(n, np.int64), last_update,
                                   np.asarray(permit, bool), capacity=CAP,
                                   hyper=hyper or ledger.Hyper.create(tempo=10), block=BLOCK)
  sub = sub.replace(last_epoch_block=jnp.asarray(BLOCK - 10))
  pad = lambda m: np.pad(np.asarray(m, np.int32), ((0, CAP - n), (0, CAP - n)))
  if weights is not None:
    w = pad(weights)
    sub = sub.replace(weights_NxN=jnp.asarray(w), has_weight_NxN=jnp.asarray(w > 0))
  if bonds is not None:
    b = pad(bonds)
    sub = sub.replace(bonds_NxN=jnp.asarray(b), has_bond_NxN=jnp.asarray(b > 0))
  return sub


def random_emission(rng, top=10**15):
  """E in rao over many scales (an epoch of 360 blocks at 1 TAO per block is 3.6e11)."""
  return int(rng.choice([rng.integers(1, 10**6), rng.integers(10**9, 10**12),
                         rng.integers(10**12, top)]))


# --- a sole validator gets exactly E (normalize of one nonzero entry is exactly 1) ----------

@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_sole_validator_gets_exactly_the_emission(dtype):
  rng = np.random.default_rng(0)
  trials = 60 if dtype == jnp.float64 else 15
  for _ in range(trials):
    n = int(rng.integers(1, CAP + 1))
    # stake ratios below 1e8: every share stays above the I32F32 resolution 2^-32 (SPEC 1.3)
    stake = (rng.random(n) + 0.01) * 10.0 ** rng.integers(0, 7, n) * 10.0 ** rng.integers(-3, 9)
    v = int(rng.integers(0, n))
    permit = np.arange(n) == v  # the only old permit: the only active stake
    E = random_emission(rng)
    _, out = _epoch(make_subnet(stake, permit), jnp.int64(E), dtype=dtype)
    want = np.where(np.arange(CAP) == v, E, 0)
    np.testing.assert_array_equal(out.validator_emission_N, want, err_msg=f"E={E} stake={stake}")
    np.testing.assert_array_equal(out.emission_N, want)
    assert float(out.active_stake_N[v]) == 1.0


def test_sole_validator_with_a_miner_splits_half_and_half():
  """I and D are both exactly one-hot, so each side is floor(E / 2) to the rao."""
  rng = np.random.default_rng(1)
  for _ in range(40):
    stake = [float(rng.random() * 10.0 ** rng.integers(0, 12)) + 1e-3, 0.0]
    w = [[0, int(rng.integers(1, 65536))], [0, 0]]
    E = random_emission(rng, top=10**13)  # a float64 product resolves halves up to ~1e14
    _, out = _epoch(make_subnet(stake, [True, False], weights=w), jnp.int64(E))
    assert int(out.validator_emission_N[0]) == E // 2, E
    assert int(out.server_emission_N[1]) == E // 2, E
    assert int(out.emission_N[0]) == int(out.emission_N[1]) == E // 2


def test_equal_validators_get_exact_power_of_two_shares():
  """k = 2, 4 equal stakes: each share is exactly 1/k in fixed point, so each gets floor(E / k)."""
  rng = np.random.default_rng(2)
  for _ in range(40):
    k = int(rng.choice([2, 4]))
    s = float(rng.random() * 10.0 ** rng.integers(0, 12)) + 1e-3
    E = random_emission(rng, top=10**13)
    _, out = _epoch(make_subnet([s] * k, [True] * k), jnp.int64(E))
    np.testing.assert_array_equal(out.validator_emission_N[:k], [E // k] * k, err_msg=str((s, E)))


# --- bonds_moving_average = 1e6: alpha is exactly 0, the bonds do not move ------------------

def _u16_bonds(rng, n, *, classic):
  b = rng.integers(1, 65536, (n, n)) * (rng.random((n, n)) < 0.6)
  b[:, rng.random(n) < 0.3] = 0  # some columns with no bond at all
  if classic:  # stored column max-upscaled: each nonzero column has a 65535
    top = b.argmax(0)
    b[top, np.arange(n)] = np.where(b.max(0) > 0, 65535, 0)
  return b


@pytest.mark.parametrize("yuma3", [False, True])
def test_alpha_zero_freezes_bonds(yuma3):
  """alpha = 0: new bonds are the old ones whatever the weights; zero stays 0, 65535 stays 65535.

  Classic: B* = colnorm(0 dB + 1 colnorm(B)), stored column max-upscaled; Yuma3: B* = B0.
  """
  rng = np.random.default_rng(3 + yuma3)
  hyper = ledger.Hyper.create(tempo=10, bonds_moving_average=1_000_000, yuma3_enabled=yuma3,
                              bonds_penalty=int(rng.integers(0, 65536)))
  for _ in range(25):
    n = int(rng.integers(2, CAP + 1))
    stake = rng.random(n) * 1e6 + 1
    old = _u16_bonds(rng, n, classic=not yuma3)
    outs = []
    for _ in range(2):  # two unrelated weight matrices
      w = rng.integers(0, 65536, (n, n)) * (rng.random((n, n)) < 0.7)
      _, out = _epoch(make_subnet(stake, [True] * n, weights=w, bonds=old, hyper=hyper),
                      jnp.int64(10**9))
      outs.append(np.asarray(out.bonds_NxN)[:n, :n])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0][old == 0], 0)
    np.testing.assert_array_equal(outs[0][old == 65535], 65535)
    assert np.abs(outs[0] - old).max() <= 1  # the chain's own truncation may drop one LSB
    if yuma3:  # B* = B0 exactly and Q16 inverts u16 / 65535
      np.testing.assert_array_equal(outs[0], old)


def test_alpha_zero_with_no_old_bonds_pays_no_dividends():
  """No old bonds and alpha = 0: bonds stay empty, so dividends are exactly 0 (SPEC 1.10, 1.11)."""
  rng = np.random.default_rng(5)
  hyper = ledger.Hyper.create(tempo=10, bonds_moving_average=1_000_000)
  for _ in range(25):
    n = int(rng.integers(2, CAP + 1))
    stake = rng.random(n) * 10.0 ** rng.integers(0, 9, n) + 1
    w = rng.integers(0, 65536, (n, n)) * (rng.random((n, n)) < 0.7)
    _, out = _epoch(make_subnet(stake, rng.random(n) < 0.8, weights=w, hyper=hyper),
                    jnp.int64(10**9))
    np.testing.assert_array_equal(out.dividends_N, 0)
    np.testing.assert_array_equal(out.bonds_NxN, 0)


# --- bonds_moving_average > 1e6: alpha < 0, the sparse EMA keeps positive entries only -------

def _colnorm(m):
  s = m.sum(0)
  return np.where(s > 0, m / np.where(s > 0, s, 1), 0.0)


@pytest.mark.parametrize("yuma3", [False, True])
def test_negative_alpha_keeps_only_positive_ema_entries(yuma3):
  """bma = 2e6 gives alpha = -1; entries of alpha dB + (1 - alpha) B that turn negative are dropped.

  Validators 0 and 1 swap servers: each old bond sits on the server the validator has left, so
  the EMA of the new weights is negative where it has moved to (docs/chain.md §1.10, the chain's
  `mat_ema_sparse`). Dividends and stored bonds are checked against the rule written here in NumPy
  from the epoch's own incentive and active stake; without the drop, dividends would go negative.
  """
  hyper = ledger.Hyper.create(tempo=10, bonds_moving_average=2_000_000, kappa=0, bonds_penalty=0,
                              yuma3_enabled=yuma3)
  old = np.zeros((4, 4), np.int64)
  old[0, 2] = old[1, 3] = 65535
  w = np.zeros((4, 4), np.int64)
  w[0, 3] = w[1, 2] = 65535
  sub = make_subnet([3.0, 1.0, 0.0, 0.0], [True, True, False, False], weights=w, bonds=old,
                    hyper=hyper)
  _, out = _epoch(sub, jnp.int64(10**9))
  a, I = np.asarray(out.active_stake_N)[:4], np.asarray(out.incentive_N)[:4]
  W = w / 65535.0
  if yuma3:
    pre = -1.0 * W + 2.0 * old / 65535.0
    Bn = np.maximum(pre, 0)
    D = a * (_colnorm(Bn) @ I)
    stored = np.floor(65535 * np.clip(Bn, 0, 1))
  else:
    pre = -1.0 * _colnorm(a[:, None] * W) + 2.0 * _colnorm(old.astype(float))
    Bn = _colnorm(np.maximum(pre, 0))
    D = Bn @ I
    stored = np.floor(65535 * Bn / np.where(Bn.max(0) > 0, Bn.max(0), 1))
  assert (pre < 0).any() and I[2] != I[3]  # the rule decides the outcome here
  np.testing.assert_allclose(np.asarray(out.dividends_N)[:4], D / D.sum(), rtol=0, atol=1e-12)
  assert (np.asarray(out.dividends_N) >= 0).all()
  np.testing.assert_array_equal(np.asarray(out.bonds_NxN)[:4, :4], stored)


# --- equal clipped weights store equal bonds -------------------------------------------------

@pytest.mark.parametrize("yuma3", [False, True])
def test_equal_clipped_weights_store_equal_bonds(yuma3):
  """Weights above the consensus are clipped to exactly C_j (bonds_penalty 1): with no old bonds
  and equal stake, every such validator gets the same stored bond in column j; they hold the
  column's largest bond, so in classic Yuma it is 65535 for all of them. kappa 0.7 puts C_j at
  the weight of the third-largest of 3 or 4 equal validators, so two or more are clipped."""
  rng = np.random.default_rng(6 + yuma3)
  hyper = ledger.Hyper.create(tempo=10, yuma3_enabled=yuma3, kappa=45875)
  checked = 0
  for _ in range(40):
    n = CAP
    v = int(rng.integers(3, 5))  # validators 0..v-1, miners v..n-1
    stake = np.where(np.arange(n) < v, 1000.0, 0.0)
    w = np.zeros((n, n), np.int64)
    w[:v, v:] = rng.integers(1, 65536, (v, n - v))
    _, out = _epoch(make_subnet(stake, np.arange(n) < v, weights=w, hyper=hyper),
                    jnp.int64(10**9))
    W = w[:v] / w[:v].sum(1, keepdims=True)
    C = np.asarray(out.consensus_N)
    bonds = np.asarray(out.bonds_NxN)
    for j in range(v, n):
      above = np.flatnonzero(W[:, j] > C[j])
      if len(above) >= 2:
        checked += 1
        assert len(set(bonds[above, j].tolist())) == 1, (j, bonds[:v, j], W[:, j], C[j])
        if not yuma3:
          assert bonds[above[0], j] == 65535
  assert checked > 20


# --- kernels: the exact cases of each conversion ---------------------------------------------

@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_q16_inverts_u16_proportion_for_every_u16(dtype):
  v = jnp.arange(65536)
  got = jax.jit(lambda v: K.q16(K.u16_proportion(v, dtype)))(v)
  np.testing.assert_array_equal(got, np.arange(65536))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_one_nonzero_entry_normalizes_to_exactly_one(dtype):
  rng = np.random.default_rng(8)
  x = (rng.random((4000, 5)) * 10.0 ** rng.integers(-6, 15, (4000, 1))).astype(dtype)
  x = np.where(np.arange(5) == rng.integers(0, 5, (4000, 1)), x, 0)
  hot = x != 0
  norm = jax.jit(jax.vmap(K.normalize))(jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(norm)[hot], 1)
  cols = jax.jit(K.col_normalize)(jnp.asarray(x.T))
  np.testing.assert_array_equal(np.asarray(cols)[hot.T], 1)
  np.testing.assert_array_equal(np.asarray(jax.jit(K.truncate_i32f32)(norm))[hot], 1)
  ups = jax.jit(lambda m: K.q16(K.col_max_upscale(m)))(jnp.asarray(x.T))
  np.testing.assert_array_equal(np.asarray(ups)[hot.T], 65535)


def test_ppm_proportions_are_the_correctly_rounded_quotients():
  ppm = np.concatenate([[0, 1, 999_999, 1_000_000, 900_000, 975_000],
                        np.random.default_rng(9).integers(0, 1_000_001, 5000)])
  alpha, keep = jax.jit(lambda p: K.ppm_proportions(p, jnp.float64))(jnp.asarray(ppm))
  np.testing.assert_array_equal(alpha, [(1_000_000 - int(p)) / 1e6 for p in ppm])
  np.testing.assert_array_equal(keep, [int(p) / 1e6 for p in ppm])
  assert float(alpha[3]) == 0.0 and float(keep[3]) == 1.0


def test_interpolate_returns_its_ends_exactly():
  rng = np.random.default_rng(10)
  A, B = (jnp.asarray(rng.random((50, 50)) * 10.0 ** rng.integers(-8, 3, (50, 50)))
          for _ in range(2))
  np.testing.assert_array_equal(jax.jit(K.interpolate)(A, B, 1.0), B)
  np.testing.assert_array_equal(jax.jit(K.interpolate)(A, B, 0.0), A)


def _half_ties():
  """(e, max) u16 pairs with max <= 32768 where e * 65535 / max is exactly k + 1/2."""
  pairs = []
  for mx in range(1, 32769):
    step = mx // math.gcd(2 * 65535, mx)
    for e in range(step, mx + 1, step):
      if (2 * e * 65535 // mx) % 2 == 1:
        pairs.append((e, mx))
  return np.asarray(pairs)


def test_max_upscale_rounds_exact_half_ties_away_from_zero():
  """Below 32768 the chain divides e * 65535 by the max; an exact .5 rounds up (SPEC 4.2.4)."""
  pairs = _half_ties()
  assert len(pairs) > 1000
  got = jax.jit(K.max_upscale_u16)(jnp.asarray(pairs, jnp.float64))
  want = (2 * pairs[:, 0] * 65535 // pairs[:, 1] + 1) // 2
  np.testing.assert_array_equal(got[:, 0], want)
  np.testing.assert_array_equal(got[:, 1], 65535)


def test_floor_snap_only_moves_values_next_to_an_integer():
  y = jnp.asarray([3.0, np.nextafter(3.0, 0), 3.0 - 1e-9, 2.5, 65535 * (1 - 2**-52), 1e9 - 0.5])
  np.testing.assert_array_equal(K.floor_snap(y), [3, 3, 2, 2, 65535, 1e9 - 1])


def test_stake_shares_are_the_chains_exact_i32f32_quotients():
  """S_i = floor(2^32 s_i / sum(s)) / 2^32 with the exact quotient (I64F64 division, then the
  I32F32 cast): checked against Python fractions, including totals float64 cannot hold exactly
  (1e18 against 1: the chain gives 1 - 2^-32, a float ratio gives 1)."""
  from fractions import Fraction  # pylint: disable=import-outside-toplevel
  shares = jax.jit(K.i32f32_shares)
  rng = np.random.default_rng(7)
  cases = [np.array([1e18, 1.0] + [0.0] * 14)]
  for t in range(300):
    x = [rng.integers(0, 2**62, 16).astype(np.float64),
         np.floor(10.0 ** rng.uniform(0, 19, 16)),
         np.concatenate([[1e18], rng.integers(0, 3, 15).astype(np.float64)])][t % 3]
    cases.append(x)
  for x in cases:
    total = sum(Fraction(v) for v in x)
    want = [float(Fraction(int(Fraction(v) * 2**32 // total), 2**32)) for v in x]
    np.testing.assert_array_equal(np.asarray(shares(jnp.asarray(x))), want)
  assert float(shares(jnp.asarray(cases[0]))[0]) == 1 - 2.0**-32
