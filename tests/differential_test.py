"""Differential test: `bittensor_jax.replay.run` against the NumPy oracle on random valid scenarios.

Every key of every epoch is compared at the FORMAT.md tolerances: proportions 1e-6, bonds 1 u16
LSB, booleans exactly, amounts 2 rao -- widened with E (see `amount_tolerance`).

Run more examples on demand (DIFFERENTIAL_PROGRESS=FILE appends a line per compared example):
  pytest --hypothesis-profile=long tests/differential_test.py

A failing (shrunk) scenario is written as a FORMAT.md file with the oracle's numbers as `expect`
to $DIFFERENTIAL_FOUND_DIR (default: a temporary folder; the path is in the failure message), so it
replays with `python -m bittensor_jax.replay --check FILE`. Minimal files of each chain fault kind
found are kept in testdata/chain/found/ and replayed by `test_found_file` (xfail while the kind is
in KNOWN_FAULTS).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import tempfile

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings

from bittensor_jax import replay
from tests import oracle
from tests import scenario_strategies as ss
from tests.conftest import CHAIN_DATA

jax.config.update("jax_enable_x64", True)

# Chain fault kinds found and not fixed yet. Remove an entry when its fix lands; the generator /
# filter below then exercises the feature again and the found/ file of that
# kind must pass (strict xfail turns XPASS into a failure to say the entry is stale).
KNOWN_FAULTS: frozenset[str] = frozenset()  # e.g. {"stake_share_rounding"} while it was open

PROPORTIONS = replay.PROPORTION_KEYS
AMOUNTS = replay.AMOUNT_KEYS
BOOLS = replay.BOOL_KEYS
FOUND_DIR = CHAIN_DATA / "found"


def amount_tolerance(emission: int) -> int:
  """Rao tolerance for one amount at epoch emission E.

  The chain floors an I96F32 product of E with an I32F32 share, and the share itself carries the
  truncations of the I32F32 epoch (SPEC 1.14: about 1e-9 relative), so an amount is only fixed to
  a few times E * 2**-32 rao: 0.2 rao at E = 1e9 (FORMAT.md's 2 rao), 230 rao at E = 1e12. Two
  float64 replays agree far closer than that; the tolerance is 2 rao + E * 2**-30.
  """
  return 2 + emission // (1 << 30)


def features(doc: dict, outs: list[dict]) -> set[str]:
  """The known-fault kinds a scenario exercises, judged from the document and the oracle's run."""
  h = doc.get("hyperparameters", {})
  found = set()
  reasons = {r for out in outs[-1:] for _, r in out["rejected"]}
  if "no uid available" in reasons:
    found.add("no_neuron_id_available")
  mwl = h.get("max_weights_limit", 65535)
  for ev in doc["events"]:
    body = ev.get("set_weights") or ev.get("commit_weights")
    if body is None:
      continue
    if body["uids"] == [body["uid"]] and mwl != 65535:
      found.add("self_weight_max_limit")
    if not body["uids"]:
      found.add("empty_set_weights")
    if "commit_weights" in ev:
      found.add("commit_reveal")
  emissions = [ev["epoch"]["emission"] for ev in doc["events"] if "epoch" in ev]
  if any(e >= 1 and e in out["emission"] for out, e in zip(outs, emissions)):
    found.add("exact_sole_share")       # one uid gets all of E: a share exactly 1 in fixed point
  if any(out["share_rounding"] for out in outs):
    found.add("stake_share_rounding")
  if h.get("bonds_moving_average") == 1_000_000:
    found.add("alpha_zero_exact")
  if h.get("tempo", 1) == 0 or h.get("tempo", 1) > 50400:
    found.add("storage_ranges")
  if "commit_reveal_weights_enabled" in h or "reveal_period_epochs" in h:
    found.add("commit_reveal")
  return found


def mismatches(jax_outs: list[dict], oracle_outs: list[dict], emissions: list[int]) -> list:
  """(epoch, key, worst error, tolerance) for every key that differs beyond its tolerance."""
  bad = []
  if len(jax_outs) != len(oracle_outs):
    return [(-1, "epochs", abs(len(jax_outs) - len(oracle_outs)), 0)]
  for k, (got, want, e) in enumerate(zip(jax_outs, oracle_outs, emissions)):
    for key in PROPORTIONS + AMOUNTS + BOOLS + ("bonds",):
      g, w = np.asarray(got[key]), np.asarray(want[key])
      if g.shape != w.shape:
        bad.append((k, key, math.inf, 0))
        continue
      if key in BOOLS:
        err, tol = float(np.sum(g.astype(bool) != w.astype(bool))), 0
      elif key in AMOUNTS:
        # The exact ends (nothing, or all of E) must be exact in fixed point too: 2 rao there.
        tol_N = np.where((w == 0) | (w == e), 2, amount_tolerance(e))
        over = np.abs(g - w) > tol_N
        err = float(np.max(np.abs(g - w), initial=0))
        tol = int(np.min(tol_N[over])) if over.any() else err
      else:
        tol = 1 if key == "bonds" else 1e-6
        err = float(np.max(np.abs(g.astype(float) - w.astype(float)), initial=0))
      if not err <= tol:
        bad.append((k, key, err, tol))
  return bad


def replay_both(doc: dict):
  """(JAX outputs, oracle outputs): the oracle continues from the JAX stored bonds when they
  agree within 1 LSB, so a floor-boundary difference is judged once, not compounded."""
  jax_outs = [replay.public(r) for r in replay.run(replay.validate(doc), warn=lambda m: None)]

  def sync(k, bonds):
    if k < len(jax_outs):
      jb = np.asarray(jax_outs[k]["bonds"])
      if jb.shape == np.shape(bonds) and np.max(np.abs(jb - bonds), initial=0) <= 1:
        return jb
    return bonds

  return jax_outs, oracle.run(doc, sync_bonds=sync)


def with_expectations(doc: dict, oracle_outs: list[dict]) -> dict:
  """The scenario with every key of the oracle's epochs as `expect` (FORMAT.md)."""
  doc = json.loads(json.dumps(doc))
  outs = iter(oracle_outs)
  for ev in doc["events"]:
    if "epoch" in ev:
      out = next(outs)
      expect = {k: out[k] for k in PROPORTIONS + AMOUNTS + BOOLS}
      expect["bonds"] = {str(i): {str(j): v for j, v in enumerate(row)}
                         for i, row in enumerate(out["bonds"])}
      ev["epoch"]["expect"] = expect
      e = ev["epoch"]["emission"]
      # Wide where some amount is inside (0, E); 2 rao where every amount is an exact end.
      tol = {k: amount_tolerance(e) for k in AMOUNTS if any(0 < x < e for x in out[k])}
      if any(v > 2 for v in tol.values()):
        ev["epoch"]["tolerance"] = {k: v for k, v in tol.items() if v > 2}
  return doc


def _write_failure(doc: dict, oracle_outs: list[dict], bad: list) -> pathlib.Path:
  folder = pathlib.Path(os.environ.get("DIFFERENTIAL_FOUND_DIR") or
                        pathlib.Path(tempfile.gettempdir()) / "differential_found")
  folder.mkdir(parents=True, exist_ok=True)
  full = with_expectations(doc, oracle_outs)
  digest = hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:10]
  full["name"] = f"found_{digest}"
  full["source"] = (f"differential_test: replay vs oracle disagree at {bad[:4]}; expectations "
                    "are the oracle's (tests/oracle.py, from SPEC.md)")
  path = folder / f"found_{digest}.json"
  path.write_text(json.dumps(full, indent=1))
  return path


def _capacities() -> tuple:
  return (ss.CAPACITIES + (5, 7, 12, 32) if settings.get_current_profile_name() == "long"
          else ss.CAPACITIES)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(doc=ss.scenarios(exclude=KNOWN_FAULTS, capacities=_capacities()))
def test_replay_matches_oracle(doc):
  oracle_outs = oracle.run(doc)
  if features(doc, oracle_outs) & KNOWN_FAULTS:
    reject()
  if os.environ.get("DIFFERENTIAL_PROGRESS"):     # one line per compared example (long runs)
    with open(os.environ["DIFFERENTIAL_PROGRESS"], "a", encoding="utf-8") as f:
      f.write(f"{len(doc['neurons'])} {len(doc['events'])}\n")
  jax_outs, oracle_outs = replay_both(doc)
  emissions = [ev["epoch"]["emission"] for ev in doc["events"] if "epoch" in ev]
  bad = mismatches(jax_outs, oracle_outs, emissions)
  if bad:
    path = _write_failure(doc, oracle_outs, bad)
    raise AssertionError(f"replay and oracle disagree: {bad[:6]}\n  scenario: {path}")


FOUND = sorted(FOUND_DIR.glob("*.json"))


def _kind(path: pathlib.Path) -> str:
  """The fault kind a found/ file stands for: the KNOWN_FAULTS entry its name starts with."""
  return next((k for k in KNOWN_FAULTS if path.stem.startswith(k)), path.stem)


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_found_file(path, request):
  """Each minimized disagreement: the replay must match the oracle's expectations (FORMAT.md)."""
  doc = json.loads(path.read_text())
  if _kind(path) in KNOWN_FAULTS:
    request.applymarker(pytest.mark.xfail(reason=f"known chain fault: {_kind(path)}",
                                          strict=True))
  epochs = [ev["epoch"] for ev in doc["events"] if "epoch" in ev]
  results = list(replay.run(replay.validate(doc), warn=lambda m: None))
  assert len(results) == len(epochs)
  for res in results:
    replay.check(res)


def test_amount_tolerance_scales_with_emission():
  assert amount_tolerance(10**9) == 2
  assert 2 + 10**12 * 2**-32 < amount_tolerance(10**12) < 10**12 * 1e-8
