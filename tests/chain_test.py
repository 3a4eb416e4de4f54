"""Chain-side transitions: set_weights checks, registration and pruning, blocks and payout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import chain
from bittensor_jax.chain import emission, ledger, registration


def subnet(n=6, cap=None, **hyper):
  h = ledger.Hyper.create(**{"tempo": 10, **hyper})
  return ledger.subnet_from_neurons(np.arange(1, n + 1) * 1e9, np.zeros(n, int), np.ones(n, int),
                                    np.arange(n) < 3, capacity=cap, hyper=h, block=5)


def test_set_weights_stores_max_upscaled_with_explicit_zeros():
  sub, reason = chain.set_weights(subnet(), 0, [3, 4, 5], [100, 0, 200])
  assert reason is None
  np.testing.assert_array_equal(sub.weights_NxN[0, 3:], [32768, 0, 65535])
  np.testing.assert_array_equal(sub.has_weight_NxN[0], [0, 0, 0, 1, 1, 1])
  assert int(sub.last_update_N[0]) == 5


@pytest.mark.parametrize("uid,uids,values,hyper,expect", [
    (4, [3], [1], {}, "no validator permit"),
    (4, [4], [1], {}, None),  # a single self-weight needs no permit
    (4, [3], [1], {"subnet_owner_uid": 4}, None),  # the owner needs no permit
    (0, [3, 3], [1, 2], {}, "duplicate uids"),
    (0, [9], [1], {}, "not registered"),
    (0, [3], [1], {"min_allowed_weights": 2}, "fewer weights"),
    (0, [0], [1], {"min_allowed_weights": 2}, None),  # self-weight is exempt
    (0, [3, 4], [1, 3], {"max_weights_limit": 32768}, "exceeds max_weights_limit"),
    (0, [3, 4], [1, 1], {"max_weights_limit": 32768}, None),
    (0, [3], [1], {"stake_threshold": 5e9}, "stake is below"),
    (0, [3], [1], {"weights_set_rate_limit": 100}, "rate_limit"),
])
def test_set_weights_checks(uid, uids, values, hyper, expect):
  before = subnet(cap=8, **hyper)
  after, reason = chain.set_weights(before, uid, uids, values)
  if expect is None:
    assert reason is None
  else:
    assert expect in reason
    jax.tree.map(np.testing.assert_array_equal, after, before)


@pytest.mark.parametrize("uids,values,match", [
    ([3], [1, 2], "same length"), ([3], [70000], "u16"), ([3], [-1], "u16"),
    ([3.5], [1], "integers"), ([3], [float("nan")], "u16")])
def test_set_weights_bad_arguments(uids, values, match):
  with pytest.raises(ValueError, match=match):
    chain.set_weights(subnet(), 0, uids, values)


def test_set_weights_bad_caller():
  with pytest.raises(ValueError, match="uid"):
    chain.set_weights(subnet(), 17, [1], [1])


def test_register_appends_then_replaces_lowest_emission():
  sub = subnet(4, cap=5, immunity_period=0, min_non_immune_uids=0)
  sub, uid, replaced = registration.register(sub, 7.0)
  assert int(uid) == 4 and not bool(replaced)
  sub = sub.replace(emission_N=jnp.asarray([50, 10, 10, 30, 40], jnp.int64),
                    registered_at_N=jnp.asarray([0, 3, 2, 0, 5], jnp.int64),
                    bonds_NxN=jnp.full((5, 5), 9, jnp.int32),
                    has_bond_NxN=jnp.ones((5, 5), bool),
                    has_weight_NxN=jnp.ones((5, 5), bool),
                    weights_NxN=jnp.full((5, 5), 9, jnp.int32), block=jnp.asarray(20))
  sub, uid, replaced = registration.register(sub, 1.0)
  # lowest emission 10 at uids 1 and 2: the earlier registration (uid 2) goes
  assert int(uid) == 2 and bool(replaced)
  assert int(sub.registered_at_N[2]) == 20 and int(sub.last_update_N[2]) == 20
  assert float(sub.stake_N[2]) == 1.0 and int(sub.emission_N[2]) == 0
  assert not sub.has_bond_NxN[2].any() and not sub.has_weight_NxN[2].any()
  np.testing.assert_array_equal(sub.weights_NxN[:, 2], 0)  # zeroed but kept
  assert sub.has_weight_NxN[[0, 1, 3, 4], 2].all()


def test_pruning_prefers_non_immune_and_spares_the_owner():
  sub = subnet(4, cap=4, immunity_period=10, min_non_immune_uids=0, subnet_owner_uid=0)
  sub = sub.replace(emission_N=jnp.asarray([0, 5, 1, 9], jnp.int64),
                    registered_at_N=jnp.asarray([0, 0, 15, 0], jnp.int64), block=jnp.asarray(20))
  # uid 0 is the owner (immortal), uid 2 is immune: uid 1 has the lowest non-immune emission
  assert int(registration.neuron_to_prune(sub)) == 1
  # with min_non_immune_uids = 2 (two non-immune uids, not more), the immune uid 2 goes
  sub = sub.replace(hyper=sub.hyper.replace(min_non_immune_uids=jnp.asarray(2)))
  assert int(registration.neuron_to_prune(sub)) == 2


def test_no_uid_available():
  one = ledger.subnet_from_neurons([1.0], [0], [0], [False], capacity=1,
                                   hyper=ledger.Hyper.create(subnet_owner_uid=0))
  after, uid, _ = registration.register(one, 3.0)
  assert int(uid) == -1
  jax.tree.map(np.testing.assert_array_equal, after, one)


def test_blocks_mint_accumulate_and_pay_with_conservation():
  sub = subnet(6, cap=8, tempo=5)
  sub, _ = chain.set_weights(sub, 0, [3, 4, 5], [1, 2, 3])
  sub, _ = chain.set_weights(sub, 1, [3, 4], [5, 1])
  start = float(sub.stake_N.sum())
  sub = sub.replace(total_issuance=jnp.asarray(int(start), jnp.int64),
                    last_epoch_block=jnp.asarray(5))  # epochs at blocks 10, 15, 20, 25
  step = jax.jit(chain.block_step)
  epochs = 0
  for _ in range(23):
    sub, out, ran = step(sub)
    epochs += int(ran)
    total = float(sub.stake_N.sum()) + int(sub.pending_emission)
    assert total == int(sub.total_issuance)
  assert epochs == 4
  assert int(sub.total_issuance) == int(start) + 23 * 10**9


def test_issuance_never_exceeds_the_cap():
  sub = subnet(3, tempo=1).replace(total_issuance=jnp.asarray(emission.TOTAL_SUPPLY_RAO - 5))
  sub = sub.replace(stake_N=sub.stake_N * 0 + 1.0)
  for _ in range(3):
    sub, _, _ = chain.block_step(sub)
    assert int(sub.total_issuance) <= emission.TOTAL_SUPPLY_RAO


@pytest.mark.parametrize("field,value,match", [
    ("stake", [1.0, float("nan"), 1.0], "stake: contains NaN"),
    ("stake", [1.0, -2.0, 1.0], "stake: .*negative"),
    ("stake", [[1.0, 2.0, 3.0]], "stake: expected shape"),
    ("last_update", [1, 2], "last_update: expected shape"),
    ("validator_permit", [2, 0, 1], "validator_permit"),
])
def test_bad_neuron_input(field, value, match):
  args = dict(stake=[1.0, 2.0, 3.0], registered_at=[0, 0, 0], last_update=[0, 0, 0],
              validator_permit=[True, False, False])
  args[field] = value
  with pytest.raises(ValueError, match=match):
    ledger.subnet_from_neurons(**args)


def test_check_subnet_catches_bad_state():
  sub = subnet()
  with pytest.raises(ValueError, match="stake_N"):
    ledger.check_subnet(sub.replace(stake_N=sub.stake_N.at[0].set(jnp.nan)))
  with pytest.raises(ValueError, match="weights_NxN"):
    ledger.check_subnet(sub.replace(weights_NxN=jnp.zeros((6, 5), jnp.int32)))
  with pytest.raises(ValueError, match="weights_NxN"):
    ledger.check_subnet(sub.replace(weights_NxN=sub.weights_NxN.at[0, 0].set(70000)))
  ledger.check_subnet(sub)


@pytest.mark.parametrize("kw,match", [({"kappa": 70000}, "kappa"), ({"tempo": 65536}, "tempo"),
                                      ({"kappa": 1.5}, "kappa"), ({"nope": 1}, "nope"),
                                      ({"alpha_low": 60000, "alpha_high": 100}, "alpha_low"),
                                      ({"stake_threshold": float("nan")}, "stake_threshold")])
def test_bad_hyperparameters(kw, match):
  with pytest.raises(ValueError, match=match):
    ledger.Hyper.create(**kw)


def test_add_stake_and_reset_bonds():
  sub = subnet(bonds_reset_enabled=True)
  sub = chain.add_stake(sub, 1, 5.0)
  assert float(sub.stake_N[1]) == 2e9 + 5
  with pytest.raises(ValueError, match="amount"):
    chain.add_stake(sub, 1, -1)
  with pytest.raises(ValueError, match="uid"):
    chain.add_stake(sub, 40, 1)
  sub = sub.replace(bonds_NxN=jnp.ones((6, 6), jnp.int32), has_bond_NxN=jnp.ones((6, 6), bool))
  sub, reason = chain.reset_bonds(sub, 2)
  assert reason is None and not sub.has_bond_NxN[:, 2].any() and sub.has_bond_NxN[:, 1].all()
  _, reason = chain.reset_bonds(subnet(), 2)
  assert "bonds_reset_enabled" in reason


def test_single_self_weight_is_exempt_from_max_weights_limit():
  """`max_weight_limited` exempts a single self-weight, as the permit and length checks do."""
  before = subnet(cap=8, max_weights_limit=0)
  after, reason = chain.set_weights(before, 4, [4], [65535])  # uid 4 has no permit either
  assert reason is None
  assert bool(after.has_weight_NxN[4, 4]) and int(after.weights_NxN[4, 4]) == 65535
  # the same single weight on another uid is limited (its normalized value 1 > 0)
  _, reason = chain.set_weights(before, 0, [3], [65535])
  assert "exceeds max_weights_limit" in reason
  # a self-weight with another entry is not exempt
  _, reason = chain.set_weights(before, 0, [0, 3], [1, 1])
  assert "exceeds max_weights_limit" in reason


def test_empty_set_weights_clears_the_row():
  before, _ = chain.set_weights(subnet(), 0, [3, 4], [1, 2])
  before = before.replace(block=jnp.asarray(9, jnp.int64))
  assert before.has_weight_NxN[0].any()
  after, reason = chain.set_weights(before, 0, [], [])
  assert reason is None
  assert not after.has_weight_NxN[0].any() and not after.weights_NxN[0].any()
  assert int(after.last_update_N[0]) == 9
  np.testing.assert_array_equal(after.weights_NxN[1:], before.weights_NxN[1:])
  # an empty call is too short when min_allowed_weights > 0 (effective min(n, value))
  strict = before.replace(hyper=before.hyper.replace(min_allowed_weights=jnp.asarray(1)))
  kept, reason = chain.set_weights(strict, 0, np.array([]), np.array([]))
  assert "fewer weights" in reason
  jax.tree.map(np.testing.assert_array_equal, kept, strict)


def test_no_uid_to_prune_when_non_immune_are_few_and_none_immune():
  """SPEC 5.2 item 4: non-immune <= min_non_immune_uids and no immune uid: NoNeuronIdAvailable."""
  sub = subnet(4, cap=4, immunity_period=0, min_non_immune_uids=4)  # nobody immune
  sub = sub.replace(emission_N=jnp.asarray([3, 1, 2, 4], jnp.int64), block=jnp.asarray(20))
  assert int(registration.neuron_to_prune(sub)) == -1
  after, uid, replaced = registration.register(sub, 5.0)
  assert int(uid) == -1 and not bool(replaced)
  jax.tree.map(np.testing.assert_array_equal, after, sub)
  # one more non-immune uid than the floor: the lowest emission goes
  sub = sub.replace(hyper=sub.hyper.replace(min_non_immune_uids=jnp.asarray(3)))
  assert int(registration.neuron_to_prune(sub)) == 1


@pytest.mark.parametrize("stake,match", [
    (float("nan"), "stake"), (float("inf"), "stake"), (-1.0, "stake"), (2.0**64 * 2, "stake"),
    ("x", "stake")])
def test_register_refuses_a_stake_the_chain_cannot_hold(stake, match):
  with pytest.raises(ValueError, match=match):
    registration.register(subnet(3, cap=4), stake)


def test_add_stake_refuses_a_stake_above_u64():
  sub = subnet(3)
  with pytest.raises(ValueError, match="amount"):
    chain.add_stake(sub, 0, 2.0**64 * 2)
  with pytest.raises(ValueError, match="after adding"):
    chain.add_stake(sub.replace(stake_N=sub.stake_N.at[0].set(1.8e19)), 0, 1e18)
  with pytest.raises(ValueError, match="amount"):
    chain.add_stake(sub, 0, float("nan"))


def test_rate_limit_passes_a_uid_that_never_set_weights():
  """`check_rate_limit`: last_update 0 (the storage default) is "never set" and passes."""
  sub = ledger.subnet_from_neurons([1.0, 1.0], [0, 0], [0, 3], [True, True], block=5,
                                   hyper=ledger.Hyper.create(weights_set_rate_limit=100))
  sub, reason = chain.set_weights(sub, 0, [1], [1])
  assert reason is None and int(sub.last_update_N[0]) == 5
  _, reason = chain.set_weights(sub, 1, [0], [1])  # last update at block 3: 2 < 100 blocks ago
  assert "rate_limit" in reason
  _, reason = chain.set_weights(sub, 0, [1], [2])  # now it has set weights: limited too
  assert "rate_limit" in reason
