"""Properties of the epoch: sums, degenerate inputs, permutations, vmap, float32, variants."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bittensor_jax.chain import ledger, yuma

SETTINGS = settings(max_examples=25, deadline=None)


def random_subnet(seed, n, cap=None, *, yuma3=False, liquid=False, block=100, density=0.6,
                  zero_stake=0.3):
  rng = np.random.default_rng(seed)
  cap = cap or n
  stake = rng.integers(0, 10**6, n).astype(float)
  stake[rng.random(n) < zero_stake] = 0
  hyper = ledger.Hyper.create(tempo=10, yuma3_enabled=yuma3, liquid_alpha_enabled=liquid,
                              bonds_penalty=int(rng.integers(0, 65536)),
                              max_allowed_validators=int(rng.integers(1, n + 1)))
  sub = ledger.subnet_from_neurons(stake, rng.integers(0, 50, n), rng.integers(0, block, n),
                                   rng.random(n) < 0.7, capacity=cap, hyper=hyper, block=block)
  w = np.zeros((cap, cap), np.int32)
  pres = np.zeros((cap, cap), bool)
  w[:n, :n] = rng.integers(0, 65536, (n, n))
  pres[:n, :n] = rng.random((n, n)) < density
  bonds = np.zeros((cap, cap), np.int32)
  bonds[:n, :n] = rng.integers(0, 65536, (n, n)) * (rng.random((n, n)) < 0.5)
  return sub.replace(weights_NxN=jnp.asarray(w), has_weight_NxN=jnp.asarray(pres),
                     bonds_NxN=jnp.asarray(bonds), has_bond_NxN=jnp.asarray(bonds > 0),
                     last_epoch_block=jnp.asarray(block - 10))


E = 10**9


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), yuma3=st.booleans(),
       liquid=st.booleans())
def test_sums_and_amounts(seed, n, yuma3, liquid):
  sub = random_subnet(seed, n, yuma3=yuma3, liquid=liquid)
  _, out = yuma.epoch(sub, E)
  # SPEC 1.8: a column with C_j > 0 has a staked row weighting it >= C_j, so its clipped rank is
  # positive and I (normalized) sums to 1; with every C_j = 0 all clipped weights are 0 and I = 0
  total_i = float(out.incentive_N.sum())
  if (np.asarray(out.consensus_N) > 0).any():
    assert total_i == pytest.approx(1, abs=1e-9)
  else:
    assert total_i == 0
  total_d = float(out.dividends_N.sum())
  assert total_d == pytest.approx(1, abs=1e-9) or total_d == 0
  for amt in (out.server_emission_N, out.validator_emission_N, out.emission_N):
    assert (np.asarray(amt) >= 0).all()
  paid = int(out.server_emission_N.sum() + out.validator_emission_N.sum())
  if float(sub.stake_N.sum()) == 0:  # nobody to pay: nothing is paid
    assert paid == 0 and int(out.emission_N.sum()) == 0
  else:
    assert E - 2 * n <= paid <= E
    assert E - n <= int(out.emission_N.sum()) <= E
  for leaf in jax.tree.leaves(out):
    assert np.isfinite(np.asarray(leaf, float)).all()


@pytest.mark.parametrize("case", ["zero_stake", "no_weights", "single_uid", "all_inactive",
                                  "zero_columns", "all_self_weight"])
@pytest.mark.parametrize("yuma3", [False, True])
def test_degenerate_inputs_are_finite(case, yuma3):
  n = 1 if case == "single_uid" else 6
  sub = random_subnet(3, n, yuma3=yuma3, liquid=yuma3)
  if case == "zero_stake":
    sub = sub.replace(stake_N=jnp.zeros_like(sub.stake_N))
  if case == "no_weights":
    sub = sub.replace(has_weight_NxN=jnp.zeros_like(sub.has_weight_NxN))
  if case == "all_inactive":
    sub = sub.replace(block=jnp.asarray(10**7))
  if case == "zero_columns":
    sub = sub.replace(weights_NxN=jnp.zeros_like(sub.weights_NxN))
  if case == "all_self_weight":
    sub = sub.replace(has_weight_NxN=jnp.eye(n, dtype=bool))
  new, out = yuma.epoch(sub, E)
  for leaf in jax.tree.leaves((new, out)):
    assert np.isfinite(np.asarray(leaf, float)).all()
  assert int(out.emission_N.sum()) <= E
  if float(sub.stake_N.sum()) > 0:
    assert int(out.emission_N.sum()) >= E - n


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(2, 10), yuma3=st.booleans())
def test_permuting_uids_permutes_outputs(seed, n, yuma3):
  """Relabelling uids relabels every output; ties are avoided (distinct stakes) since top-k
  permits and median pivots break ties by uid order, as documented."""
  rng = np.random.default_rng(seed)
  sub = random_subnet(seed, n, yuma3=yuma3)
  sub = sub.replace(stake_N=jnp.asarray(rng.permutation(n) * 1000.0 + 1),
                    registered_at_N=jnp.zeros(n, jnp.int64),
                    last_update_N=jnp.full(n, 99, jnp.int64))
  perm = rng.permutation(n)
  vec = lambda x: x[perm]
  mat = lambda x: x[perm][:, perm]
  psub = sub.replace(stake_N=vec(sub.stake_N), weights_NxN=mat(sub.weights_NxN),
                     has_weight_NxN=mat(sub.has_weight_NxN), bonds_NxN=mat(sub.bonds_NxN),
                     has_bond_NxN=mat(sub.has_bond_NxN), last_update_N=vec(sub.last_update_N),
                     registered_at_N=vec(sub.registered_at_N), permit_N=vec(sub.permit_N))
  _, out = yuma.epoch(sub, E)
  _, pout = yuma.epoch(psub, E)
  for name in ("incentive_N", "dividends_N", "consensus_N", "validator_trust_N", "stake_N"):
    np.testing.assert_allclose(vec(getattr(out, name)), getattr(pout, name), atol=1e-12)
  np.testing.assert_array_equal(vec(out.validator_permit_N), pout.validator_permit_N)
  np.testing.assert_array_equal(mat(out.bonds_NxN), pout.bonds_NxN)
  np.testing.assert_allclose(vec(out.emission_N), pout.emission_N, atol=1)


def stack(subs):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *subs)


def assert_same_up_to_summation_order(a, b):
  """Integers and booleans equal; floats equal up to the ulps of a different summation tree.

  The batched program reduces in another order than the unbatched one (XLA chooses per shape),
  so a dividend can differ in its last bit; nothing stored or paid may differ.
  """
  a, b = np.asarray(a), np.asarray(b)
  if a.dtype.kind == "f":
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
  else:
    np.testing.assert_array_equal(a, b)


def test_vmap_over_subnets_equals_loop():
  subs = [random_subnet(s, 9, 12, yuma3=s % 2 == 0, liquid=s % 3 == 0) for s in range(6)]
  batched_new, batched_out = jax.vmap(lambda s: yuma.epoch(s, E))(stack(subs))
  for k, sub in enumerate(subs):
    new, out = yuma.epoch(sub, E)
    jax.tree.map(lambda a, b: assert_same_up_to_summation_order(a, b[k]), (new, out),
                 (batched_new, batched_out))


def test_epoch_many_equals_vmap():
  subs = stack([random_subnet(s, 7, 8, yuma3=s % 2 == 1) for s in range(5)])
  want = jax.vmap(lambda s: yuma.epoch(s, E))(subs)
  got = yuma.epoch_many(subs, jnp.full((5,), E, jnp.int64), chunk=2)
  jax.tree.map(assert_same_up_to_summation_order, got, want)


def test_padding_slots_change_nothing():
  sub = random_subnet(7, 6)
  padded = random_subnet(7, 6, cap=10)
  _, out = yuma.epoch(sub, E)
  _, pout = yuma.epoch(padded, E)
  names = [f.name for f in dataclasses.fields(out) if f.name != "row_uid_R"]  # the row map
  for a, b in zip([getattr(out, k) for k in names], [getattr(pout, k) for k in names]):
    a, b = np.asarray(a), np.asarray(b)
    sl = tuple(slice(0, 6) for _ in a.shape)
    if a.dtype.kind == "f":  # padding changes the summation tree by an ulp
      np.testing.assert_allclose(a[sl], b[sl], rtol=1e-12, atol=1e-15)
    else:
      np.testing.assert_array_equal(a[sl], b[sl])
    assert not np.asarray(b, float)[tuple(slice(6, None) for _ in b.shape)].any()


@pytest.mark.parametrize("yuma3", [False, True])
def test_float32_mode_is_close_to_float64(yuma3):
  sub = random_subnet(11, 16, yuma3=yuma3, liquid=yuma3)
  _, o64 = yuma.epoch(sub, E)
  _, o32 = yuma.epoch(sub, E, dtype=jnp.float32)
  assert o32.incentive_N.dtype == jnp.float32
  np.testing.assert_allclose(o32.incentive_N, o64.incentive_N, atol=1e-5)
  np.testing.assert_allclose(o32.dividends_N, o64.dividends_N, atol=1e-5)


SAME_INPUT_KEYS = ("stake_N", "active_N", "active_stake_N", "consensus_N", "validator_trust_N",
                   "incentive_N")


def _equal_to_the_last_bit(a, b):
  a, b = np.asarray(a), np.asarray(b)
  if np.issubdtype(a.dtype, np.floating):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
  else:
    np.testing.assert_array_equal(a, b)


def test_variants_differ_only_where_documented():
  """liquid_alpha_v1 changes only the bonds' EMA alpha (SPEC 2.2): everything before the bonds is
  the current epoch's, the bonds differ, and with liquid alpha off it is the current epoch.
  yuma1_2023 (SPEC 2.1) gives permits to the top k even with zero stake; with every stake
  positive, no owner and no threshold its consensus and incentive are the current ones."""
  hyper = dict(tempo=10, liquid_alpha_enabled=True, alpha_low=30000, max_allowed_validators=10)
  # every weight present: the consensus quartiles differ, which liquid alpha v1 needs to act
  sub = random_subnet(5, 10, zero_stake=0, density=1.0).replace(
      hyper=ledger.Hyper.create(**hyper))
  assert (np.asarray(sub.stake_N)[:10] > 0).all()
  out = {v: yuma.epoch(sub, E, variant=v)[1] for v in yuma.VARIANTS}
  c_lo, c_hi = np.quantile(np.asarray(out["current"].consensus_N), [0.25, 0.75])
  assert c_lo < c_hi
  for v in yuma.VARIANTS:
    assert float(out[v].incentive_N.sum()) == pytest.approx(1, abs=1e-9), v
    for key in SAME_INPUT_KEYS:
      np.testing.assert_array_equal(getattr(out[v], key), getattr(out["current"], key),
                                    err_msg=f"{v} {key}")
  assert not np.array_equal(out["liquid_alpha_v1"].bonds_NxN, out["current"].bonds_NxN)
  assert not np.array_equal(out["liquid_alpha_v1"].dividends_N, out["current"].dividends_N)
  off = sub.replace(hyper=sub.hyper.replace(liquid_alpha_enabled=jnp.asarray(False)))
  # equal: integers and booleans bit for bit, floats up to the last bit (two compiled programs may
  # fuse the true divisions differently)
  jax.tree.map(_equal_to_the_last_bit, yuma.epoch(off, E, variant="liquid_alpha_v1"),
               yuma.epoch(off, E))
  # zero stake: current permits need S != 0, the 2023 ones do not
  zero = sub.replace(stake_N=sub.stake_N.at[:3].set(0))
  k = int(zero.hyper.max_allowed_validators)
  _, cur = yuma.epoch(zero, E)
  _, old = yuma.epoch(zero, E, variant="yuma1_2023")
  assert int(old.validator_permit_N.sum()) == min(k, 10)
  assert not np.asarray(cur.validator_permit_N)[:3].any() and np.asarray(old.validator_permit_N)[:3].all()


def test_unknown_variant_is_rejected():
  with pytest.raises(ValueError, match="variant"):
    yuma.epoch(random_subnet(1, 3), E, variant="yuma2")


def few_rows(seed, n, cap, used, *, yuma3=False, liquid=False, owner=False):
  """A random subnet in which only `used` uids hold stake, permits, weights or bonds, one of them
  bonds and weights without a permit (masked by the epoch), and a lone self-weight elsewhere; on
  `ledger.with_rows` rows (docs/chain.md §1.16), with the dense ledger it came from."""
  rng = np.random.default_rng(seed)
  sub = random_subnet(seed, n, cap, yuma3=yuma3, liquid=liquid, zero_stake=0.1)
  keep = np.zeros(cap, bool)
  keep[rng.choice(n, used, replace=False)] = True
  k = jnp.asarray(keep)
  # the first used row holds only bonds and weights (no stake, no permit)
  only_bonds = jnp.arange(cap) == int(np.flatnonzero(keep)[0])
  stake = jnp.where(k & ~only_bonds, sub.stake_N, 0)
  # k = the staked rows: the 2023 permits (top k, zero stake included) stay on the used rows
  hyper = sub.hyper.replace(max_allowed_validators=jnp.asarray(int((stake > 0).sum()), jnp.int64))
  if owner:
    hyper = hyper.replace(subnet_owner_uid=jnp.asarray(int(np.flatnonzero(keep)[-1]), jnp.int64))
  lone = int(np.flatnonzero(~keep[:n])[0])  # a uid whose only weight is its own: no row
  has_w = (sub.has_weight_NxN & k[:, None]).at[lone, lone].set(True)
  dense = sub.replace(stake_N=stake, permit_N=sub.permit_N & k & ~only_bonds,
                      has_weight_NxN=has_w, has_bond_NxN=sub.has_bond_NxN & k[:, None],
                      bonds_NxN=jnp.where(k[:, None], sub.bonds_NxN, 0), hyper=hyper)
  return dense, ledger.with_rows(dense, used)


def assert_same_epoch(got, want, same):
  """The outputs and ledgers of an R-row and a dense epoch agree under `same` (the dense views of
  weights and bonds; the R-row ledger keeps no lone self-weight)."""
  (g_sub, g_out), (w_sub, w_out) = got, want
  for f in ("stake_N", "active_N", "active_stake_N", "validator_permit_N", "consensus_N",
            "validator_trust_N", "incentive_N", "dividends_N", "server_emission_N",
            "validator_emission_N", "emission_N", "bonds_NxN"):
    same(getattr(w_out, f), getattr(g_out, f))
  for f in ("permit_N", "consensus_N", "incentive_N", "dividends_N", "emission_N", "bonds_NxN",
            "has_bond_NxN", "epoch_count", "last_epoch_block"):
    same(getattr(w_sub, f), getattr(g_sub, f))
  usable = ledger.usable_weights_N(np.asarray(w_sub.has_weight_NxN),
                                   int(w_sub.hyper.subnet_owner_uid))
  present = np.asarray(w_sub.has_weight_NxN)[usable]
  np.testing.assert_array_equal(present, np.asarray(g_sub.has_weight_NxN)[usable])
  np.testing.assert_array_equal(np.where(present, np.asarray(w_sub.weights_NxN)[usable], 0),
                                np.where(present, np.asarray(g_sub.weights_NxN)[usable], 0))


@pytest.mark.parametrize("variant", yuma.VARIANTS)
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_epoch_on_validator_rows_equals_all_rows(variant, dtype):
  """docs/chain.md §1.16: an R-row ledger's epoch (R x N) gives the dense ledger's outputs and
  ledger (floats up to summation order), on random subnets with classic and Yuma3 bonds, liquid
  alpha, an owner, voters without a row, weights on rows without a permit and padding slots."""
  R = 5
  for seed in range(4):
    dense, small = few_rows(seed, 10, 12, R - seed % 2, yuma3=seed % 2 == 0,
                            liquid=seed % 4 == 0, owner=seed == 1)
    assert small.rows < dense.rows
    want = yuma.epoch(dense, E, variant=variant, dtype=dtype)
    got = yuma.epoch(small, E, variant=variant, dtype=dtype)
    if dtype == jnp.float64:
      assert_same_epoch(got, want, assert_same_up_to_summation_order)
      continue

    # float32: an ulp of a dividend (6e-8) moves an amount by up to 6e-8 E rao and a bond by 1
    def close(a, b):
      a, b = np.asarray(a), np.asarray(b)
      if a.dtype.kind == "f":
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
      elif a.dtype == np.int64 and a.ndim == 1:  # rao amounts
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-7 * E)
      elif a.dtype.kind in "iu":  # stored u16 bonds and the rest
        np.testing.assert_allclose(a, b, rtol=0, atol=1)
      else:
        np.testing.assert_array_equal(a, b)
    assert_same_epoch(got, want, close)


def test_static_bond_path_equals_the_traced_choice():
  """`bond_paths` of a batch that agrees picks one bond path; the result is the traced choice's."""
  for yuma3, liquid in ((False, False), (True, False), (True, True)):
    subs = stack([random_subnet(s, 7, 8, yuma3=yuma3, liquid=liquid) for s in range(3)])
    assert yuma.bond_paths(subs.hyper) == (yuma3, liquid)
    want = jax.vmap(lambda s: yuma.epoch(s, E))(subs)
    got = jax.vmap(lambda s, y=yuma3, la=liquid: yuma.epoch(s, E, yuma3=y, liquid_alpha=la))(subs)
    jax.tree.map(assert_same_up_to_summation_order, got, want)
  mixed = stack([random_subnet(s, 7, 8, yuma3=s == 1) for s in range(3)])
  assert yuma.bond_paths(mixed.hyper) == (None, False)


def test_epoch_many_on_rows_equals_vmap():
  subs = stack([few_rows(s, 10, 12, 4, yuma3=s % 2 == 1)[1] for s in range(4)])
  want = jax.vmap(lambda s: yuma.epoch(s, E))(subs)
  got = yuma.epoch_many(subs, jnp.full((4,), E, jnp.int64), chunk=2)
  jax.tree.map(assert_same_up_to_summation_order, got, want)

