"""Every chain scenario replays within its tolerances and within the README's error figures; the
CLI reports errors cleanly; registration events replace the uid the pruning rule names."""
import fnmatch
import functools
import json
import pathlib
import re
import subprocess
import sys

import pytest

from bittensor_jax import replay
from conftest import CHAIN_DATA

SCENARIOS = sorted((CHAIN_DATA / "scenarios").glob("*.json"))
README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@functools.lru_cache(maxsize=None)
def replayed(path):
  """The scenario and its epoch outputs, replayed once for every test of this file."""
  doc = replay.load(path)
  return doc, list(replay.run(doc, warn=pytest.fail))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_matches_chain(path):
  doc, epochs = replayed(path)
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


def registration_doc(hyper, stake, cap=None, registered_at=None):
  """epoch_logs_two_distinct_servers (first-epoch emission 250M, 0, 250M, 500M, 0 rao: uids 1
  and 4 tie at 0), an epoch, one register event, an epoch."""
  doc = json.loads((CHAIN_DATA / "scenarios" / "epoch_logs_two_distinct_servers.json").read_text())
  doc["hyperparameters"].update(hyper)
  if cap:
    doc["hyperparameters"]["max_allowed_uids"] = cap
  for uid, block in (registered_at or {}).items():
    doc["neurons"][uid]["registered_at"] = block
  doc["events"] = [e for e in doc["events"] if "epoch" not in e] + [
      {"block": 1, "epoch": {"emission": 10**9}},
      {"block": 2, "register": {"hotkey": "new", "stake": stake}},
      {"block": 3, "epoch": {"emission": 10**9}},
  ]
  return doc


@pytest.mark.parametrize("hyper,registered_at", [
    ({"immunity_period": 0, "min_non_immune_uids": 0}, None),  # the uid tie-break decides
    ({"immunity_period": 2, "min_non_immune_uids": 0}, {1: 1}),  # uid 1 immune: uid 4 goes
    ({"immunity_period": 2, "min_non_immune_uids": 4}, {1: 1}),  # 4 non-immune, not > 4: uid 1
    ({"immunity_period": 0, "min_non_immune_uids": 0, "subnet_owner_uid": 1}, None),  # owner
])
def test_register_replaces_the_uid_the_pruning_rule_names(hyper, registered_at):
  """A register event on a full subnet replaces the uid of SPEC 5.2 (written out in
  registration_test.spec_neuron_to_prune) and that uid only: the next epoch sees the new stake
  there, no bonds to or from it, and every other uid's stake unchanged."""
  from registration_test import spec_neuron_to_prune  # pylint: disable=import-outside-toplevel
  new_stake = 7 * 10**8
  doc = registration_doc(hyper, new_stake, registered_at=registered_at)
  first, second = replay.run(replay.validate(doc), warn=pytest.fail)
  reg = [nrn["registered_at"] for nrn in doc["neurons"]]
  want = spec_neuron_to_prune(first["emission"], reg, 2, hyper["immunity_period"],
                              hyper["min_non_immune_uids"], hyper.get("subnet_owner_uid", -1))
  assert want >= 0
  stakes = [nrn["stake"] for nrn in doc["neurons"]]
  stakes[want] = new_stake
  total = sum(stakes)
  assert second["stake"] == pytest.approx([s / total for s in stakes], abs=1e-9)
  assert all(v == 0 for v in second["bonds"][want])
  assert all(row[want] == 0 for row in second["bonds"])
  assert second["validator_permit"][want]  # staked, so it earns a permit in this epoch
  # without the event the second epoch differs exactly there
  doc_without = registration_doc(hyper, new_stake, registered_at=registered_at)
  doc_without["events"] = [e for e in doc_without["events"] if "register" not in e]
  _, unchanged = replay.run(replay.validate(doc_without), warn=pytest.fail)
  assert unchanged["stake"] != second["stake"]


def test_register_appends_while_the_subnet_has_room():
  """SPEC 5.1: with a free slot the new neuron takes uid n; nobody is replaced."""
  doc = registration_doc({"immunity_period": 0, "min_non_immune_uids": 0}, 7 * 10**8, cap=6)
  first, second = replay.run(replay.validate(doc), warn=pytest.fail)
  assert len(first["stake"]) == 5 and len(second["stake"]) == 6
  stakes = [nrn["stake"] for nrn in doc["neurons"]] + [7 * 10**8]
  assert second["stake"] == pytest.approx([s / sum(stakes) for s in stakes], abs=1e-9)


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


_PAIR = re.compile(r"\b([a-z_]+) (\d[\d ]*(?:\.\d+)?(?:e-?\d+)?)")


def readme_error_table():
  """{scenario glob: ({key: quoted figure text}, files quoted or None)} from README.md.

  The format relied on: after the line "Max error per scenario", a table whose rows are
  `| name or glob [(K files)] | figures |`. Figures are "key number [unit]" pairs separated by
  commas (digits may be grouped by spaces, "3 650"), and a key not listed is 0; or "0 (key number,
  ...)": every key 0 but those listed. Other parenthesized text is a remark.
  """
  lines = README.read_text().splitlines()
  start = next(i for i, l in enumerate(lines) if l.startswith("Max error per scenario"))
  rows = {}
  for line in lines[start + 1:]:
    if rows and not line.startswith("|"):
      break
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) != 2 or cells[0] in ("scenario", "---"):
      continue
    name, files = cells[0], None
    m = re.fullmatch(r"(\S+) \((\d+) files\)", name)
    if m:
      name, files = m.group(1), int(m.group(2))
    fig = cells[1]
    if fig == "0" or fig.startswith("0 ("):
      pairs = _PAIR.findall(fig[1:])
    else:
      pairs = _PAIR.findall(re.sub(r"\([^)]*\)", "", fig))
    rows[name] = ({k: v for k, v in pairs}, files)
  return rows


def bound(text):
  """The largest error that the figure `text` states, at its printed precision: "7.3e-6" allows
  up to 7.35e-6 (it rounds to the figure), "3 650" up to 3 655 (trailing zeros of an integer are
  not significant), "1" up to 1.5, "0" only 0."""
  text = text.replace(" ", "")
  value = float(text)
  if value == 0:
    return 0.0
  mant, _, exp = text.lower().partition("e")
  if "." in mant or exp:
    step = 10.0 ** (-len(mant.partition(".")[2]) + (int(exp) if exp else 0))
  else:
    step = 10.0 ** (len(mant) - len(mant.rstrip("0")))
  return value + 0.5 * step


def test_readme_max_errors_hold():
  """README "Max error per scenario": each scenario's measured max error per key is within the
  figure quoted (a key not quoted must be exact), so a loss of exactness fails here even while it
  stays inside the file's own tolerance."""
  table = readme_error_table()
  assert table, "README.md has no error table"
  covered = set()
  for pattern, (figures, files) in table.items():
    paths = [p for p in SCENARIOS if fnmatch.fnmatch(p.stem, pattern)]
    assert paths, f"README error table: {pattern!r} names no scenario file"
    if files is not None:
      assert len(paths) == files, f"README says {files} files for {pattern!r}, found {len(paths)}"
    unknown = set(figures) - set(replay.EXPECT_KEYS)
    assert not unknown, f"README error table: {pattern!r} quotes unknown keys {unknown}"
    for path in paths:
      worst = {}
      for res in replayed(path)[1]:
        for key, err in replay.max_errors(res).items():
          worst[key] = max(worst.get(key, 0.0), err)
      for key, err in worst.items():
        limit = bound(figures[key]) if key in figures else 0.0
        assert err <= limit, (f"{path.stem}: {key} max error {err:.4g} > README figure "
                              f"{figures.get(key, '0')}")
      covered.add(path.stem)
  assert covered == {p.stem for p in SCENARIOS}, "scenarios missing from README's error table"


@pytest.mark.parametrize("text,want", [("7.3e-6", 7.35e-6), ("3 650", 3655), ("1", 1.5),
                                       ("0", 0), ("4.0e-5", 4.05e-5), ("1.6e-10", 1.65e-10)])
def test_readme_figure_bounds(text, want):
  assert bound(text) == pytest.approx(want, rel=1e-12, abs=0)
