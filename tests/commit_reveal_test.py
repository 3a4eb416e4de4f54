"""Commit-reveal, checked against the rule of docs/chain.md §1.6 item 4, not typed-in numbers.

The rule: a row committed when `epoch_count` was c is stored just before the first epoch with
`epoch_count - c >= reveal_period_epochs`; `last_update` moves at commit; while commits are pending
the epoch drops (i, j) when i's earliest pending commit is older than j's registration. Most tests
compare a commit-reveal run with the same run written with plain `set_weights` placed where the
rule says the row becomes visible.
"""
import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import chain, replay
from bittensor_jax.chain import commit_reveal, ledger, registration, yuma
from conftest import CHAIN_DATA

X = ledger.U16_MAX  # a full u16 weight
CR_KEYS = ("commit_reveal_weights_enabled", "reveal_period_epochs")
CR_FILES = sorted((CHAIN_DATA / "cr").glob("*.json"))
SCENARIOS = sorted((CHAIN_DATA / "scenarios").glob("*.json"))


def at_reveal(doc: dict) -> dict:
  """The same scenario with commit-reveal off: each commit becomes a set_weights event placed
  right before the epoch that the rule says reveals it (never, if no such epoch)."""
  hyper = doc.get("hyperparameters", {})
  period = hyper.get("reveal_period_epochs", 1)
  events, pending, count = [], [], 0
  for ev in doc["events"]:
    if "commit_weights" in ev:
      pending.append((count, ev["commit_weights"]))
    elif "epoch" in ev:
      events += [{"block": ev["block"], "set_weights": body}
                 for c, body in pending if count - c >= period]
      pending = [(c, body) for c, body in pending if count - c < period]
      events.append(ev)
      count += 1
    else:
      events.append(ev)
  return {**doc, "hyperparameters": {k: v for k, v in hyper.items() if k not in CR_KEYS},
          "events": events}


def outputs(doc: dict) -> list[dict]:
  return [replay.public(res) for res in replay.run(replay.validate(doc), warn=pytest.fail)]


def copier_doc(period: int) -> dict:
  """3 validators, 3 servers, 6 epochs; validators change their weights at different times."""
  neurons = ([{"stake": s, "registered_at": 0, "last_update": 1, "validator_permit": True}
              for s in (5.0, 3.0, 2.0)] +
             [{"stake": 0.0, "registered_at": 0, "last_update": 1} for _ in range(3)])
  commit = lambda b, uid, uids, vals: {"block": b, "commit_weights": {
      "uid": uid, "uids": uids, "values": vals}}
  events = [commit(2, 0, [3, 4], [X, 100]), commit(3, 1, [3], [X]), commit(4, 2, [3, 5], [0, X]),
            commit(12, 1, [4, 5], [X, X]), commit(13, 1, [4], [X]),  # two in one interval
            commit(25, 0, [5], [X]), commit(35, 2, [4], [X]), commit(45, 0, [3, 4, 5], [1, 2, 3])]
  for b in range(10, 70, 10):
    events.append({"block": b, "epoch": {"emission": 10**9}})
  events.sort(key=lambda ev: ev["block"])
  return {"name": "copier", "neurons": neurons, "events": events,
          "hyperparameters": {"tempo": 10, "commit_reveal_weights_enabled": True,
                              "reveal_period_epochs": period}}


@pytest.mark.parametrize("period", [0, 1, 2, 3])
def test_a_commit_is_seen_exactly_period_epochs_later(period):
  doc = copier_doc(period)
  got, want = outputs(doc), outputs(at_reveal(doc))
  assert len(got) == 6
  assert got == want  # bit for bit: the same rows reach the same epochs
  # The comparison is not vacuous: a different period gives a different history.
  other = outputs(at_reveal(copier_doc((period + 1) % 4)))
  assert got != other


def small(cap=6, block=1, **hyper):
  """uid 0 a validator, uids 1.. servers registered at block 1 (uid cap-1 at block 0)."""
  n = cap
  h = ledger.Hyper.create(**{"tempo": 10, "commit_reveal_weights_enabled": True,
                             "immunity_period": 0, "min_non_immune_uids": 0, **hyper})
  reg = np.ones(n, int)
  reg[-1] = 0
  return ledger.subnet_from_neurons([1e9] + [0.0] * (n - 1), reg, np.ones(n, int),
                                    np.arange(n) == 0, hyper=h, block=block)


def at(sub, block):
  return sub.replace(block=jnp.asarray(block, jnp.int64))


def commit(sub, uid, uids, values):
  sub, reason = chain.commit_weights(sub, uid, uids, values)
  assert reason is None, reason
  return sub


def run_epoch(sub):
  return yuma.epoch(commit_reveal.reveal_due(sub), jnp.int64(10**9))


def test_last_update_moves_at_commit_and_not_at_reveal():
  sub = commit(at(small(), 7), 0, [1, 2], [X, 5])
  assert int(sub.last_update_N[0]) == 7
  assert not bool(sub.has_weight_NxN[0].any())  # nothing stored yet
  sub, _ = run_epoch(at(sub, 10))  # epoch_count 0 -> 1; period 1: not due
  assert not bool(sub.has_weight_NxN[0].any())
  sub, _ = run_epoch(at(sub, 20))  # due now
  assert int(sub.last_update_N[0]) == 7
  plain, _ = chain.set_weights(at(small(commit_reveal_weights_enabled=False), 7), 0, [1, 2],
                               [X, 5])
  np.testing.assert_array_equal(sub.weights_NxN[0], plain.weights_NxN[0])
  np.testing.assert_array_equal(sub.has_weight_NxN[0], plain.has_weight_NxN[0])


def test_fifo_order_with_several_commits():
  rows = [([1, 2], [X, 1]), ([2, 3], [7, 0]), ([3], [X])]
  sub = at(small(), 2)
  sub = commit(sub, 0, *rows[0])
  sub = commit(sub, 0, *rows[1])
  sub, _ = run_epoch(at(sub, 10))  # count 0 -> 1; nothing due with period 1
  sub = commit(at(sub, 12), 0, *rows[2])
  assert int(sub.commit_count_N[0]) == 3
  plain = lambda r: chain.set_weights(small(commit_reveal_weights_enabled=False), 0, *r)[0]
  revealed, _ = run_epoch(at(sub, 20))  # the two older commits are due: the second one wins
  np.testing.assert_array_equal(revealed.weights_NxN[0], plain(rows[1]).weights_NxN[0])
  np.testing.assert_array_equal(revealed.has_weight_NxN[0], plain(rows[1]).has_weight_NxN[0])
  assert int(revealed.commit_count_N[0]) == 1
  assert int(revealed.commit_block_NxC[0, 0]) == 12
  revealed, _ = run_epoch(at(revealed, 30))
  np.testing.assert_array_equal(revealed.weights_NxN[0], plain(rows[2]).weights_NxN[0])
  assert int(revealed.commit_count_N[0]) == 0


def test_a_full_fifo_rejects_until_a_reveal():
  sub = at(small(), 2)
  for k in range(ledger.COMMIT_SLOTS):
    sub = commit(sub, 0, [1], [k + 1])
  after, reason = chain.commit_weights(sub, 0, [2], [X])
  assert reason == "too many unrevealed commits"
  jax.tree.map(np.testing.assert_array_equal, after, sub)
  sub, _ = run_epoch(at(sub, 10))
  sub, _ = run_epoch(at(sub, 20))
  assert int(sub.commit_count_N[0]) == 0
  commit(sub, 0, [2], [X])


def test_set_weights_and_commit_weights_are_exclusive():
  on = at(small(), 3)
  after, reason = chain.set_weights(on, 0, [1], [X])
  assert reason == "commit-reveal is enabled; use commit_weights"
  jax.tree.map(np.testing.assert_array_equal, after, on)
  off = at(small(commit_reveal_weights_enabled=False), 3)
  after, reason = chain.commit_weights(off, 0, [1], [X])
  assert reason == "commit-reveal is disabled; use set_weights"
  jax.tree.map(np.testing.assert_array_equal, after, off)
  # the set_weights checks apply to commits too
  _, reason = chain.commit_weights(on, 1, [2], [X])
  assert "no validator permit" in reason


def test_column_mask_drops_exactly_the_sniped_columns():
  """A pending commit older than a newcomer's registration gives it no weight until revealed."""
  sub = commit(at(small(), 5), 0, [1, 5], [X, X])  # A, c = 0: aimed at uid 5's old occupant
  sub, out = run_epoch(at(sub, 10))
  assert int(out.emission_N[5]) == 0 and int(out.emission_N[1]) == 0
  sub = commit(at(sub, 11), 0, [1, 2], [X, X])  # B, c = 1, pending
  sub, uid, replaced = registration.register(at(sub, 12), jnp.float64(0))
  assert int(uid) == 5 and bool(replaced)  # earliest registration among zero-emission uids
  sub = commit(at(sub, 13), 0, [2, 5], [X, X])  # C, c = 1: last_update 13 > registration 12
  before = commit_reveal.reveal_due(at(sub, 20))  # A is revealed, B and C stay pending
  np.testing.assert_array_equal(before.has_weight_NxN[0], [0, 1, 0, 0, 0, 1])
  assert int(commit_reveal.earliest_commit_N(before)[0]) == 11
  drop = np.asarray(commit_reveal.drop_NxN(before))
  np.testing.assert_array_equal(drop[0], np.asarray(before.registered_at_N) > 11)
  assert drop[0].tolist() == [False] * 5 + [True]

  _, out = yuma.epoch(before, jnp.int64(10**9))
  # the rule, written as plain state: CR off and the dropped entries removed from row 0
  off = before.replace(hyper=before.hyper.replace(commit_reveal_weights_enabled=jnp.asarray(False)),
                       has_weight_NxN=before.has_weight_NxN & ~jnp.asarray(drop))
  _, want = yuma.epoch(off, jnp.int64(10**9))
  jax.tree.map(np.testing.assert_array_equal, out, want)
  assert int(out.emission_N[5]) == 0 and float(out.incentive_N[1]) == 1
  # without the mask the newcomer would inherit half of A's weight
  unmasked = before.replace(
      hyper=before.hyper.replace(commit_reveal_weights_enabled=jnp.asarray(False)))
  _, leak = yuma.epoch(unmasked, jnp.int64(10**9))
  assert float(leak.incentive_N[5]) == pytest.approx(0.5)

  sub, _ = yuma.epoch(before, jnp.int64(10**9))
  sub, out = run_epoch(at(sub, 30))  # B and C revealed: C's weight on the newcomer counts
  assert int(sub.commit_count_N[0]) == 0
  assert float(out.incentive_N[5]) == pytest.approx(0.5)


def test_replacement_clears_pending_commits():
  sub = small(cap=3, block=2)  # uid 2 registered at block 0 is the first to be replaced
  sub = sub.replace(permit_N=jnp.asarray([True, False, True]))
  sub = commit(sub, 2, [1], [X])
  assert int(sub.commit_count_N[2]) == 1
  sub, uid, _ = registration.register(at(sub, 3), jnp.float64(0))
  assert int(uid) == 2
  assert int(sub.commit_count_N[2]) == 0
  assert not bool(sub.commit_present_NxCxN[2].any())
  sub, _ = run_epoch(at(sub, 10))
  sub, _ = run_epoch(at(sub, 20))
  assert not bool(sub.has_weight_NxN[2].any())  # the old occupant's commit never lands


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenarios_replay_identically_through_commits_with_period_zero(path):
  """Every spec scenario: set_weights with CR off = commit_weights with CR on and period 0."""
  doc = json.loads(path.read_text())
  cr = copy.deepcopy(doc)
  cr["hyperparameters"] = {**doc.get("hyperparameters", {}),
                           "commit_reveal_weights_enabled": True, "reveal_period_epochs": 0}
  for ev in cr["events"]:
    if "set_weights" in ev:
      ev["commit_weights"] = ev.pop("set_weights")
  assert outputs(cr) == outputs(doc)


def test_cr_off_ignores_pending_commits_in_the_mask():
  """With CR off the epoch is today's: pending commits (left from a CR period) mask nothing."""
  sub = commit(at(small(reveal_period_epochs=5), 5), 0, [1, 2, 5], [X, 3, X])
  sub = sub.replace(registered_at_N=sub.registered_at_N.at[5].set(9),
                    last_update_N=sub.last_update_N.at[0].set(10),  # not outdated: 10 > 9
                    has_weight_NxN=sub.has_weight_NxN.at[0, 5].set(True),
                    weights_NxN=sub.weights_NxN.at[0, 5].set(X))
  off = at(sub.replace(hyper=sub.hyper.replace(commit_reveal_weights_enabled=jnp.asarray(False))),
           10)
  empty = commit_reveal.clear(off, jnp.ones(6, bool))
  _, out = yuma.epoch(off, jnp.int64(10**9))
  _, want = yuma.epoch(empty, jnp.int64(10**9))
  jax.tree.map(np.testing.assert_array_equal, out, want)
  assert float(out.incentive_N[5]) > 0
  _, masked = yuma.epoch(at(sub, 10), jnp.int64(10**9))  # CR on: commit block 5 < 9
  assert float(masked.incentive_N[5]) == 0


def test_vmap_over_reveal_periods_equals_the_loop():
  base = at(small(tempo=2), 3)  # commits after the registrations (block 1)
  base = commit(base, 0, [1, 2], [X, 9])
  subs = [base.replace(hyper=base.hyper.replace(reveal_period_epochs=jnp.asarray(r, jnp.int64)))
          for r in range(4)]
  # the jittable commit, vmapped, equals the per-call commit of each subnet
  row = jnp.zeros((6, 6), jnp.int32).at[0, 3].set(X)
  args = (jnp.arange(6) == 0, row, row > 0)
  stacked, codes = jax.vmap(chain.commit_weights_rows, in_axes=(0, None, None, None))(
      jax.tree.map(lambda *x: jnp.stack(x), *subs), *args)
  assert not np.asarray(codes).any()
  subs = [commit(s, 0, [3], [X]) for s in subs]
  jax.tree.map(np.testing.assert_array_equal, stacked,
               jax.tree.map(lambda *x: jnp.stack(x), *subs))

  def blocks(s):
    outs = []
    for _ in range(9):
      s, out, _ = chain.block_step(s)
      outs.append(out)
    return s, outs

  batched, bouts = jax.vmap(blocks)(jax.tree.map(lambda *x: jnp.stack(x), *subs))
  for r, s in enumerate(subs):
    one, outs = blocks(s)
    for key in ("weights_NxN", "has_weight_NxN", "commit_count_N", "last_update_N",
                "epoch_count"):
      np.testing.assert_array_equal(getattr(batched, key)[r], getattr(one, key), err_msg=key)
    for k, out in enumerate(outs):
      np.testing.assert_allclose(bouts[k].incentive_N[r], out.incentive_N, atol=1e-12)
  # the periods really differ: at the first epoch (block 4) only period 0 has revealed weights
  first = np.asarray(bouts[0].incentive_N)
  assert first[0, 3] > 0 and not first[1:].any()


@pytest.mark.parametrize("path", CR_FILES, ids=[p.stem for p in CR_FILES])
def test_cr_scenario_file_replays_and_matches_its_set_weights_twin(path):
  doc = replay.load(path)
  results = list(replay.run(doc, warn=pytest.fail))
  for res in results:
    assert res["_expect"], "every epoch of the file states expectations"
    replay.check(res)
  twin = outputs(at_reveal(doc))
  assert [replay.public(r) for r in results] == twin
  for res, want in zip(results, twin):  # the expectations are the twin's outputs
    for key, value in res["_expect"].items():
      if key == "bonds":
        value = {(int(i), int(j)): v for i, row in value.items() for j, v in row.items()}
        assert value == {ij: want["bonds"][ij[0]][ij[1]] for ij in value}
      elif any(isinstance(v, float) for v in value):  # generated then: equal up to a few ulps,
        np.testing.assert_allclose(value, want[key], rtol=1e-14, atol=0, err_msg=key)  # as XLA
      else:                                                         # may fuse a sum differently
        assert value == want[key], key
