"""The NumPy oracle (tests/oracle.py) reproduces every chain scenario and regression file.

The oracle is only worth trusting in a differential test once it matches the spec vectors itself:
the files in testdata/chain/scenarios/ (chain unit tests restated) and testdata/chain/regressions/
(byte-identical copies of spec/regressions/), each within the file's own tolerances.
"""
import json

import numpy as np
import pytest

from bittensor_jax import replay
from tests import oracle
from tests.conftest import CHAIN_DATA

FILES = sorted((CHAIN_DATA / "scenarios").glob("*.json")) + sorted(
    (CHAIN_DATA / "regressions").glob("*.json"))


def _results(doc):
  epochs = [ev["epoch"] for ev in doc["events"] if "epoch" in ev]
  outs = oracle.run(doc)
  assert len(outs) == len(epochs)
  for k, (out, ep) in enumerate(zip(outs, epochs)):
    yield dict(out, scenario=doc["name"], _expect=ep.get("expect", {}),
               _tolerance=ep.get("tolerance") or {}, _event=k)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_oracle_reproduces_spec_file(path):
  doc = json.loads(path.read_text())
  checked = 0
  for res in _results(doc):
    replay.check(res)
    checked += len(res["_expect"])
  assert checked > 0


def test_regression_copies_are_present():
  assert {p.name for p in (CHAIN_DATA / "regressions").glob("*.json")} >= {
      "prune_no_candidate.json", "bonds_moving_average_one.json",
      "sole_validator_full_emission.json", "empty_set_weights.json"}


def test_u16_max_upscale_matches_kernel_vectors(chain_data):
  cases = json.loads((chain_data / "kernels.json").read_text())["vec_u16_max_upscale_to_u16"]
  for case in cases["cases"]:
    assert oracle.u16_max_upscale(case["in"]) == case["out"]


def test_weights_checks_and_pruning_refusal():
  """Self-weight exemptions, empty rows and NoNeuronIdAvailable (SPEC 4.2 step 4, 5.2)."""
  doc = {"name": "t", "hyperparameters": {"max_weights_limit": 100, "min_allowed_weights": 2,
                                          "immunity_period": 0},
         "neurons": [{"stake": 1.0, "registered_at": 0, "last_update": 0,
                      "validator_permit": False},
                     {"stake": 1.0, "registered_at": 0, "last_update": 0,
                      "validator_permit": True}],
         "events": [{"block": 1, "set_weights": {"uid": 0, "uids": [0], "values": [7]}},
                    {"block": 1, "set_weights": {"uid": 1, "uids": [0], "values": [7]}},
                    {"block": 2, "register": {"stake": 5.0}},
                    {"block": 3, "epoch": {"emission": 10}}]}
  (out,) = oracle.run(doc)
  # Single self-weight accepted; the short, over-limit row of uid 1 refused; no uid to prune.
  assert [r[1] for r in out["rejected"]] == ["weight vector too short", "no uid available"]
  assert len(out["stake"]) == 2
  np.testing.assert_array_equal(out["emission"], [0, 10])  # only uid 1 has a permit


def _cr_doc(period, events):
  return {"name": "cr", "hyperparameters": {"commit_reveal_weights_enabled": True,
                                            "reveal_period_epochs": period, "tempo": 100},
          "neurons": [{"stake": 1.0, "registered_at": 0, "last_update": 0,
                       "validator_permit": True},
                      {"stake": 0.0, "registered_at": 0, "last_update": 0},
                      {"stake": 0.0, "registered_at": 0, "last_update": 0}],
          "events": events}


@pytest.mark.parametrize("period", [0, 1, 2])
def test_commit_reveal_weights_first_used_after_the_period(period):
  """Committed before epoch k, the weights are first used by epoch k + period (brief, SPEC 1.6.4)."""
  events = [{"block": 5, "commit_weights": {"uid": 0, "uids": [1], "values": [9]}},
            {"block": 5, "set_weights": {"uid": 0, "uids": [2], "values": [9]}}]
  events += [{"block": 6 + k, "epoch": {"emission": 100}} for k in range(4)]
  outs = oracle.run(_cr_doc(period, events))
  used = [out["incentive"][1] == 1.0 for out in outs]
  assert used == [k >= period for k in range(4)]
  assert outs[0]["rejected"] == [(1, "commit-reveal is enabled; use commit_weights")]


def test_commit_reveal_column_mask_and_full_fifo():
  """A uid registered after a pending commit gets no weight from that row (SPEC 1.6 step 4)."""
  events = [{"block": 5, "set_weights": {"uid": 0, "uids": [1], "values": [9]}}]
  doc = _cr_doc(3, events)
  doc["hyperparameters"]["commit_reveal_weights_enabled"] = False
  base = oracle.run(dict(doc, events=events + [{"block": 9, "epoch": {"emission": 100}}]))
  assert base[0]["incentive"][1] == 1.0
  # Same stored row, but a commit at block 6 is pending and uid 1 re-registered at block 7.
  doc = _cr_doc(3, [{"block": 6, "commit_weights": {"uid": 0, "uids": [2], "values": [9]}}]
                + [{"block": 6, "commit_weights": {"uid": 0, "uids": [2], "values": [9]}}] * 4
                + [{"block": 9, "epoch": {"emission": 100}}])
  st = oracle.Oracle(doc)
  st.weights[0] = {1: 65535}
  st.upd[0] = 5
  st.reg[1] = 7
  st.block = 6
  reasons = [st.commit_weights(0, [2], [9]) for _ in range(5)]
  assert reasons == [None] * 4 + ["too many unrevealed commits"]
  st.upd[0] = 8
  st.block = 9
  out = st.epoch(100)
  assert out["incentive"] == [0.0, 0.0, 0.0]
