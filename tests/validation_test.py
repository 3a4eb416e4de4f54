"""Every hyperparameter and every number of the ledger: its whole storage range is accepted, one
past it is refused by name before jit, and the epoch and block step stay finite at the extremes.

The ranges come from the chain's storage types (SPEC.md section 6, scenarios/FORMAT.md), listed
in `ledger.HYPER_SPEC`; the tests read them from there, so a new hyperparameter is covered too.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bittensor_jax import chain, replay
from bittensor_jax.chain import ledger, yuma

N = 4
# Companion values a hyperparameter at an end of its range needs to be a consistent state.
COMPANIONS = {("alpha_low", "max"): {"alpha_high": ledger.U16_MAX},
              ("alpha_high", "min"): {"alpha_low": 0}}
BOOLS = ("yuma3_enabled", "liquid_alpha_enabled", "bonds_reset_enabled")


def extreme(name, end):
  _, lo, hi = ledger.HYPER_SPEC[name]
  if name in BOOLS:
    return {"min": False, "max": True}[end]
  return {"min": lo, "max": hi}[end]


def past(name, end):
  _, lo, hi = ledger.HYPER_SPEC[name]
  if name in BOOLS:
    return {"min": -1, "max": 2}[end]
  return {"min": lo - 1, "max": hi + 1}[end]


def test_storage_types_are_documented():
  """The storage range of the chain's u16 / i16 / u32 / u64 fields, not an extrinsic's range."""
  spec = ledger.HYPER_SPEC
  for name in ("tempo", "kappa", "bonds_penalty", "alpha_low", "alpha_high",
               "max_allowed_validators", "immunity_period", "min_non_immune_uids",
               "min_allowed_weights", "max_weights_limit"):
    assert spec[name][1:] == (0, 65535), name
  assert spec["alpha_sigmoid_steepness"][1:] == (-32768, 32767)
  assert spec["activity_cutoff_factor_milli"][1:] == (0, 2**32 - 1)
  assert spec["weights_set_rate_limit"][1:] == (0, 2**64 - 1)
  assert spec["stake_threshold"][1:] == (0, 2**64 - 1)


CASES = [(name, end) for name in ledger.HYPER_SPEC for end in ("min", "max")]


@pytest.mark.parametrize("name,end", CASES, ids=[f"{n}-{e}" for n, e in CASES])
def test_range_end_accepted_and_one_past_refused(name, end):
  kw = {name: extreme(name, end), **COMPANIONS.get((name, end), {})}
  ledger.Hyper.create(**kw)
  with pytest.raises(ValueError, match=name):
    ledger.Hyper.create(**{**kw, name: past(name, end)})
  # the scenario validation follows the same table and names the field by its path
  doc = {"name": "x", "hyperparameters": kw, "events": [],
         "neurons": [{"stake": 1, "registered_at": 0, "last_update": 0}]}
  replay.validate(doc)
  doc["hyperparameters"] = {**kw, name: past(name, end)}
  with pytest.raises(replay.ScenarioError, match=f"hyperparameters.{name}"):
    replay.validate(doc)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1", [1], None, 1.5])
def test_non_numbers_refused(bad):
  name = "kappa"
  with pytest.raises(ValueError, match=name):
    ledger.Hyper.create(**{name: bad})


def _subnet(hyper, block=100, last_update=99):
  stake = np.asarray([5e9, 3e9, 0.0, 1.0])
  sub = ledger.subnet_from_neurons(stake, [0, 0, 1, 2], [last_update] * N,
                                   [True, True, False, False], hyper=hyper, block=block)
  sub, _ = chain.set_weights(sub, 0, [2, 3], [65535, 20000])
  sub, _ = chain.set_weights(sub, 1, [2], [40000])
  return sub.replace(bonds_NxN=sub.bonds_NxN.at[0, 2].set(30000),
                     has_bond_NxN=sub.has_bond_NxN.at[0, 2].set(True))


_epoch = jax.jit(yuma.epoch)
_block_step = jax.jit(chain.block_step)


def check_finite(sub, out, emission):
  for leaf in jax.tree.leaves(out):
    assert np.isfinite(np.asarray(leaf, float)).all()
  for amount in (out.server_emission_N, out.validator_emission_N, out.emission_N):
    a = np.asarray(amount)
    assert (a >= 0).all() and (a <= emission).all()
  bonds = np.asarray(out.bonds_NxN)
  assert (bonds >= 0).all() and (bonds <= 65535).all()
  for p in ("consensus_N", "validator_trust_N", "incentive_N", "dividends_N"):
    v = np.asarray(getattr(out, p))
    assert (v >= 0).all() and (v <= 1 + 1e-12).all(), p
  ledger.check_subnet(sub)


@pytest.mark.parametrize("yuma3", [False, True], ids=["classic", "yuma3_liquid"])
@pytest.mark.parametrize("name,end", CASES, ids=[f"{n}-{e}" for n, e in CASES])
def test_epoch_and_block_step_finite_at_range_ends(name, end, yuma3):
  kw = {"yuma3_enabled": yuma3, "liquid_alpha_enabled": yuma3, "tempo": 10}
  kw.update({name: extreme(name, end), **COMPANIONS.get((name, end), {})})
  sub = _subnet(ledger.Hyper.create(**kw))
  emission = 10**9
  after, out = _epoch(sub, emission)
  check_finite(after, out, emission)
  assert int(out.emission_N.sum()) <= emission
  stepped, out, _ = _block_step(after)
  check_finite(stepped, out, max(int(stepped.total_issuance), 1))


def test_tempo_zero_runs_an_epoch_every_block():
  """u16 tempo 0 is a valid state: `block - last_epoch >= 0` holds every block, cutoff max(0,1)."""
  sub = _subnet(ledger.Hyper.create(tempo=0), block=100, last_update=99)
  ran = []
  for _ in range(3):
    sub, out, r = _block_step(sub)
    ran.append(bool(r))
  assert ran == [True, True, True]
  # activity cutoff = max(floor(factor * 0 / 1000), 1) = 1 block: at block 103, a last update
  # at 102 is active, one at 101 is not
  sub = sub.replace(last_update_N=jnp.asarray([102, 101, 102, 101], jnp.int64))
  _, out = _epoch(sub, 10**9)
  np.testing.assert_array_equal(out.active_N, [True, False, True, False])


def test_tempo_u16_max_waits():
  sub = _subnet(ledger.Hyper.create(tempo=65535), block=100).replace(
      last_epoch_block=jnp.asarray(50, jnp.int64))
  for _ in range(3):
    sub, out, ran = _block_step(sub)
    assert not bool(ran)
  sub = sub.replace(block=jnp.asarray(50 + 65535 - 1, jnp.int64))
  sub, out, ran = _block_step(sub)
  assert bool(ran)
  check_finite(sub, out, int(sub.total_issuance))


def test_largest_block_and_emission():
  """Blocks up to MAX_BLOCK and E up to 2^63 - 1 rao: no int64 overflow in cutoff or amounts."""
  b = ledger.MAX_BLOCK
  hyper = ledger.Hyper.create(tempo=65535, activity_cutoff_factor_milli=2**32 - 1)
  sub = _subnet(hyper, block=b, last_update=b)
  after, out = _epoch(sub, ledger.MAX_RAO)
  check_finite(after, out, ledger.MAX_RAO)
  assert np.asarray(out.active_N).all()
  assert sum(int(x) for x in np.asarray(out.emission_N)) > ledger.MAX_RAO // 2
  stepped, _, _ = _block_step(after)
  assert int(stepped.block) == b + 1


@pytest.mark.parametrize("field,value,match", [
    ("stake", [1.0, 2.0**64 * 2, 0.0], "stake"),
    ("stake", [1e308, 1e308, 1e308], "stake"),         # would overflow the float64 sum
    ("stake", [1.0, float("inf"), 0.0], "stake"),
    ("stake", [1.0, -1e-9, 0.0], "stake"),
    ("registered_at", [0, 2**62 + 1, 0], "registered_at"),
    ("last_update", [0, -1, 0], "last_update"),
    ("last_update", [0, 1.5, 0], "last_update"),
    ("last_update", [0, float("nan"), 0], "last_update"),
    ("block", 2**63, "block"),
    ("block", ledger.MAX_BLOCK + 1, "block"),
    ("block", -1, "block"),
])
def test_python_api_refuses_values_the_ledger_cannot_hold(field, value, match):
  args = dict(stake=[1.0, 2.0, 0.0], registered_at=[0, 0, 0], last_update=[0, 0, 0],
              validator_permit=[True, False, False], block=0)
  args[field] = value
  with pytest.raises(ValueError, match=match):
    ledger.subnet_from_neurons(**args)


def test_check_subnet_refuses_state_out_of_range():
  sub = _subnet(ledger.Hyper.create())
  ledger.check_subnet(sub)
  bad = {
      "stake_N": sub.stake_N.at[0].set(2.0**65),
      "last_update_N": sub.last_update_N.at[0].set(-5),
      "block": jnp.asarray(ledger.MAX_BLOCK + 1, jnp.int64),
      "emission_N": sub.emission_N.at[0].set(-1),
      "consensus_N": sub.consensus_N.at[0].set(jnp.nan),
  }
  for field, value in bad.items():
    with pytest.raises(ValueError, match=field):
      ledger.check_subnet(sub.replace(**{field: value}))
  with pytest.raises(ValueError, match="min_non_immune_uids"):
    ledger.check_subnet(sub.replace(hyper=sub.hyper.replace(
        min_non_immune_uids=jnp.asarray(70000, jnp.int64))))


def test_rate_limit_u64_max_blocks_every_later_call():
  """u64 max is held saturated in int64; no block difference reaches it, so every call waits."""
  def fresh(limit):
    return ledger.subnet_from_neurons([1.0, 1.0], [0, 0], [1, 1], [True, True],
                                      hyper=ledger.Hyper.create(weights_set_rate_limit=limit),
                                      block=ledger.MAX_BLOCK)
  _, reason = chain.set_weights(fresh(2**64 - 1), 0, [1], [1])
  assert "rate_limit" in reason
  _, reason = chain.set_weights(fresh(ledger.MAX_BLOCK), 0, [1], [1])
  assert "rate_limit" in reason  # MAX_BLOCK - 1 blocks since the last update
  _, reason = chain.set_weights(fresh(ledger.MAX_BLOCK - 1), 0, [1], [1])
  assert reason is None
