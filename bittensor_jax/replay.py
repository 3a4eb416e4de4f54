r"""Replays scenario files (docs/scenario_format.md) on the simulator's own chain functions.

  python -m bittensor_jax.replay FILE [FILE ...]            # one JSON line per epoch
  python -m bittensor_jax.replay --check FILE [FILE ...]    # also compare with `expect`
  python -m bittensor_jax.replay --check --summary FILE ... # and the max error per key

Proportions are computed in float64 (the replay turns on `jax_enable_x64`). Every file is
replayed, whatever happens to the others:
  - a malformed file (not JSON, an unknown or misspelt key, a value the chain cannot hold) is
    reported on one line `error: PATH: field: message` on stderr;
  - under --check, the first expectation of a file that is off by more than its tolerance is
    reported as `mismatch: PATH: ...`, naming the epoch, the key and both values.
With --check a last line on stderr counts the files (`11 scenarios ok`, or
`13 scenarios: 11 ok, 1 mismatched, 1 bad`).

Exit status: 2 if any file was bad, else 1 if any mismatched, else 0 (a bad file is the more
serious fault: its expectations could not even be checked).
"""
from __future__ import annotations

import json
import math
import pathlib
import re
import reprlib
import sys
from typing import Any, Iterator, TextIO

import numpy as np
from absl import flags

PROPORTION_KEYS = ("stake", "active_stake", "consensus", "validator_trust", "incentive",
                   "dividends")
AMOUNT_KEYS = ("server_emission", "validator_emission", "emission")
BOOL_KEYS = ("active", "validator_permit")
EXPECT_KEYS = PROPORTION_KEYS + AMOUNT_KEYS + BOOL_KEYS + ("bonds",)
DEFAULT_TOLERANCE = {**{k: 1e-6 for k in PROPORTION_KEYS}, **{k: 2 for k in AMOUNT_KEYS},
                     "bonds": 1}
TOP_KEYS = ("name", "source", "hyperparameters", "neurons", "events")
NEURON_KEYS = ("hotkey", "stake", "registered_at", "last_update", "validator_permit")
# Event kind -> the keys its body may have.
EVENT_KEYS = {
    "set_weights": ("uid", "uids", "values"),
    "register": ("hotkey", "stake"),
    "add_stake": ("uid", "amount"),
    "reset_bonds": ("uid",),
    "epoch": ("emission", "expect", "tolerance"),
    "commit_weights": ("uid", "uids", "values"),
}
EVENT_KINDS = tuple(EVENT_KEYS)
# Largest subnet a scenario may declare: the ledger is dense (N x N), so this bounds memory;
# the chain's own MaxAllowedUids is a u16.
MAX_UIDS = 4096
# Hyperparameters of docs/scenario_format.md that are not `ledger.Hyper` fields: name -> check.
_EXTRA_HYPER = {
    "max_allowed_uids": None,  # the capacity, checked against the neurons below
}
_UID_KEY = re.compile(r"[0-9]{1,5}")


class ScenarioError(ValueError):
  """A malformed scenario file; the message starts with the field's path."""


class CheckFailure(AssertionError):
  """An epoch output that does not match the scenario's expectation."""


def _need(cond: bool, where: str, msg: str) -> None:
  if not cond:
    raise ScenarioError(f"{where}: {msg}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 4, 4
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 40


def _show(x: Any) -> str:
  """A short one-line repr of a value for an error message (any nesting depth)."""
  return _REPR.repr(x)


def _is_num(x) -> bool:
  """A finite JSON number (an integer too large for a float is not one)."""
  if isinstance(x, bool):
    return False
  if isinstance(x, int):
    return -sys.float_info.max <= x <= sys.float_info.max  # exact, no float conversion
  return isinstance(x, float) and math.isfinite(x)


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _key(key: str) -> str:
  """A key as it appears in a field path: plain if it is a simple name, else JSON-quoted."""
  return key if re.fullmatch(r"[A-Za-z0-9_]+", key) else json.dumps(key)


def _known_keys(obj: dict, allowed, where: str) -> None:
  for key in obj:
    _need(key in allowed, f"{where}.{_key(key)}" if where else _key(key),
          f"unknown key; known: {', '.join(allowed)}")


def _check_int(x, where: str, lo: int, hi: int, what: str) -> None:
  _need(_is_int(x) and lo <= x <= hi, where, f"must be {what} in [{lo}, {hi}], got {_show(x)}")


def _check_stake(x, where: str) -> None:
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  _need(_is_num(x) and 0 <= x <= ledger.U64_MAX, where,
        f"must be a finite number in [0, {ledger.U64_MAX}] (the chain holds stake as u64), got "
        f"{_show(x)}")


def _check_hyperparameters(hyper: Any, n_neurons: int) -> int:
  """Checks the `hyperparameters` object; returns the capacity (max_allowed_uids)."""
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  _need(isinstance(hyper, dict), "hyperparameters", "must be an object")
  known = (*ledger.HYPER_SPEC, *(k for k in _EXTRA_HYPER if k not in ledger.HYPER_SPEC))
  _known_keys(hyper, known, "hyperparameters")
  for key, ok in _EXTRA_HYPER.items():
    if key in hyper and ok is not None and key not in ledger.HYPER_SPEC:
      _need(ok(hyper[key]), f"hyperparameters.{key}", f"bad value {_show(hyper[key])}")
  try:
    ledger.check_hyper(**{k: v for k, v in hyper.items() if k in ledger.HYPER_SPEC})
  except ledger.HyperError as e:
    raise ScenarioError(f"hyperparameters.{e.name}: {e.reason}") from e
  cap = hyper.get("max_allowed_uids", n_neurons)
  _check_int(cap, "hyperparameters.max_allowed_uids", max(n_neurons, 1), MAX_UIDS,
             "an integer (at least the number of neurons)")
  return cap


def _check_expect(expect: Any, where: str, cap: int) -> None:
  _need(isinstance(expect, dict), where, "must be an object")
  _known_keys(expect, EXPECT_KEYS, where)
  for key, want in expect.items():
    w = f"{where}.{key}"
    if key == "bonds":
      _need(isinstance(want, dict), w, 'must map "row uid" to {"col uid": u16}')
      for r, cols in want.items():
        _need(bool(_UID_KEY.fullmatch(r)) and int(r) < cap, f"{w}.{_key(r)}",
              f"row must be a uid in [0, {cap})")
        _need(isinstance(cols, dict), f"{w}.{r}", 'must map "col uid" to a u16')
        for c, v in cols.items():
          _need(bool(_UID_KEY.fullmatch(c)) and int(c) < cap, f"{w}.{r}.{_key(c)}",
                f"column must be a uid in [0, {cap})")
          _need(_is_num(v), f"{w}.{r}.{c}", f"must be a number, got {_show(v)}")
    elif key in BOOL_KEYS:
      _need(isinstance(want, list) and all(isinstance(x, bool) for x in want), w,
            "must be a list of true/false")
    else:
      _need(isinstance(want, list) and all(_is_num(x) for x in want), w,
            "must be a list of finite numbers")


def validate(doc: Any) -> dict:
  """Checks a parsed scenario against docs/scenario_format.md, before anything is computed.

  Every numeric field must be a value the chain (and the int64 ledger) can hold: stakes and
  amounts finite and in [0, 2^64 - 1], blocks integers in [0, ledger.MAX_BLOCK], the epoch
  emission in [0, 2^63 - 1] rao, weights u16, each hyperparameter within its storage type
  (`ledger.HYPER_SPEC`). Unknown keys anywhere are errors.

  Returns:
    `doc`, unchanged.

  Raises:
    ScenarioError naming the first bad field by its path (e.g. `events[3].set_weights.values`).
  """
  from bittensor_jax.chain import ledger  # pylint: disable=import-outside-toplevel
  _need(isinstance(doc, dict), "scenario", "top level must be a JSON object")
  _known_keys(doc, TOP_KEYS, "")
  for key in ("name", "neurons", "events"):
    _need(key in doc, key, "missing")
  _need(isinstance(doc["name"], str), "name", "must be a string")
  _need(isinstance(doc.get("source", ""), str), "source", "must be a string")
  neurons = doc["neurons"]
  _need(isinstance(neurons, list) and neurons, "neurons", "must be a non-empty list")
  for i, nrn in enumerate(neurons):
    w = f"neurons[{i}]"
    _need(isinstance(nrn, dict), w, "must be an object")
    _known_keys(nrn, NEURON_KEYS, w)
    for key in ("stake", "registered_at", "last_update"):
      _need(key in nrn, f"{w}.{key}", "missing")
    _check_stake(nrn["stake"], f"{w}.stake")
    for key in ("registered_at", "last_update"):
      _check_int(nrn[key], f"{w}.{key}", 0, ledger.MAX_BLOCK, "an integer block")
    _need(isinstance(nrn.get("validator_permit", False), bool), f"{w}.validator_permit",
          "must be true or false")
    _need(isinstance(nrn.get("hotkey", ""), str), f"{w}.hotkey", "must be a string")
  cap = _check_hyperparameters(doc.get("hyperparameters", {}), len(neurons))
  events = doc["events"]
  _need(isinstance(events, list), "events", "must be a list")
  last_block = 0
  for k, ev in enumerate(events):
    w = f"events[{k}]"
    _need(isinstance(ev, dict), w, "must be an object")
    _check_int(ev.get("block"), f"{w}.block", 0, ledger.MAX_BLOCK, "an integer block")
    _need(ev["block"] >= last_block, f"{w}.block", f"blocks never go down ({ev['block']} after "
          f"{last_block})")
    last_block = ev["block"]
    kinds = [x for x in ev if x != "block"]
    _need(len(kinds) == 1 and kinds[0] in EVENT_KINDS, w,
          f"must have a block and exactly one of {', '.join(EVENT_KINDS)}; got "
          f"{_show(kinds)}")
    kind, body = kinds[0], ev[kinds[0]]
    w = f"{w}.{kind}"
    _need(isinstance(body, dict), w, "must be an object")
    _known_keys(body, EVENT_KEYS[kind], w)
    if kind in ("set_weights", "commit_weights"):
      for key in ("uid", "uids", "values"):
        _need(key in body, f"{w}.{key}", "missing")
      _check_int(body["uid"], f"{w}.uid", 0, cap - 1, "a uid")
      _need(isinstance(body["uids"], list) and all(
          _is_int(u) and 0 <= u <= ledger.U16_MAX for u in body["uids"]), f"{w}.uids",
            "must be a list of uids (u16 integers)")
      _need(isinstance(body["values"], list) and all(
          _is_int(v) and 0 <= v <= ledger.U16_MAX for v in body["values"]), f"{w}.values",
            "must be a list of u16 integers")
      _need(len(body["uids"]) == len(body["values"]), w, "uids and values differ in length")
    elif kind == "register":
      _check_stake(body.get("stake", 0), f"{w}.stake")
      _need(isinstance(body.get("hotkey", ""), str), f"{w}.hotkey", "must be a string")
    elif kind in ("add_stake", "reset_bonds"):
      _need("uid" in body, f"{w}.uid", "missing")
      _check_int(body["uid"], f"{w}.uid", 0, cap - 1, "a uid")
      if kind == "add_stake":
        _need("amount" in body, f"{w}.amount", "missing")
        _check_stake(body["amount"], f"{w}.amount")
    elif kind == "epoch":
      _need("emission" in body, f"{w}.emission", "missing")
      _check_int(body["emission"], f"{w}.emission", 0, ledger.MAX_RAO,
                 "an integer amount of rao (int64)")
      _check_expect(body.get("expect", {}), f"{w}.expect", cap)
      tol = body.get("tolerance", {})
      _need(isinstance(tol, dict), f"{w}.tolerance", "must be an object")
      _known_keys(tol, EXPECT_KEYS, f"{w}.tolerance")
      for key, v in tol.items():
        _need(_is_num(v) and v >= 0, f"{w}.tolerance.{key}",
              f"must be a finite nonnegative number, got {_show(v)}")
  return doc


def load(path: str | pathlib.Path) -> dict:
  """Reads and validates one scenario file; ScenarioError says what is wrong with it."""
  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except OSError as e:
    raise ScenarioError(f"cannot read: {e.strerror or e}") from e
  except UnicodeDecodeError as e:
    raise ScenarioError(f"not UTF-8 text: {e.reason} at byte {e.start}") from e
  except json.JSONDecodeError as e:
    raise ScenarioError(f"not valid JSON: {e}") from e
  except (RecursionError, ValueError) as e:  # nesting too deep; an integer too long to parse
    raise ScenarioError(f"not valid JSON: {type(e).__name__}: {str(e).splitlines()[0]}") from e
  return validate(doc)


def _outputs(out, n: int) -> dict:
  row = lambda x: np.asarray(x)[:n].tolist()
  return {
      "stake": row(out.stake_N), "active": row(out.active_N),
      "active_stake": row(out.active_stake_N), "validator_permit": row(out.validator_permit_N),
      "consensus": row(out.consensus_N), "validator_trust": row(out.validator_trust_N),
      "incentive": row(out.incentive_N), "dividends": row(out.dividends_N),
      "server_emission": row(out.server_emission_N),
      "validator_emission": row(out.validator_emission_N), "emission": row(out.emission_N),
      "bonds": np.asarray(out.bonds_NxN)[:n, :n].tolist()}


def run(doc: dict, *, warn=None) -> Iterator[dict]:
  """Plays a validated scenario; yields one output dict per epoch (docs/scenario_format.md keys).

  Each yielded dict also carries `_expect`, `_tolerance` and `_event` for `check`. Calls the
  chain rejects (set_weights checks, a registration with no uid to replace) go to `warn`.

  Raises:
    ScenarioError for an event that cannot be played (e.g. add_stake to an unregistered uid, or
    a stake that would exceed u64 max).
  """
  from bittensor_jax import chain  # pylint: disable=import-outside-toplevel
  from bittensor_jax.chain import commit_reveal, ledger, registration, yuma  # after x64 is set
  hyper_in = doc.get("hyperparameters", {})
  try:
    hyper = ledger.Hyper.create(**{k: v for k, v in hyper_in.items() if k in ledger.HYPER_SPEC})
  except ledger.HyperError as e:
    raise ScenarioError(f"hyperparameters.{e.name}: {e.reason}") from e
  warn = warn or (lambda msg: print(msg, file=sys.stderr))
  neurons = doc["neurons"]
  cap = hyper_in.get("max_allowed_uids", len(neurons))
  try:
    sub = ledger.subnet_from_neurons(
        [nrn["stake"] for nrn in neurons], [nrn["registered_at"] for nrn in neurons],
        [nrn["last_update"] for nrn in neurons],
        [nrn.get("validator_permit", False) for nrn in neurons], capacity=cap, hyper=hyper)
  except ValueError as e:
    raise ScenarioError(f"neurons: {e}") from e
  hotkeys = [nrn.get("hotkey", f"uid{i}") for i, nrn in enumerate(neurons)]
  for k, ev in enumerate(doc["events"]):
    block = ev["block"]
    sub = sub.replace(block=np.int64(block))
    kind = next(x for x in ev if x != "block")
    body = ev[kind]
    w = f"events[{k}].{kind}"
    if kind in ("set_weights", "commit_weights"):
      fn = chain.set_weights if kind == "set_weights" else chain.commit_weights
      try:
        sub, reason = fn(sub, body["uid"], body["uids"], body["values"])
      except ValueError as e:
        raise ScenarioError(f"{w}: {e}") from e
      if reason:
        warn(f"{doc['name']}: events[{k}] {kind} by uid {body['uid']} rejected: {reason}")
    elif kind == "register":
      sub, uid, _ = registration.register(sub, np.float64(body.get("stake", 0)))
      uid = int(uid)
      if uid < 0:
        warn(f"{doc['name']}: events[{k}] register rejected: no uid available "
             "(NoNeuronIdAvailable)")
      elif uid < len(hotkeys):
        hotkeys[uid] = body.get("hotkey", f"uid{uid}")
      else:
        hotkeys.append(body.get("hotkey", f"uid{uid}"))
    elif kind == "add_stake":
      uid = body["uid"]
      _need(uid < len(hotkeys), f"{w}.uid", f"{uid} is not registered")
      after = float(sub.stake_N[uid]) + body["amount"]
      _need(after <= ledger.MAX_STAKE, f"{w}.amount",
            f"the stake after adding ({after:.6g}) exceeds u64 max ({ledger.U64_MAX})")
      sub = chain.add_stake(sub, uid, body["amount"])
    elif kind == "reset_bonds":
      sub, reason = chain.reset_bonds(sub, body["uid"])
      if reason:
        warn(f"{doc['name']}: events[{k}] reset_bonds rejected: {reason}")
    elif kind == "epoch":
      sub = commit_reveal.reveal_due(sub)  # due commits become weights first (commit-reveal)
      sub, out = yuma.epoch(sub, np.int64(body["emission"]))
      res = {"scenario": doc["name"], "block": block, **_outputs(out, int(sub.n))}
      res["_expect"] = body.get("expect", {})
      res["_tolerance"] = body.get("tolerance", {})
      res["_event"] = k
      yield res


def max_errors(res: dict) -> dict[str, float]:
  """Max absolute error per expected key (bonds only on the listed entries; inf when the
  expectation does not fit the output, e.g. a list of another length or a uid beyond n)."""
  errs = {}
  for key, want in res["_expect"].items():
    got = res[key]
    if key == "bonds":
      n = len(got)
      diffs = [abs(got[int(r)][int(c)] - v) if int(r) < n and int(c) < n else math.inf
               for r, cols in want.items() for c, v in cols.items()]
      errs[key] = float(max(diffs, default=0))
    elif key in BOOL_KEYS:
      errs[key] = float(sum(bool(g) != bool(w) for g, w in zip(got, want)) +
                        abs(len(got) - len(want)))
    else:
      errs[key] = (float(np.max(np.abs(np.asarray(got[:len(want)], float) -
                                       np.asarray(want, float)), initial=0))
                   if len(got) == len(want) else math.inf)
  return errs


def check(res: dict) -> None:
  """Raises CheckFailure on the first expected key that is off by more than its tolerance."""
  errs = max_errors(res)
  for key, err in errs.items():
    tol = 0 if key in BOOL_KEYS else res["_tolerance"].get(key, DEFAULT_TOLERANCE[key])
    if not err <= tol:
      raise CheckFailure(
          f"{res['scenario']}: epoch at block {res['block']} (events[{res['_event']}]): {key} "
          f"differs by {err:g} > tolerance {tol:g}\n  expected: {res['_expect'][key]}\n"
          f"  got:      {res[key]}")


def public(res: dict) -> dict:
  return {k: v for k, v in res.items() if not k.startswith("_")}


def replay_files(paths: list[str], *, check_expect: bool = False, summary: bool = False,
                 out: TextIO | None = None, err: TextIO | None = None) -> int:
  """Replays every file, reporting each bad or mismatched one; returns the exit status.

  Args:
    paths: scenario files.
    check_expect: compare each epoch with its `expect` (stop that file at its first mismatch)
      and end with a one-line count of ok, mismatched and bad files.
    summary: print the max error per scenario and expected key.
    out, err: streams for the JSON lines and for the reports (default stdout, stderr).

  Returns:
    2 if any file was bad, else 1 if any mismatched, else 0.
  """
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_enable_x64", True)
  out = out or sys.stdout
  err = err or sys.stderr
  bad = mismatched = 0
  for path in paths:
    try:
      doc = load(path)
      worst: dict[str, float] = {}
      for res in run(doc, warn=lambda msg: print(msg, file=err)):
        print(json.dumps(public(res), allow_nan=False), file=out, flush=True)
        if check_expect:
          check(res)
        for key, e in max_errors(res).items():
          worst[key] = max(worst.get(key, 0.0), e)
      if summary:
        print(f"{doc['name']}: {'ok; ' if check_expect else ''}max error " +
              (", ".join(f"{k}={v:.3g}" for k, v in sorted(worst.items())) or "(no expectations)"),
              file=err)
    except ScenarioError as e:
      bad += 1
      print(f"error: {path}: {e}", file=err)
    except CheckFailure as e:
      mismatched += 1
      print(f"mismatch: {path}: {e}", file=err)
  if check_expect:
    n = len(paths)
    noun = "scenario" if n == 1 else "scenarios"
    if bad or mismatched:
      print(f"{n} {noun}: {n - bad - mismatched} ok, {mismatched} mismatched, {bad} bad",
            file=err)
    else:
      print(f"{n} {noun} ok", file=err)
  return 2 if bad else 1 if mismatched else 0


_FLAGS = flags.FlagValues()  # the module's own flags: importing it adds nothing to absl's FLAGS
flags.DEFINE_bool("check", False, "Compare each epoch with its `expect`; report the first "
                  "mismatch of each file and end with a count of ok, mismatched and bad files.",
                  flag_values=_FLAGS)
flags.DEFINE_bool("summary", False, "Print the max error per scenario and expected key to stderr.",
                  flag_values=_FLAGS)
_HELP_ARGS = ("-h", "-help", "--help", "-?", "--helpshort", "--helpfull")


def usage() -> str:
  return (f"{__doc__}\nUsage: python -m bittensor_jax.replay [--check] [--summary] FILE "
          f"[FILE ...]\n\nFlags:\n{_FLAGS.get_help(include_special_flags=False)}\n")


def main(argv: list[str] | None = None) -> int:
  """The command line: argv as in sys.argv (program name, then flags and FILE arguments).

  Returns:
    The exit status: 0 all ok, 1 a mismatch under --check, 2 a bad file or bad usage.
  """
  argv = list(sys.argv if argv is None else argv)
  if any(a in _HELP_ARGS for a in argv[1:]):
    print(usage())
    return 0
  _FLAGS.unparse_flags()
  try:
    files = _FLAGS(argv)[1:]
  except flags.Error as e:
    print(f"error: {e}\nUsage: python -m bittensor_jax.replay [--check] [--summary] FILE "
          "[FILE ...] (--help for more)", file=sys.stderr)
    return 2
  if not files:
    print("error: give one or more scenario files (--help for more)", file=sys.stderr)
    return 2
  return replay_files(files, check_expect=_FLAGS.check, summary=_FLAGS.summary)


if __name__ == "__main__":
  sys.exit(main())
