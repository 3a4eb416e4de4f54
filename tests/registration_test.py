"""The pruning rule and registration of SPEC.md section 5, each clause checked on its own.

`spec_neuron_to_prune` below is the rule of SPEC.md 5.2 written out as plain Python, item by item;
the property test compares the chain module with it on random subnets full of ties, and the other
tests pin each clause (immunity boundary, key order, the MinNonImmuneUids floor, the owner) with a
case where only that clause decides.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax.chain import ledger, registration

CAP = 6  # one shape for every test here: one compile of each jitted function
prune = jax.jit(registration.neuron_to_prune)


def spec_neuron_to_prune(emission, registered_at, block, immunity_period, min_non_immune,
                         owner=ledger.NO_OWNER, in_use=None):
  """SPEC.md 5.2, items 1-4, on host lists; -1 for NoNeuronIdAvailable."""
  n = len(emission)
  in_use = [True] * n if in_use is None else in_use
  cands = [j for j in range(n) if in_use[j] and j != owner]  # 1. the owner is immortal
  immune = [j for j in cands if block - registered_at[j] < immunity_period]  # 2.
  non_immune = [j for j in cands if j not in immune]
  key = lambda j: (emission[j], registered_at[j], j)  # 3.
  if len(non_immune) > min_non_immune:  # 4.
    return min(non_immune, key=key)
  return min(immune, key=key) if immune else -1


def full_subnet(emission, registered_at, *, block, immunity_period, min_non_immune,
                owner=ledger.NO_OWNER):
  n = len(emission)
  hyper = ledger.Hyper.create(immunity_period=immunity_period, min_non_immune_uids=min_non_immune,
                              subnet_owner_uid=owner)
  sub = ledger.subnet_from_neurons(np.ones(n), registered_at, registered_at, np.zeros(n, bool),
                                   hyper=hyper, block=block)
  return sub.replace(emission_N=jnp.asarray(emission, jnp.int64))


def pruned(emission, registered_at, **kw):
  return int(prune(full_subnet(emission, registered_at, **kw)))


def test_matches_the_spec_rule_on_random_subnets_with_ties():
  rng = np.random.default_rng(0)
  checked = no_candidate = 0
  for _ in range(300):
    block = int(rng.integers(0, 12))
    emission = rng.integers(0, 3, CAP).tolist()  # many equal emissions
    reg = rng.integers(0, block + 1, CAP).tolist()  # and equal registration blocks
    kw = dict(block=block, immunity_period=int(rng.integers(0, 8)),
              min_non_immune=int(rng.integers(0, 8)),
              owner=int(rng.choice([ledger.NO_OWNER, *range(CAP)])))
    want = spec_neuron_to_prune(emission, reg, **kw)
    if want == -1:  # NoNeuronIdAvailable: test_no_candidate_refuses_registration
      no_candidate += 1
      continue
    assert pruned(emission, reg, **kw) == want, (emission, reg, kw)
    checked += 1
  assert checked > 200 and no_candidate > 0  # the draw reaches both branches of item 4


@pytest.mark.parametrize("age,immune", [(-1, True), (0, False), (1, False)])
def test_immunity_ends_when_the_age_reaches_the_period(age, immune):
  """SPEC 5.2 item 2: immune iff b - r < ImmunityPeriod (so b - r == ImmunityPeriod is not)."""
  period, block = 5, 20
  # uid 1 has the lowest emission; its age is period + `age`; uid 0 is old and never immune
  reg = [0, block - (period + age), 0]
  got = pruned([9, 0, 5], reg, block=block, immunity_period=period, min_non_immune=0)
  # immune, uid 1 is skipped while a non-immune uid exists (count 2 > 0): uid 2 (emission 5) goes
  assert got == (2 if immune else 1)


def test_key_lowest_emission_first():
  """SPEC 5.2 item 3: emission decides before registration block and uid."""
  assert pruned([7, 3, 5], [0, 9, 1], block=10, immunity_period=0, min_non_immune=0) == 1


def test_key_equal_emission_earliest_registration():
  assert pruned([4, 4, 4], [3, 5, 2], block=10, immunity_period=0, min_non_immune=0) == 2


def test_key_equal_emission_and_registration_lowest_uid():
  assert pruned([6, 4, 4, 4], [0, 3, 3, 3], block=10, immunity_period=0, min_non_immune=0) == 1


@pytest.mark.parametrize("min_non_immune,want", [(1, 0), (2, 3), (3, 3)])
def test_min_non_immune_floor(min_non_immune, want):
  """SPEC 5.2 item 4: the best non-immune uid only while their count is > MinNonImmuneUids."""
  # uids 0, 1 non-immune (uid 0 the best of them); uids 2, 3 immune (uid 3 the best of them)
  emission, reg = [1, 2, 8, 5], [0, 0, 18, 19]
  got = pruned(emission, reg, block=20, immunity_period=5, min_non_immune=min_non_immune)
  assert got == want


def test_immune_key_is_the_same_key():
  """The best immune uid is chosen by the same (emission, registration, uid) key."""
  got = pruned([1, 7, 7, 7], [0, 18, 17, 17], block=20, immunity_period=5, min_non_immune=1)
  assert got == 2


def test_owner_is_never_pruned():
  """SPEC 5.2 item 1: the owner has the lowest key but is skipped, immune or not."""
  assert pruned([0, 5, 3], [0, 0, 0], block=10, immunity_period=0, min_non_immune=0,
                owner=0) == 2
  assert pruned([0, 5, 3], [9, 9, 9], block=10, immunity_period=5, min_non_immune=0,
                owner=0) == 2
  # the owner does not count towards the non-immune floor: uids 1, 2 are 2 non-immune, not 3
  assert pruned([0, 1, 2, 3], [0, 0, 0, 9], block=10, immunity_period=5, min_non_immune=2,
                owner=0) == 3


def test_no_candidate_refuses_registration():
  sub = full_subnet([3, 1, 2], [0, 0, 0], block=10, immunity_period=5, min_non_immune=3)
  assert spec_neuron_to_prune([3, 1, 2], [0, 0, 0], 10, 5, 3) == -1
  after, uid, replaced = registration.register(sub, 5.0)
  assert int(uid) == -1 and not bool(replaced)
  jax.tree.map(np.testing.assert_array_equal, after, sub)


def test_register_appends_uid_n_while_slots_are_free():
  """SPEC 5.1: uid n, r = u = b, active, no permit, the stake given; other uids untouched."""
  hyper = ledger.Hyper.create()
  sub = ledger.subnet_from_neurons([1.0, 2.0], [0, 1], [3, 4], [True, True], capacity=CAP,
                                   hyper=hyper, block=7)
  sub = sub.replace(emission_N=jnp.asarray([5, 6, 0, 0, 0, 0], jnp.int64))
  for want_uid in (2, 3):
    before = sub
    sub, uid, replaced = registration.register(sub, 9.0)
    assert int(uid) == want_uid and not bool(replaced)
    assert bool(sub.in_use_N[want_uid]) and int(sub.n) == want_uid + 1
    assert int(sub.registered_at_N[want_uid]) == 7 and int(sub.last_update_N[want_uid]) == 7
    assert bool(sub.active_N[want_uid]) and not bool(sub.permit_N[want_uid])
    assert float(sub.stake_N[want_uid]) == 9.0
    others = np.arange(CAP) != want_uid
    for name in ("stake_N", "registered_at_N", "last_update_N", "permit_N", "emission_N"):
      np.testing.assert_array_equal(np.asarray(getattr(sub, name))[others],
                                    np.asarray(getattr(before, name))[others], err_msg=name)


def test_replacement_resets_what_spec_5_3_lists_and_nothing_else():
  n = 4
  hyper = ledger.Hyper.create(immunity_period=0, min_non_immune_uids=0)
  sub = ledger.subnet_from_neurons([1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0], [2, 2, 2, 2],
                                   [True, True, True, False], hyper=hyper, block=30)
  full = lambda v, dt: jnp.full((n, n), v, dt)
  vec = lambda v: jnp.asarray(v, jnp.float64)
  sub = sub.replace(emission_N=jnp.asarray([9, 8, 1, 7], jnp.int64),
                    weights_NxN=full(11, jnp.int32), has_weight_NxN=full(True, bool),
                    bonds_NxN=full(13, jnp.int32), has_bond_NxN=full(True, bool),
                    consensus_N=vec([.1, .2, .3, .4]), validator_trust_N=vec([.5, .6, .7, .8]),
                    incentive_N=vec([.2, .2, .3, .3]), dividends_N=vec([.4, .3, .2, .1]))
  new, uid, replaced = registration.register(sub, 0.5)
  assert int(uid) == 2 and bool(replaced)  # the lowest emission
  u = 2
  other = np.arange(n) != u
  assert int(new.registered_at_N[u]) == 30 and int(new.last_update_N[u]) == 30
  assert bool(new.active_N[u]) and not bool(new.permit_N[u]) and float(new.stake_N[u]) == 0.5
  for name in ("emission_N", "consensus_N", "validator_trust_N", "incentive_N", "dividends_N"):
    got = np.asarray(getattr(new, name))
    assert got[u] == 0, name
    np.testing.assert_array_equal(got[other], np.asarray(getattr(sub, name))[other], err_msg=name)
  # the uid's own weights and bonds rows are removed
  assert not np.asarray(new.has_weight_NxN)[u].any() and not np.asarray(new.has_bond_NxN)[u].any()
  np.testing.assert_array_equal(np.asarray(new.bonds_NxN)[u], 0)
  np.testing.assert_array_equal(np.asarray(new.weights_NxN)[u], 0)
  # weights pointing to it: 0 but kept; every other entry of the others' rows is unchanged
  np.testing.assert_array_equal(np.asarray(new.weights_NxN)[other, u], 0)
  assert np.asarray(new.has_weight_NxN)[other, u].all()
  np.testing.assert_array_equal(np.asarray(new.weights_NxN)[np.ix_(other, other)], 11)
  np.testing.assert_array_equal(np.asarray(new.bonds_NxN)[other], 13)
  assert np.asarray(new.has_bond_NxN)[other].all()
  np.testing.assert_array_equal(np.asarray(new.permit_N)[other], np.asarray(sub.permit_N)[other])
  np.testing.assert_array_equal(np.asarray(new.stake_N)[other], np.asarray(sub.stake_N)[other])
  assert int(new.n) == n


def test_replacing_a_uid_frees_its_row_on_a_ledger_with_fewer_rows_than_uids():
  """docs/chain.md §1.16 with §5.3: on a ledger of R < N rows, the replaced uid's row is emptied
  and freed (row_uid_R -1, so another uid can take it); the other uids' rows keep their uid,
  weights and bonds; a free row stays free. Uid 0 is the one replaced, the uid that free rows
  alias when the row map is gathered (`commit_reveal.gather_uid_rows`)."""
  from bittensor_jax import chain  # pylint: disable=import-outside-toplevel
  hyper = ledger.Hyper.create(max_allowed_validators=4, immunity_period=0, min_non_immune_uids=0)
  sub = ledger.subnet_from_neurons(np.full(CAP, 1e6), np.zeros(CAP, int), np.zeros(CAP, int),
                                   np.arange(CAP) < 3, hyper=hyper, block=10, rows=3)
  sub, r0 = chain.set_weights(sub, 0, [4, 5], [1, 2])
  sub, r1 = chain.set_weights(sub, 1, [4], [7])
  assert r0 is None and r1 is None
  before = np.asarray(sub.row_uid_R)
  assert sorted(before.tolist()) == [-1, 0, 1]
  row0, row1 = int(np.flatnonzero(before == 0)[0]), int(np.flatnonzero(before == 1)[0])
  sub = sub.replace(bonds_RxN=jnp.full(sub.bonds_RxN.shape, 5, jnp.int32),
                    has_bond_RxN=jnp.asarray(before >= 0)[:, None] & jnp.ones(CAP, bool)[None],
                    emission_N=jnp.asarray([0, 9, 9, 9, 9, 9], jnp.int64))
  new, uid, replaced = registration.register(sub, 0.0)
  assert int(uid) == 0 and bool(replaced)
  after = np.asarray(new.row_uid_R)
  want = before.copy()
  want[row0] = -1
  np.testing.assert_array_equal(after, want)  # uid 0's row freed, uid 1's kept, the free one free
  for name in ("weights_RxN", "has_weight_RxN", "bonds_RxN", "has_bond_RxN"):
    got, old = np.asarray(getattr(new, name)), np.asarray(getattr(sub, name))
    assert not got[row0].any(), name
    np.testing.assert_array_equal(got[row1], old[row1], err_msg=name)
  # the freed row is taken by the next uid that sets weights
  new, reason = chain.set_weights(new, 2, [4], [3])
  assert reason is None and int(np.asarray(new.row_uid_R)[row0]) == 2


@pytest.mark.parametrize("stake", [0.0, float(ledger.MAX_STAKE)])
def test_register_accepts_a_stake_at_either_bound(stake):
  """register's stake is checked on the host against the closed interval [0, MAX_STAKE]: both
  ends are valid stakes (a zero-stake newcomer is the common case)."""
  hyper = ledger.Hyper.create(immunity_period=0, min_non_immune_uids=0)
  sub = ledger.subnet_from_neurons([1.0, 2.0], [0, 0], [0, 0], [True, False], capacity=CAP,
                                   hyper=hyper, block=5)
  new, uid, replaced = registration.register(sub, stake)
  assert int(uid) == 2 and not bool(replaced)
  assert float(new.stake_N[2]) == stake
  with pytest.raises(ValueError, match="stake"):
    registration.register(sub, np.nextafter(stake, -np.inf) if stake == 0 else stake * 2)
