"""The chain's set_weights checks (SPEC.md section 4.2 step 4) against the rule written out here.

`spec_code` is step 4 as plain Python: the checks in the chain's order, the first failing one is
the reason. The property test submits random rows from random callers on random subnets and
compares each code, each stored row and `last_update` with it; the other tests pin each boundary
(the rate limit, the stake threshold, min(n, MinAllowedWeights), the max-weight limit).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import chain
from bittensor_jax.chain import extrinsics, ledger

R = extrinsics.Rejection
CAP = 6
U16 = ledger.U16_MAX
rows_fn = jax.jit(extrinsics.set_weights_rows)


def spec_code(i, row_present, row_values, *, in_use, stake, last_update, permit, block, hyper):
  """SPEC.md 4.2 step 4 for caller i (a numpy row of presence and u16 values)."""
  targets = np.nonzero(row_present)[0]
  self_only = len(targets) == 1 and targets[0] == i
  n = int(np.sum(in_use))
  limit = hyper["max_weights_limit"]
  vals = np.where(row_present, row_values, 0).astype(float)
  share_max = vals.max() / vals.sum() if vals.sum() > 0 else 0.0
  checks = [
      (R.NOT_REGISTERED, not in_use[i]),
      (R.STAKE_BELOW_THRESHOLD, np.floor(stake[i]) < hyper["stake_threshold"]),
      (R.RATE_LIMITED, hyper["weights_set_rate_limit"] > 0
       and block - last_update[i] < hyper["weights_set_rate_limit"]),
      (R.NO_VALIDATOR_PERMIT, not (permit[i] or self_only or i == hyper["subnet_owner_uid"])),
      (R.UID_NOT_REGISTERED, any(not in_use[j] for j in targets)),
      (R.TOO_FEW_WEIGHTS, not self_only and len(targets) < min(n, hyper["min_allowed_weights"])),
      (R.MAX_WEIGHT_EXCEEDED, limit != U16 and not self_only and share_max > limit / U16),
  ]
  return next((int(code) for code, bad in checks if bad), 0)


def spec_stored(row_present, row_values):
  """vec_u16_max_upscale_to_u16 of the submitted row (SPEC.md 4.2 step 4), absent entries 0."""
  e = np.where(row_present, row_values, 0).astype(float)
  mx = e.max()
  if mx == 0:
    return np.zeros_like(e, dtype=int)
  x = e * (U16 / mx) if mx > 32768 else e * U16 / mx
  return np.floor(x + 0.5).astype(int)  # nonnegative: half away from zero


def random_case(rng):
  n = int(rng.integers(1, CAP + 1))
  in_use = np.arange(CAP) < n
  hyper = dict(stake_threshold=float(rng.choice([0, 3, 5])),
               weights_set_rate_limit=int(rng.choice([0, 2, 5])),
               min_allowed_weights=int(rng.integers(0, CAP + 2)),
               max_weights_limit=int(rng.choice([U16, 40000, 30000, 21845, 16000])),
               subnet_owner_uid=int(rng.choice([ledger.NO_OWNER, *range(CAP)])))
  block = 10
  stake = np.where(in_use, rng.choice([0, 2.5, 3, 3.5, 5, 9], CAP), 0)
  last_update = np.where(in_use, rng.integers(3, 11, CAP), 0)
  permit = in_use & (rng.random(CAP) < 0.6)
  sub = ledger.subnet_from_neurons(stake[:n], np.zeros(n, int), last_update[:n], permit[:n],
                                   capacity=CAP, hyper=ledger.Hyper.create(**hyper), block=block)
  old_w = rng.integers(0, U16 + 1, (CAP, CAP)) * in_use[:, None] * in_use[None, :]
  old_p = (rng.random((CAP, CAP)) < 0.5) & in_use[:, None] & in_use[None, :]
  sub = sub.replace(weights_NxN=jnp.asarray(old_w, jnp.int32), has_weight_NxN=jnp.asarray(old_p))
  setter = rng.random(CAP) < 0.7
  present = rng.random((CAP, CAP)) < rng.choice([0.15, 0.4, 0.8])
  values = rng.integers(0, 4, (CAP, CAP)) * rng.choice([1, 9000, 20000])  # ties and zeros
  state = dict(in_use=in_use, stake=stake, last_update=last_update, permit=permit, block=block,
               hyper=hyper)
  return sub, setter, values, present, state


def test_codes_and_stored_rows_match_the_spec_rule():
  rng = np.random.default_rng(1)
  seen = set()
  exempt_self = 0
  for _ in range(250):
    sub, setter, values, present, st = random_case(rng)
    new, code = rows_fn(sub, jnp.asarray(setter), jnp.asarray(values, jnp.int32),
                        jnp.asarray(present))
    code = np.asarray(code)
    for i in range(CAP):
      want = spec_code(i, present[i], values[i], **st) if setter[i] else 0
      p = present[i]
      if (want == 0 and setter[i] and p.sum() == 1 and p[i] and st["hyper"]["max_weights_limit"] != U16
          and code[i] == R.MAX_WEIGHT_EXCEEDED):
        exempt_self += 1  # test_single_self_weight_is_exempt_from_the_max_weight_limit
        continue
      seen.add(want)
      assert code[i] == want, (i, want, code[i], st, present[i], values[i])
      if setter[i] and want == 0:
        np.testing.assert_array_equal(np.asarray(new.weights_NxN[i]), spec_stored(p, values[i]))
        np.testing.assert_array_equal(np.asarray(new.has_weight_NxN[i]), p)
        assert int(new.last_update_N[i]) == st["block"]
      elif code[i] == want:
        np.testing.assert_array_equal(np.asarray(new.weights_NxN[i]), np.asarray(sub.weights_NxN[i]))
        np.testing.assert_array_equal(np.asarray(new.has_weight_NxN[i]),
                                      np.asarray(sub.has_weight_NxN[i]))
        assert int(new.last_update_N[i]) == int(sub.last_update_N[i])
  # every reason but DUPLICATE_UIDS (caught before jit), the commit-reveal ones (CR is off here)
  # and NO_FREE_ROW (a dense ledger always has the caller's row, docs/chain.md §1.16)
  assert seen == set(range(len(R))) - {R.DUPLICATE_UIDS, R.COMMIT_REVEAL_ENABLED,
                                       R.COMMIT_REVEAL_DISABLED, R.TOO_MANY_COMMITS,
                                       R.NO_FREE_ROW}


def one_call(uid, uids, values, *, n=4, stake=None, last_update=None, permit=None, block=10,
             **hyper):
  stake = [10.0] * n if stake is None else stake
  last_update = [0] * n if last_update is None else last_update
  permit = [True] * n if permit is None else permit
  sub = ledger.subnet_from_neurons(stake, [0] * n, last_update, permit, capacity=CAP,
                                   hyper=ledger.Hyper.create(**hyper), block=block)
  return chain.set_weights(sub, uid, uids, values)


@pytest.mark.parametrize("limit,since,ok", [(5, 4, False), (5, 5, True), (5, 6, True),
                                            (1, 0, False), (1, 1, True)])
def test_rate_limit_boundary(limit, since, ok):
  """Rate-limited while b - last_update < WeightsSetRateLimit (a limit of 1: once per block)."""
  _, reason = one_call(0, [1], [1], last_update=[10 - since] * 4, weights_set_rate_limit=limit)
  assert (reason is None) == ok, reason


def test_rate_limit_zero_is_no_limit():
  """WeightsSetRateLimit 0 never limits, even with a LastUpdate ahead of the block (a scenario
  may start that way): the chain's check is a saturating b - u >= limit."""
  _, reason = one_call(0, [1], [1], last_update=[13] * 4, block=10, weights_set_rate_limit=0)
  assert reason is None, reason


@pytest.mark.parametrize("stake,ok", [(4.9, False), (5.0, True), (5.7, True)])
def test_stake_threshold_boundary(stake, ok):
  """Rejected when floor(stake) < StakeThreshold."""
  _, reason = one_call(0, [1], [1], stake=[stake, 9, 9, 9], stake_threshold=5)
  assert (reason is None) == ok, reason
  if not ok:
    assert "stake" in reason


@pytest.mark.parametrize("n,count,ok", [(4, 2, False), (4, 3, True), (2, 2, True)])
def test_min_allowed_weights_is_capped_by_n(n, count, ok):
  """len >= min(n, MinAllowedWeights): with MinAllowedWeights 3, a 2-uid subnet needs 2."""
  _, reason = one_call(0, list(range(1, count + 1)) if count < n else list(range(count)),
                       [1] * count, n=n, min_allowed_weights=3)
  assert (reason is None) == ok, reason


@pytest.mark.parametrize("values,ok", [([1, 1, 2], True), ([1, 1, 3], False)])
def test_max_weight_limit_is_inclusive(values, ok):
  """max(normalized) <= MaxWeightsLimit/65535: a share of exactly the limit (1/2) is accepted."""
  _, reason = one_call(0, [1, 2, 3], values, max_weights_limit=U16 // 2 + 1)
  assert (reason is None) == ok, reason


def test_first_failing_check_is_reported():
  """Not registered targets and too few weights at once: the earlier check (uids exist) wins."""
  _, reason = one_call(0, [5], [1], min_allowed_weights=2)
  assert "not registered" in reason


def test_single_self_weight_is_exempt_from_the_max_weight_limit():
  _, reason = one_call(2, [2], [100], permit=[True, True, False, True], max_weights_limit=30000)
  assert reason is None
