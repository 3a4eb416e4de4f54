"""The bonds update and the emission split of the epoch (SPEC.md 1.9-1.11) against the rules.

`spec_bonds_and_split` writes SPEC.md 1.9 (weights for bonds), 1.10 (bond mask, classic and Yuma3
bonds with liquid alpha 2.0, dividends, stored u16, rows persisted) and 1.11 (the emission split
and floor(x * E) amounts) out in numpy. It starts from the stored state and the epoch's own
consensus, active stake and incentive (SPEC 1.3-1.8 are checked elsewhere: kernels_test and the
scenario replays), so a fault here is found by these sections' own arithmetic, to the rao and to
the u16 LSB, over two consecutive epochs (the second reads the bonds the first stored).
"""
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax.chain import ledger, yuma

U16 = ledger.U16_MAX
N = 6
E = 10**9 + 7  # not a round number, so floor and round differ on most uids


def colnorm(M):
  s = M.sum(0, keepdims=True)
  return np.where(s != 0, M / np.where(s != 0, s, 1), M)


def normalize(x):
  s = x.sum()
  return x / s if s != 0 else x


def spec_bonds_and_split(sub, out, emission, variant="current"):
  """(bonds, has_bond, dividends, server, validator, emission amounts) by SPEC.md 1.9-1.11;
  `variant="liquid_alpha_v1"`: classic bonds with the per-column alpha of SPEC.md 2.2;
  `variant="yuma1_2023"`: SPEC.md 2.1 (no owner exception, bonds penalty 1, the bond mask is the
  outdated matrix u_i <= r_j)."""
  g = lambda x: np.asarray(x)
  h = {k: g(v) for k, v in vars(sub.hyper).items()}
  in_use, b = g(sub.in_use_N), int(sub.block)
  both = in_use[:, None] & in_use[None, :]
  legacy = variant == "yuma1_2023"
  owner = (np.arange(N) == h["subnet_owner_uid"]) & in_use & (not legacy)
  # 1.6 weights (old permits, owner forced; self-weight only for the owner; outdated entries)
  p = (g(sub.permit_N) & in_use) | owner
  eye = np.eye(N, dtype=bool)
  outdated = g(sub.last_update_N)[:, None] <= g(sub.registered_at_N)[None, :]
  M = g(sub.has_weight_NxN) & both & p[:, None] & ~(eye & ~owner[:, None]) & ~outdated
  W = np.where(M, g(sub.weights_NxN), 0).astype(float)
  rs = W.sum(1, keepdims=True)
  W = np.where(rs > 0, W / np.where(rs > 0, rs, 1), W)
  C, a, I, S = g(out.consensus_N), g(out.active_stake_N), g(out.incentive_N), g(out.stake_N)
  # 1.8 clip, 1.9 bonds penalty with the sparse presence of interpolate_sparse
  Wc = np.minimum(W, C[None, :])
  Mc = M & ~((W > C[None, :]) & (C[None, :] <= 0))
  beta = 1.0 if legacy else float(h["bonds_penalty"]) / U16
  Wb = W + beta * (Wc - W)
  Mb = M if beta == 0 else Mc if beta == 1 else Wb > 0
  # 1.10 old bonds masked: columns registered since the previous epoch interval started
  last = int(sub.last_epoch_block)
  t0 = last + 1 if last != 0 else max(b - int(h["tempo"]), 0)
  keep = g(sub.has_bond_NxN) & ~(t0 <= g(sub.registered_at_N))[None, :] & both
  if legacy:
    keep = g(sub.has_bond_NxN) & ~outdated & both
  Bq = np.where(keep, g(sub.bonds_NxN), 0).astype(float)
  alpha = 1 - float(h["bonds_moving_average"]) / 1e6  # < 0 above 1e6: positive entries only
  if variant == "liquid_alpha_v1" and bool(h["liquid_alpha_enabled"]):
    c_lo, c_hi = np.quantile(C[in_use], [0.25, 0.75])  # linear interpolation, over n values
    if c_hi > c_lo:
      lo, hi = float(h["alpha_low"]) / U16, float(h["alpha_high"]) / U16
      logit = lambda x: np.log(1 / x - 1)
      slope = (logit(hi) - logit(lo)) / (c_lo - c_hi)
      alpha = np.clip(1 / (1 + np.exp(logit(lo) + slope * c_lo - slope * C)), lo, hi)[None, :]
  if variant != "current" or not bool(h["yuma3_enabled"]):  # (A) classic
    Bs = colnorm(np.maximum(alpha * colnorm(a[:, None] * Wb) + (1 - alpha) * colnorm(Bq), 0))
    D = normalize(Bs @ I)
    mx = Bs.max(0, keepdims=True)
    store = np.floor(U16 * np.where(mx != 0, Bs / np.where(mx != 0, mx, 1), 0))
  else:  # (B) Yuma3
    B0 = Bq / U16
    if bool(h["liquid_alpha_enabled"]) and (C != 0).any():
      lo, hi = float(h["alpha_low"]) / U16, float(h["alpha_high"]) / U16
      d = np.where(Wb >= B0, np.clip(Wb - C[None, :], 0, 1), np.clip(B0 - Wb, 0, 1))
      x = np.clip(-(float(h["alpha_sigmoid_steepness"]) / 100) * (d - 0.5), -20, 20)
      al = np.clip(lo + (hi - lo) / (1 + np.exp(x)), lo, hi)
      Bs = np.where(Mb, np.minimum(1, (1 - al) * B0 + np.maximum(al * Wb, 0)), 0)
    else:
      Bs = np.maximum(alpha * Wb + (1 - alpha) * B0, 0)
    D = normalize(a * (colnorm(Bs) @ I))
    store = np.floor(U16 * np.clip(Bs, 0, 1))
  # rows persisted: new permit -> new row; lost permit -> cleared; else unchanged
  pn = g(out.validator_permit_N)
  lost = p & ~pn
  bonds = np.where(pn[:, None], store, np.where(lost[:, None], 0, g(sub.bonds_NxN))) * both
  has = np.where(pn[:, None], Bs > 0, np.where(lost[:, None], False, g(sub.has_bond_NxN))) & both
  # 1.11 the split, from the epoch's own D (compared above to 1e-12: one ulp of D may move a
  # floor by one rao, and the floor is what this checks)
  e = I + g(out.dividends_N)
  tot = e.sum()
  if tot > 0:
    server, validator, combined = I / tot, g(out.dividends_N) / tot, e / tot
  else:
    fallback = a if a.sum() > 0 else S
    server, validator, combined = np.zeros(N), fallback, fallback
  # floor(x E), snapping a value within 8 ulps below an integer up to it: the chain's I32F32
  # shares of I and D sum to 1 less a few 2^-32, so x = 1/2 in floats (from a sum of 2 + 1 ulp)
  # is above 1/2 on chain (kernels.py rule 3)
  def amount(x):
    y = x * float(emission)
    up = np.ceil(y)
    return np.where(up - y <= 8 * np.finfo(float).eps * np.maximum(np.abs(y), 1), up,
                    np.floor(y)).astype(np.int64)
  return bonds, has, D, amount(server), amount(validator), amount(combined)


def random_subnet(rng, *, yuma3, liquid, beta, block=100):
  n = int(rng.integers(3, N + 1))
  stake = rng.integers(1, 10**6, n) * (rng.random(n) < 0.8)
  hyper = ledger.Hyper.create(tempo=10, yuma3_enabled=yuma3, liquid_alpha_enabled=liquid,
                              bonds_penalty=beta, max_allowed_validators=int(rng.integers(1, n + 1)),
                              bonds_moving_average=int(rng.choice([900000, 500000, 975000,
                                                                   1_500_000])),
                              subnet_owner_uid=int(rng.choice([ledger.NO_OWNER, 0])))
  sub = ledger.subnet_from_neurons(stake, rng.integers(80, 100, n), rng.integers(85, 101, n),
                                   rng.random(n) < 0.7, capacity=N, hyper=hyper, block=block)
  m = (np.arange(N) < n)[:, None] & (np.arange(N) < n)[None, :]
  w = rng.integers(0, U16 + 1, (N, N)) * (rng.random((N, N)) < 0.8) * m
  pres = (rng.random((N, N)) < 0.7) & m
  bonds = rng.integers(0, U16 + 1, (N, N)) * (rng.random((N, N)) < 0.6) * m
  return sub.replace(weights_NxN=jnp.asarray(w, jnp.int32), has_weight_NxN=jnp.asarray(pres),
                     bonds_NxN=jnp.asarray(bonds, jnp.int32), has_bond_NxN=jnp.asarray(bonds > 0),
                     last_epoch_block=jnp.asarray(block - int(rng.choice([10, 25]))))


def check_epoch(sub, emission, variant="current"):
  """One epoch against the rules, on the traced bond path (`yuma3`/`liquid_alpha` None) and on
  the static one that `bond_paths` picks for this subnet (what `epoch_many` and the network's
  block step pass): both must follow SPEC 1.9-1.11. Returns the traced path's (ledger, out)."""
  yuma3, liquid = yuma.bond_paths(sub.hyper)
  assert yuma3 is not None and liquid is not None
  check_one_path(sub, emission, variant, yuma3=yuma3, liquid_alpha=liquid)
  return check_one_path(sub, emission, variant)


def check_one_path(sub, emission, variant, **bond_path):
  new, out = yuma.epoch(sub, emission, variant=variant, **bond_path)
  bonds, has, D, server, validator, combined = spec_bonds_and_split(sub, out, emission, variant)
  np.testing.assert_allclose(np.asarray(out.dividends_N), D, rtol=0, atol=1e-12)
  # new bond rows to one u16 LSB: XLA may turn x / 65535 into x * (1 / 65535), and one ulp below
  # an integer floors to the LSB below (the chain's fixed point has the same one-LSB freedom);
  # rows cleared or kept involve no arithmetic and must be exact
  new_rows = np.asarray(out.validator_permit_N)
  np.testing.assert_allclose(np.asarray(out.bonds_NxN)[new_rows], bonds[new_rows], rtol=0, atol=1)
  np.testing.assert_array_equal(np.asarray(out.bonds_NxN)[~new_rows], bonds[~new_rows])
  np.testing.assert_array_equal(np.asarray(new.bonds_NxN), np.asarray(out.bonds_NxN))
  np.testing.assert_array_equal(np.asarray(new.has_bond_NxN), has)
  np.testing.assert_array_equal(np.asarray(out.server_emission_N), server)
  np.testing.assert_array_equal(np.asarray(out.validator_emission_N), validator)
  np.testing.assert_array_equal(np.asarray(out.emission_N), combined)
  np.testing.assert_array_equal(np.asarray(new.emission_N), combined)
  return new, out


@pytest.mark.parametrize("yuma3,liquid,variant", [(False, False, "current"),
                                                   (True, False, "current"),
                                                   (True, True, "current"),
                                                   (False, True, "liquid_alpha_v1"),
                                                   (False, False, "yuma1_2023")])
def test_bonds_and_split_follow_the_rules_over_two_epochs(yuma3, liquid, variant):
  rng = np.random.default_rng(7 + 3 * yuma3 + liquid)
  for k in range(12):
    beta = [0, U16, int(rng.integers(1, U16))][k % 3]
    sub = random_subnet(rng, yuma3=yuma3, liquid=liquid, beta=beta)
    new, _ = check_epoch(sub, E, variant)
    # the next epoch reads the bonds, bond presence and permits this one stored
    check_epoch(new.replace(block=new.block + 10), E + 12345, variant)


@pytest.mark.parametrize("variant", ["yuma1_2023", "liquid_alpha_v1"])
def test_historical_variants_stay_classic_with_yuma3_enabled(variant):
  """SPEC 2.1 and 2.2 are the classic path of SPEC 1.10 whatever Yuma3On says: a subnet with
  `yuma3_enabled` (and liquid alpha) gets classic bonds under these variants, on the traced and
  the static bond path."""
  rng = np.random.default_rng(23)
  for k in range(3):
    sub = random_subnet(rng, yuma3=True, liquid=True, beta=[0, U16, 30000][k])
    new, _ = check_epoch(sub, E, variant)
    check_epoch(new.replace(block=new.block + 10), E, variant)


@pytest.mark.parametrize("case", ["no_weights", "all_inactive"])
@pytest.mark.parametrize("yuma3", [False, True])
def test_zero_incentive_pays_validators_by_stake(case, yuma3):
  """SPEC 1.11: with sum(e) = 0 nothing goes to servers; validators get a (or S when a = 0)."""
  rng = np.random.default_rng(3)
  sub = random_subnet(rng, yuma3=yuma3, liquid=yuma3, beta=U16)
  if case == "no_weights":
    sub = sub.replace(has_weight_NxN=jnp.zeros_like(sub.has_weight_NxN))
  else:
    sub = sub.replace(block=jnp.asarray(10**6), last_epoch_block=jnp.asarray(10**6 - 10))
  _, out = check_epoch(sub, E)
  assert not np.asarray(out.server_emission_N).any()
  base = out.active_stake_N if case == "no_weights" else out.stake_N
  assert float(np.asarray(base).sum()) > 0 and (case == "no_weights") == bool(
      np.asarray(out.active_stake_N).sum() > 0)
  np.testing.assert_array_equal(np.asarray(out.validator_emission_N),
                                np.floor(np.asarray(base) * E).astype(np.int64))


def test_split_is_half_and_half_with_weights():
  """SPEC 1.11: I and D both sum to 1, so servers and validators get 1/2 each (less the floor)."""
  rng = np.random.default_rng(5)
  sub = random_subnet(rng, yuma3=False, liquid=False, beta=U16)
  _, out = check_epoch(sub, E)
  server, validator = int(out.server_emission_N.sum()), int(out.validator_emission_N.sum())
  n = int(sub.n)
  assert E / 2 - n <= server <= E / 2 and E / 2 - n <= validator <= E / 2


@pytest.mark.parametrize("yuma3", [False, True])
def test_incentive_without_dividends_goes_to_servers(yuma3):
  """SPEC 1.11 with sum(e) = 1: bonds frozen at zero (BondsMovingAverage 10^6, alpha = 0, no old
  bonds) leave D = 0 while I sums to 1, so the servers get all of E and the validators nothing."""
  rng = np.random.default_rng(11)
  sub = random_subnet(rng, yuma3=yuma3, liquid=False, beta=U16)
  sub = sub.replace(hyper=sub.hyper.replace(bonds_moving_average=jnp.asarray(1_000_000)),
                    bonds_NxN=jnp.zeros_like(sub.bonds_NxN),
                    has_bond_NxN=jnp.zeros_like(sub.has_bond_NxN))
  _, out = check_epoch(sub, E)
  assert float(out.incentive_N.sum()) == pytest.approx(1, abs=1e-12)
  assert not np.asarray(out.dividends_N).any()
  assert not np.asarray(out.validator_emission_N).any()
  assert E - N <= int(out.server_emission_N.sum()) <= E


def with_full_bonds(sub, registered_at, last_update, *, last_epoch_block):
  """The subnet with these registration and update blocks and a bond of 30000 in every in-use
  entry, so the SPEC 1.10 t0 column mask decides which bonds survive."""
  in_use = sub.in_use_N[:, None] & sub.in_use_N[None, :]
  return sub.replace(registered_at_N=registered_at, last_update_N=last_update,
                     last_epoch_block=jnp.asarray(last_epoch_block),
                     bonds_NxN=jnp.where(in_use, 30000, 0).astype(jnp.int32), has_bond_NxN=in_use)


@pytest.mark.parametrize("yuma3", [False, True])
def test_bond_mask_after_an_epoch_at_block_1(yuma3):
  """SPEC 1.10: t0 = LastMechanismStepBlock + 1 whenever that block is nonzero (here 1, so
  t0 = 2, not b - tempo = 1): a uid registered at block 1 keeps its bonds, one at 2 loses them."""
  rng = np.random.default_rng(13)
  sub = random_subnet(rng, yuma3=yuma3, liquid=False, beta=U16, block=11)
  reg = jnp.asarray([1, 0, 2, 1, 5, 1], jnp.int64)
  sub = with_full_bonds(sub, reg, reg + 6, last_epoch_block=1)
  assert int(sub.block) - int(sub.hyper.tempo) == 1
  check_epoch(sub, E)


def test_liquid_alpha_with_a_steep_sigmoid():
  """Liquid alpha 2.0 with AlphaSigmoidSteepness 30000 (slope 300): the exponent reaches the
  [-20, 20] clamp of SPEC 1.10 (B) step 2, which must then bound it."""
  rng = np.random.default_rng(17)
  for _ in range(4):
    # no bonds penalty (W~ = W can sit far above C) and old registrations (old bonds kept), so
    # |W~ - C| and |B0 - W~| reach past 0.56, where |x| = 300 |d - 1/2| > 19
    sub = random_subnet(rng, yuma3=True, liquid=True, beta=0)
    n = int(sub.n)
    sub = sub.replace(hyper=sub.hyper.replace(alpha_sigmoid_steepness=jnp.asarray(30000)),
                      registered_at_N=jnp.zeros(N, jnp.int64),
                      last_update_N=jnp.where(sub.in_use_N, 99, 0).astype(jnp.int64))
    assert n >= 3
    check_epoch(sub, E)


@pytest.mark.parametrize("yuma3", [False, True])
def test_bond_mask_before_any_epoch(yuma3):
  """SPEC 1.10: with no epoch yet, t0 = max(b - tempo, 0) (here 0): a uid registered at block 0
  loses its bond column, one registered at 1 too, as t0 <= r for both."""
  rng = np.random.default_rng(19)
  sub = random_subnet(rng, yuma3=yuma3, liquid=False, beta=U16, block=5)
  reg = jnp.asarray([0, 1, 0, 2, 0, 1], jnp.int64)
  sub = with_full_bonds(sub, reg, reg + 3, last_epoch_block=0)
  assert int(sub.block) - int(sub.hyper.tempo) < 0
  check_epoch(sub, E)
