"""Every chain scenario replays within its tolerances; the CLI reports errors cleanly."""
import json
import subprocess
import sys

import pytest

from bittensor_jax import replay
from conftest import CHAIN_DATA

SCENARIOS = sorted((CHAIN_DATA / "scenarios").glob("*.json"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_matches_chain(path):
  doc = replay.load(path)
  epochs = list(replay.run(doc, warn=pytest.fail))
  assert epochs, "a scenario without epochs checks nothing"
  expected = [ev for ev in doc["events"] if "epoch" in ev and ev["epoch"].get("expect")]
  assert expected, "the scenario has no expectations"
  for res in epochs:
    replay.check(res)
    n = len(res["stake"])
    for key in replay.EXPECT_KEYS:
      assert key in res
      if key != "bonds":
        assert len(res[key]) == n


def test_check_detects_a_wrong_expectation(tmp_path):
  doc = json.loads((CHAIN_DATA / "scenarios" / "epoch_logs_simple.json").read_text())
  doc["events"][-1]["epoch"]["expect"]["emission"] = [400000000, 600000000]
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps(doc))
  proc = subprocess.run([sys.executable, "-m", "bittensor_jax.replay", "--check", str(bad)],
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 1
  assert "emission" in proc.stderr and "block 1" in proc.stderr


def test_cli_replays_every_file_in_one_process():
  proc = subprocess.run([sys.executable, "-m", "bittensor_jax.replay", "--check",
                         *map(str, SCENARIOS)], capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr
  lines = [json.loads(x) for x in proc.stdout.splitlines()]
  n_epochs = sum(1 for p in SCENARIOS for ev in json.loads(p.read_text())["events"]
                 if "epoch" in ev)
  assert len(lines) == n_epochs
  assert {x["scenario"] for x in lines} == {json.loads(p.read_text())["name"] for p in SCENARIOS}


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("neurons"), "neurons"),
    (lambda d: d["neurons"][0].update(stake=-1), "neurons[0].stake"),
    (lambda d: d["neurons"][0].update(stake="x"), "neurons[0].stake"),
    (lambda d: d["events"].append({"block": 0, "epoch": {"emission": 1}}), "blocks never go down"),
    (lambda d: d["events"].append({"block": 9, "set_weights": {"uid": 0, "uids": [1],
                                                               "values": [70000]}}),
     "set_weights.values"),
    (lambda d: d["events"].append({"block": 9, "set_weights": {"uid": 0, "uids": [1, 2],
                                                               "values": [1]}}),
     "differ in length"),
    (lambda d: d["events"].append({"block": 9, "teleport": {}}), "exactly one of"),
    (lambda d: d["hyperparameters"].update(kappa=70000), "kappa"),
    (lambda d: d["hyperparameters"].update(warp=1), "warp"),
    (lambda d: d["events"][-1]["epoch"]["expect"].update(rank=[1]), "expect.rank"),
])
def test_malformed_scenario_is_a_clean_error(tmp_path, mutate, field):
  doc = json.loads((CHAIN_DATA / "scenarios" / "epoch_logs_simple.json").read_text())
  mutate(doc)
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps(doc))
  proc = subprocess.run([sys.executable, "-m", "bittensor_jax.replay", str(bad)],
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 2, proc.stderr
  assert field in proc.stderr
  assert "Traceback" not in proc.stderr


def test_not_json_is_a_clean_error(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  proc = subprocess.run([sys.executable, "-m", "bittensor_jax.replay", str(bad)],
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 2 and "not valid JSON" in proc.stderr


def test_registration_events_replay(tmp_path):
  """register beyond capacity replaces the pruned uid; its bonds row and weights are reset."""
  doc = json.loads((CHAIN_DATA / "scenarios" / "epoch_logs_two_distinct_servers.json").read_text())
  doc["hyperparameters"].update(immunity_period=0, min_non_immune_uids=0)
  doc["events"] = [e for e in doc["events"] if "epoch" not in e] + [
      {"block": 1, "epoch": {"emission": 10**9}},
      {"block": 2, "register": {"hotkey": "new", "stake": 0}},
      {"block": 3, "epoch": {"emission": 10**9}},
  ]
  res = list(replay.run(replay.validate(doc)))
  first, second = res
  loser = min(range(5), key=lambda u: (first["emission"][u], u))
  assert second["emission"][loser] == 0
  assert all(row[loser] == 0 for row in second["bonds"])


def test_replays_a_4096_uid_scenario():
  """The format's largest subnet: 4096 uids, weights, an epoch, a registration by pruning."""
  n = 4096
  neurons = [{"hotkey": f"h{i}", "stake": 1e9 if i < 4 else 0, "registered_at": 0,
              "last_update": 1, "validator_permit": i < 4} for i in range(n)]
  events = [{"block": 1, "set_weights": {"uid": v, "uids": [100, 4000],
                                         "values": [65535, 30000]}} for v in range(4)]
  events += [{"block": 1, "epoch": {"emission": 10**9}},
             {"block": 2, "register": {"hotkey": "late", "stake": 1}},
             {"block": 3, "epoch": {"emission": 10**9}}]
  doc = replay.validate({"name": "big", "hyperparameters": {"max_allowed_uids": n,
                                                            "immunity_period": 0},
                         "neurons": neurons, "events": events})
  first, second = replay.run(doc, warn=pytest.fail)
  assert sum(first["emission"]) > 10**9 - 2 * n
  assert first["incentive"][100] > 0 and first["incentive"][4000] > 0
  pruned = min(range(n), key=lambda u: (first["emission"][u], u))
  assert second["emission"][pruned] == 0 and len(second["bonds"]) == n
