"""The ledger on R < N rows (docs/chain.md §1.16): the same epochs as the dense ledger, and the
refusal when no row is free."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import chain
from bittensor_jax.chain import commit_reveal, ledger, registration, yuma
from bittensor_jax.chain.extrinsics import REASONS, Rejection

E = 10**9
N = 10


def scenario(seed: int, *, steps: int = 36) -> list:
  """Random events on a subnet of N uid slots with max_allowed_validators = 3: weights from permit
  holders (and self-weights or refused rows from the others), stake moves that pass permits
  around, stake boosts that give a permit back to a uid that lost it while keeping its weights,
  registrations that replace uids, bond resets and epochs."""
  rng = np.random.default_rng(seed)
  events = []
  for _ in range(steps):
    kind = rng.choice(["weights", "weights", "weights", "stake", "boost", "register", "reset",
                       "epoch", "epoch"])
    uid = int(rng.integers(0, N))
    if kind == "weights":  # by a permit holder (chosen when played) or by any uid
      mode = rng.choice(["row", "row", "row", "self", "empty"])
      k = int(rng.integers(1, 5)) if mode == "row" else 0
      targets = rng.choice(N, k, replace=False).tolist()
      holder = int(rng.integers(0, 8)) if rng.random() < 0.8 else -1
      events.append(("weights", uid, holder, mode, targets, rng.integers(0, 65536, k).tolist()))
    elif kind == "stake":
      events.append(("stake", uid, float(rng.integers(1, 9) * 10**6)))
    elif kind == "boost":  # a uid that lost its permit (chosen when played) gets it back
      events.append(("boost", int(rng.integers(0, 8))))
    elif kind == "register":
      events.append(("register", float(rng.integers(0, 3) * 10**5)))
    elif kind == "reset":
      events.append(("reset", uid))
    else:
      events.append(("epoch",))
  return events


def start(seed: int, rows, *, commit_reveal_on: bool = False, owner: int | None = None,
          yuma3: bool = False):
  rng = np.random.default_rng(seed + 1000)
  n = N - 1  # one free slot, then registrations replace
  hyper = ledger.Hyper.create(tempo=5, max_allowed_validators=3, bonds_reset_enabled=True,
                              yuma3_enabled=yuma3, liquid_alpha_enabled=yuma3,
                              immunity_period=3, min_non_immune_uids=1,
                              commit_reveal_weights_enabled=commit_reveal_on,
                              reveal_period_epochs=1, subnet_owner_uid=owner)
  return ledger.subnet_from_neurons(rng.integers(0, 5, n) * 10.0**6, np.zeros(n, int),
                                    np.zeros(n, int), rng.random(n) < 0.4, capacity=N,
                                    hyper=hyper, block=1, rows=rows)


def play(sub, events, *, commit_reveal_on: bool = False):
  """Yields (event, subnet, reason or epoch outputs) after each event."""
  setter = chain.commit_weights if commit_reveal_on else chain.set_weights
  for ev in events:
    sub = sub.replace(block=sub.block + 1)
    res = None
    if ev[0] == "weights":
      _, uid, holder, mode, targets, values = ev
      holders = np.flatnonzero(np.asarray(sub.permit_N))
      if holder >= 0 and len(holders):
        uid = int(holders[holder % len(holders)])
      if mode == "self":
        targets, values = [uid], [7]
      sub, res = setter(sub, uid, targets, values)
    elif ev[0] == "stake":
      if bool(sub.in_use_N[ev[1]]):
        sub = chain.add_stake(sub, ev[1], ev[2])
    elif ev[0] == "boost":  # the uids that store weights but hold no permit
      lost = np.flatnonzero(np.asarray(sub.in_use_N) & ~np.asarray(sub.permit_N) & ledger.usable_weights_N(
          np.asarray(sub.has_weight_NxN), int(sub.hyper.subnet_owner_uid)))
      if len(lost):
        sub = chain.add_stake(sub, int(lost[ev[1] % len(lost)]), 3e7)
    elif ev[0] == "register":
      sub, _, _ = registration.register(sub, ev[1])
    elif ev[0] == "reset":
      sub, _ = chain.reset_bonds(sub, ev[1])
    else:
      sub = commit_reveal.reveal_due(sub)
      sub, res = yuma.epoch(sub, jnp.int64(E))
    yield ev, sub, res


def assert_same_up_to_summation_order(a, b):
  a, b = np.asarray(a), np.asarray(b)
  if a.dtype.kind == "f":
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
  else:
    np.testing.assert_array_equal(a, b)


def assert_same_ledger(dense, rows):
  """Every uid-indexed field equal; bonds (dense view) equal; each stored weight row equal where
  the R-row ledger keeps one, and unusable (nothing the epoch reads) where it keeps none."""
  for name in ("in_use_N", "stake_N", "last_update_N", "registered_at_N", "permit_N",
               "consensus_N", "incentive_N", "dividends_N", "validator_trust_N", "emission_N",
               "commit_count_N", "commit_block_NxC", "commit_epoch_NxC", "epoch_count"):
    assert_same_up_to_summation_order(getattr(dense, name), getattr(rows, name))
  np.testing.assert_array_equal(dense.bonds_NxN, rows.bonds_NxN)
  np.testing.assert_array_equal(dense.has_bond_NxN, rows.has_bond_NxN)
  row_N = np.asarray(ledger.row_of_N(rows.row_uid_R, N))
  has = row_N >= 0
  for name in ("weights_NxN", "has_weight_NxN"):
    np.testing.assert_array_equal(np.asarray(getattr(dense, name))[has],
                                  np.asarray(getattr(rows, name))[has])
  owner = int(dense.hyper.subnet_owner_uid)
  assert not ledger.usable_weights_N(np.asarray(dense.has_weight_NxN), owner)[~has].any()
  assert not np.asarray(dense.has_bond_NxN)[~has].any()
  pending = np.asarray(dense.commit_count_N) > 0
  np.testing.assert_array_equal(np.asarray(dense.commit_present_NxCxN)[has & pending],
                                np.asarray(rows.commit_present_NxCxN)[has & pending])


@pytest.mark.parametrize("seed,cr,owner,yuma3", [(2, False, 2, True), (2, True, None, False)])
def test_rows_ledger_equals_dense_over_random_epochs(seed, cr, owner, yuma3):
  """docs/chain.md §1.16: with R = the most rows the rule ever asks for in the dense run (R < N),
  every call's answer, every epoch's outputs and the stored bonds and weights equal the dense
  ledger's, over random multi-epoch scenarios in which permits are lost and regained and uids
  are replaced (Yuma3 with liquid alpha and an owner; classic with commit-reveal)."""
  events = scenario(seed)
  kw = dict(commit_reveal_on=cr, owner=owner, yuma3=yuma3)
  R = max(int(ledger.needs_row_N(s).sum())
          for _, s, _ in play(start(seed, None, **kw), events, commit_reveal_on=cr))
  assert 1 <= R < N
  dense = play(start(seed, None, **kw), events, commit_reveal_on=cr)
  rows = play(start(seed, R, **kw), events, commit_reveal_on=cr)
  epochs = permits_lost = permits_regained = replaced = 0
  held, lost = set(), set()
  for (ev, d, d_res), (_, r, r_res) in zip(dense, rows):
    if ev[0] == "epoch":
      epochs += 1
      for f in ("stake_N", "active_N", "active_stake_N", "validator_permit_N", "consensus_N",
                "validator_trust_N", "incentive_N", "dividends_N", "server_emission_N",
                "validator_emission_N", "emission_N", "bonds_NxN"):
        assert_same_up_to_summation_order(getattr(d_res, f), getattr(r_res, f))
      p = set(np.flatnonzero(np.asarray(d_res.validator_permit_N)).tolist())
      permits_lost += len(held - p)
      permits_regained += len(p & lost)
      lost = (lost | (held - p)) - p
      held = p
    else:
      assert d_res == r_res  # the same reason (or None) for every call
    if ev[0] == "register":
      replaced += 1
    assert_same_ledger(d, r)
    assert int((np.asarray(r.row_uid_R) >= 0).sum()) <= int(ledger.needs_row_N(d).sum())
  # the scenario exercised what the rule is about
  assert epochs >= 5 and permits_lost >= 1 and permits_regained >= 1 and replaced >= 1


def test_rows_ledger_equals_dense_on_random_subnets():
  """One epoch of random dense subnets moved onto the rows they need (`ledger.with_rows`): the
  same outputs and the same ledger, variants and float64/float32 alike."""
  from tests.yuma_test import random_subnet  # pylint: disable=import-outside-toplevel
  for seed in range(4):
    sub = random_subnet(seed, 9, N, yuma3=seed % 2 == 1, liquid=seed == 1, density=0.5)
    # a third of the uids hold nothing usable: no weights, no bonds
    idle = jnp.asarray(np.random.default_rng(seed).random(N) < 0.4)
    sub = sub.replace(has_weight_NxN=sub.has_weight_NxN & ~idle[:, None],
                      has_bond_NxN=sub.has_bond_NxN & ~idle[:, None],
                      bonds_NxN=jnp.where(idle[:, None], 0, sub.bonds_NxN))
    R = int(ledger.needs_row_N(sub).sum())
    assert R < N
    small = ledger.with_rows(sub, R)
    for variant in yuma.VARIANTS:
      d, d_out = yuma.epoch(sub, E, variant=variant)
      r, r_out = yuma.epoch(small, E, variant=variant)
      for f in ("consensus_N", "incentive_N", "dividends_N", "validator_trust_N",
                "server_emission_N", "validator_emission_N", "emission_N", "bonds_NxN"):
        assert_same_up_to_summation_order(getattr(d_out, f), getattr(r_out, f))
      assert_same_ledger(d, r)


def test_no_free_row_is_refused():
  """With every row taken, a uid without a row that sets (or commits) usable weights is refused
  with NO_FREE_ROW and the ledger is unchanged; a self-weight needs no row and is accepted; once
  a row is freed (its uid replaced) the same call is accepted."""
  hyper = ledger.Hyper.create(max_allowed_validators=4, immunity_period=0, min_non_immune_uids=0)
  sub = ledger.subnet_from_neurons(np.full(6, 1e6), np.zeros(6, int), np.zeros(6, int),
                                   np.arange(6) < 4, hyper=hyper, block=10, rows=2)
  sub, r0 = chain.set_weights(sub, 0, [4, 5], [1, 2])
  sub, r1 = chain.set_weights(sub, 1, [4], [7])
  assert r0 is None and r1 is None
  assert sorted(np.asarray(sub.row_uid_R).tolist()) == [0, 1]
  after, reason = chain.set_weights(sub, 2, [4, 5], [3, 4])
  assert reason == REASONS[Rejection.NO_FREE_ROW]
  jax.tree.map(np.testing.assert_array_equal, after, sub)
  # the batched extrinsic: the refused uid gets the code, the others go through
  vals = jnp.zeros((6, 6), jnp.int32).at[2, 4].set(9).at[0, 5].set(9)
  pres = jnp.zeros((6, 6), bool).at[2, 4].set(True).at[0, 5].set(True)
  batch, code = chain.set_weights_rows(sub, jnp.asarray([1, 0, 1, 0, 0, 0], bool), vals, pres)
  assert int(code[2]) == Rejection.NO_FREE_ROW and int(code[0]) == 0
  assert int(batch.last_update_N[2]) == int(sub.last_update_N[2])
  assert bool(batch.has_weight_NxN[0, 5])
  sub, reason = chain.set_weights(sub, 3, [3], [5])  # a lone self-weight takes no row
  assert reason is None and int(ledger.row_of_N(sub.row_uid_R, 6)[3]) == -1
  cr = sub.replace(hyper=sub.hyper.replace(commit_reveal_weights_enabled=jnp.asarray(True)))
  _, reason = chain.commit_weights(cr, 2, [4], [1])
  assert reason == REASONS[Rejection.NO_FREE_ROW]
  # replacing uid 1 frees its row: uid 2 now gets it
  sub = sub.replace(emission_N=jnp.asarray([9, 0, 9, 9, 9, 9], jnp.int64), block=jnp.asarray(20))
  sub, uid, replaced = registration.register(sub, 0.0)
  assert int(uid) == 1 and bool(replaced)
  sub, reason = chain.set_weights(sub, 2, [4, 5], [3, 4])
  assert reason is None and int(ledger.row_of_N(sub.row_uid_R, 6)[2]) >= 0


def test_row_capacity_is_checked_by_name():
  sub = ledger.subnet_from_neurons(np.ones(4), np.zeros(4, int), np.zeros(4, int),
                                   np.ones(4, bool))
  for bad in (0, 5, 2.5, True):
    with pytest.raises(ValueError, match="rows"):
      ledger.empty_subnet(4, rows=bad)
  full = sub.replace(weights_NxN=jnp.ones((4, 4), jnp.int32), has_weight_NxN=jnp.ones((4, 4), bool))
  with pytest.raises(ValueError, match="rows: 4 uids"):
    ledger.with_rows(full, 3)
  with pytest.raises(ValueError, match="rows"):
    ledger.with_rows(sub, 3).replace(weights_NxN=jnp.ones((4, 4), jnp.int32),
                                     has_weight_NxN=jnp.ones((4, 4), bool))
  bad_map = ledger.with_rows(sub, 3).replace(row_uid_R=jnp.asarray([1, 1, -1], jnp.int32))
  with pytest.raises(ValueError, match="row_uid_R"):
    ledger.check_subnet(bad_map)
  small = ledger.with_rows(full.replace(has_weight_NxN=jnp.eye(4, dtype=bool)), 2)
  assert ledger.ledger_bytes(small) < ledger.ledger_bytes(sub)
