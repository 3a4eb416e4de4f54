"""Hypothesis strategies for random VALID scenario documents (scenarios/FORMAT.md).

`scenarios(...)` draws a whole subnet history: 2-64 uids; a capacity sometimes above n (so a
registration appends) and sometimes equal to it (so it prunes); stakes with zeros, ties, very large
(1e18) and very small values; every hyperparameter across its full storage range (SPEC.md section 6,
FORMAT.md), ends included; weight vectors with explicit zeros, omitted uids, self-weights, empty and
refused calls; registrations, add_stake, reset_bonds, commit_weights and several epochs with
emissions up to 1e12 rao.

`exclude` removes generated features that belong to a known chain fault kind (see
`differential_test.KNOWN_FAULTS`), so the differential test runs while the fixes are pending:
  * "storage_ranges": tempo drawn from [1, 50400] instead of the u16 range [0, 65535];
  * "commit_reveal": no commit-reveal hyperparameters and no commit_weights events;
  * "empty_set_weights": no empty weight vectors;
  * "self_weight_max_limit": no single self-weight while max_weights_limit is below 65535;
  * "alpha_zero_exact": bonds_moving_average never 1e6.
The other kinds depend on what the chain does with the input and are filtered by the test itself.
"""
from __future__ import annotations

from hypothesis import strategies as st

U16 = 65535
CAPACITIES = (2, 3, 4, 8, 16, 64)          # each capacity is one JAX compile; n is drawn below it
_STAKE_POOL = (0.0, 1.0, 2.0, 3.0, 0.5, 1e18, 1e-9, 1e-12, 1000.0, 4.0e9)


def _ends(lo: int, hi: int, *extra: int) -> st.SearchStrategy[int]:
  """An integer in [lo, hi] that often sits on an end (or a named value such as the default)."""
  return st.one_of(st.sampled_from((lo, hi) + extra), st.integers(lo, hi))


stakes = st.one_of(
    st.sampled_from(_STAKE_POOL),                              # zeros, ties, 1e18, tiny
    st.floats(1e-12, 1e18, allow_nan=False, allow_infinity=False),
    st.integers(0, 10**6).map(float))


@st.composite
def hyperparameters(draw, n: int, cap: int, exclude: frozenset) -> dict:
  """A FORMAT.md hyperparameter object; any key may be left out (storage default)."""
  tempo_lo, tempo_hi = (1, 50400) if "storage_ranges" in exclude else (0, U16)
  alpha_lo = draw(_ends(0, U16, 45875, 6553))
  cands = {
      "tempo": _ends(tempo_lo, tempo_hi, 360, 10, 1),
      "activity_cutoff_factor_milli": _ends(1000, 50000, 13889),
      "kappa": _ends(0, U16, 32767, 32768, 21845),
      # up to 2e6 (alpha down to -1): the negative-alpha rule, in the range where a float64
      # replay stays within a rao of the chain (docs/chain.md §1.10)
      "bonds_moving_average": st.one_of(
          _ends(0, 999_999 if "alpha_zero_exact" in exclude else 1_000_000, 900000, 975000),
          st.integers(1_000_001, 2_000_000)),
      "bonds_penalty": _ends(0, U16, 32767),
      "yuma3_enabled": st.booleans(),
      "liquid_alpha_enabled": st.booleans(),
      "alpha_low": st.just(alpha_lo),
      "alpha_high": _ends(alpha_lo, U16, 58982 if alpha_lo <= 58982 else U16),
      "alpha_sigmoid_steepness": _ends(-32768, 32767, 1000, 0),
      "max_allowed_validators": st.one_of(_ends(0, n + 2), st.integers(1, 3),
                                          st.sampled_from((64, 128, U16))),
      "stake_threshold": st.one_of(st.just(0), st.integers(0, 5),
                                   st.sampled_from((10**6, 10**9, 10**18))),
      "immunity_period": _ends(0, U16, 4096, 1, 2),
      "min_non_immune_uids": _ends(0, 12, 10),
      "bonds_reset_enabled": st.booleans(),
      "subnet_owner_uid": st.one_of(st.none(), st.integers(0, n - 1)),
      "min_allowed_weights": st.one_of(_ends(0, n + 1), st.just(1024)),
      "max_weights_limit": st.one_of(st.just(U16), _ends(0, U16, 32768, 21845)),
  }
  if "commit_reveal" not in exclude:
    cands["commit_reveal_weights_enabled"] = st.booleans()
    cands["reveal_period_epochs"] = st.integers(0, 3)
  keys = draw(st.sets(st.sampled_from(sorted(cands))))
  if draw(st.integers(0, 2)):              # permit churn (top-k below n) in 2 of 3 scenarios
    keys.add("max_allowed_validators")
  hyper = {k: draw(cands[k]) for k in sorted(keys)}
  if "alpha_high" in hyper:
    hyper["alpha_low"] = alpha_lo
  elif "alpha_low" in hyper and hyper["alpha_low"] > 58982:
    hyper["alpha_high"] = draw(_ends(hyper["alpha_low"], U16))
  hyper["max_allowed_uids"] = cap
  return hyper


@st.composite
def weight_call(draw, uid: int, n_now: int, cap: int, kinds=("subset", "subset", "subset", "self",
                                                              "empty", "odd")) -> dict:
  """uids/values of one set_weights (or commit_weights): explicit zeros, omitted uids, self."""
  kind = draw(st.sampled_from(kinds))
  if kind == "self":
    uids = [uid]
  elif kind == "empty":
    uids = []
  elif kind == "odd":                                 # duplicates or unregistered targets
    uids = draw(st.lists(st.integers(0, cap - 1), min_size=1, max_size=4))
  else:
    uids = draw(st.lists(st.integers(0, max(n_now - 1, 0)), unique=True, min_size=1,
                         max_size=n_now))
  value = st.one_of(st.just(0), st.just(U16), st.integers(0, U16), st.integers(1, 40))
  values = draw(st.lists(value, min_size=len(uids), max_size=len(uids)))
  return {"uid": uid, "uids": uids, "values": values}


@st.composite
def scenarios(draw, exclude: frozenset = frozenset(), capacities=CAPACITIES,
              max_events: int = 14) -> dict:
  """A valid FORMAT.md scenario document (without expectations)."""
  cap = draw(st.sampled_from(capacities))
  n = draw(st.one_of(st.just(cap), st.integers(min(2, cap), cap)))
  hyper = draw(hyperparameters(n, cap, exclude))
  neurons = []
  for i in range(n):
    reg = draw(_ends(0, 300))
    neurons.append({"hotkey": f"h{i}", "stake": draw(stakes), "registered_at": reg,
                    "last_update": reg + draw(_ends(0, 300)),
                    "validator_permit": draw(st.booleans())})
  block = max(x["last_update"] for x in neurons) + draw(st.integers(0, 20))
  cr = bool(hyper.get("commit_reveal_weights_enabled", False))
  kinds = ["subset", "subset", "subset", "self", "empty", "odd"]
  if "empty_set_weights" in exclude:
    kinds.remove("empty")
  if "self_weight_max_limit" in exclude and hyper.get("max_weights_limit", U16) != U16:
    kinds.remove("self")
  events, n_now, epochs = [], n, 0
  n_events = draw(st.integers(1, max_events))
  for k in range(n_events):
    block += draw(st.one_of(st.integers(0, 3), st.sampled_from((0, 1, 50, 400, 6000))))
    last = k == n_events - 1
    kind = "epoch" if last else draw(st.sampled_from(
        ("weights", "weights", "weights", "epoch", "epoch", "register", "add_stake",
         "add_stake", "reset_bonds")))
    if kind == "weights":
      uid = draw(st.one_of(st.integers(0, n_now - 1), st.integers(0, cap - 1)))
      name = "commit_weights" if cr and draw(st.integers(0, 4)) else "set_weights"
      events.append({"block": block, name: draw(weight_call(uid, n_now, cap, tuple(kinds)))})
    elif kind == "register":
      events.append({"block": block, "register": {"hotkey": f"r{k}", "stake": draw(stakes)}})
      n_now = min(n_now + 1, cap)
    elif kind == "add_stake":
      events.append({"block": block, "add_stake": {"uid": draw(st.integers(0, n_now - 1)),
                                                   "amount": draw(stakes)}})
    elif kind == "reset_bonds":
      events.append({"block": block, "reset_bonds": {"uid": draw(st.integers(0, n_now - 1))}})
    else:
      emission = draw(st.one_of(st.sampled_from((0, 1, 10**9, 10**12)),
                                st.integers(0, 10**12)))
      events.append({"block": block, "epoch": {"emission": emission}})
      epochs += 1
  return {"name": "generated", "source": "tests/scenario_strategies.py (hypothesis)",
          "hyperparameters": hyper, "neurons": neurons, "events": events}
