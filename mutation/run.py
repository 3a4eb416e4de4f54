"""Mutation run over the chain's rules with cosmic-ray; writes mutation/last_run.md (`make mutation`).

For each module config (mutation/<module>.toml, cosmic-ray's format plus a [cosmic-ray.scope]
table) it copies the work tree to a scratch folder (cosmic-ray edits the module in place), makes
cosmic-ray's session, keeps only the mutants inside the scope (named functions, or sections between
two marker lines) and of the operators in mutation/operators.toml, checks that the tests pass
unmutated, runs every mutant under the config's test command and timeout (a timeout counts as
killed, as in cosmic-ray), then applies the hand-written mutants of mutation/hand_mutants.toml
(faults cosmic-ray's operators cannot make, such as floor -> round). A surviving mutant listed in
mutation/equivalent.toml (matched by its original and mutated source line) counts as equivalent,
with the reason written there.

Usage:
  python mutation/run.py [--modules registration,kernels] [--label after] [--report PATH]
                         [--json PATH] [--tests before|after] [--no-hand]
Exit status: 0 when no non-equivalent mutant survives, 1 otherwise, 2 on a setup error.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
try:
  import tomllib
except ImportError:  # Python 3.10
  import tomli as tomllib

import toml  # cosmic-ray's own dependency, to write its config

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
MODULES = ("registration", "kernels", "yuma", "extrinsics")


def _load(path: pathlib.Path) -> dict:
  return tomllib.loads(path.read_text())


def copy_tree(dst: pathlib.Path) -> None:
  """Copies the tracked and untracked-but-not-ignored files of the work tree to `dst`."""
  files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                         check=True, capture_output=True).stdout.decode().split("\0")
  for rel in filter(None, files):
    src = ROOT / rel
    if src.is_file():
      (dst / rel).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(src, dst / rel)


def scope_lines(source: str, scope: dict) -> set[int]:
  """1-based line numbers inside the scope's functions and sections."""
  lines: set[int] = set()
  names = set(scope.get("functions", []))
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names:
      lines.update(range(node.lineno, node.end_lineno + 1))
      names.discard(node.name)
  if names:
    raise SystemExit(f"mutation scope: no function named {sorted(names)}")
  text = source.splitlines()
  for start, end in scope.get("sections", []):
    try:
      i = next(k for k, t in enumerate(text) if t.strip().startswith(start))
    except StopIteration:
      raise SystemExit(f"mutation scope: no line starts with {start!r}") from None
    j = next((k for k in range(i + 1, len(text)) if end and text[k].strip().startswith(end)),
             None)
    if j is None:
      raise SystemExit(f"mutation scope: no line after {start!r} starts with {end!r}")
    lines.update(range(i + 1, j + 1))
  return lines


def changed_lines(diff: str) -> tuple[str, str]:
  """(original, mutated) source lines of a cosmic-ray diff, each stripped and joined by ' / '."""
  old = [l[1:].strip() for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
  new = [l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
  return " / ".join(old), " / ".join(new)


def test_env(work: pathlib.Path) -> dict:
  """The tests import the scratch copy; JAX's compilation cache (in the copy) spares recompiling
  the functions a mutant does not touch."""
  return {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1",
          "JAX_COMPILATION_CACHE_DIR": str(work / ".jax_cache"),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def run_tests(command: str, cwd: pathlib.Path, timeout: float) -> tuple[str, float]:
  """'passed', 'failed' or 'timeout' for one run of the test command, and its seconds."""
  t0 = time.time()
  try:
    proc = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, timeout=timeout,
                          env=test_env(cwd),
                          check=False)
  except subprocess.TimeoutExpired:
    return "timeout", time.time() - t0
  return ("passed" if proc.returncode == 0 else "failed"), time.time() - t0


def session_rows(session: pathlib.Path) -> list[dict]:
  """One row per mutant run so far in a cosmic-ray session (the skipped ones left out)."""
  from cosmic_ray.work_db import WorkDB, use_db  # pylint: disable=import-outside-toplevel
  from cosmic_ray.work_item import WorkerOutcome  # pylint: disable=import-outside-toplevel
  rows = []
  with use_db(str(session), WorkDB.Mode.open) as db:
    for item, result in db.completed_work_items:
      if result.worker_outcome == WorkerOutcome.SKIPPED:
        continue
      m = item.mutations[0]
      old, new = changed_lines(result.diff or "")
      if result.worker_outcome != WorkerOutcome.NORMAL:
        outcome = "incompetent"
      else:
        outcome = "killed" if result.is_killed else "survived"  # a timeout counts as killed
      rows.append({"line": m.start_pos[0], "operator": m.operator_name.split("/")[-1],
                   "occurrence": m.occurrence, "old": old, "new": new, "outcome": outcome})
  return rows


def run_module(name: str, work: pathlib.Path, equivalents: list[dict], keep: list[re.Pattern],
               hand: list[dict], tests: str, count_only: bool = False,
               hand_only: bool = False, timeout: float | None = None) -> dict:
  cfg = tomllib.loads((HERE / f"{name}.toml").read_text().replace("{python}", sys.executable))
  cfg = cfg["cosmic-ray"]
  if tests == "before":
    cfg["test-command"] = cfg["scope"]["before-command"]
  if timeout:
    cfg["timeout"] = timeout
  module = work / cfg["module-path"]
  source = module.read_text()
  lines = scope_lines(source, cfg.get("scope", {}))
  cfg_path = work / f"mutation-{name}.toml"
  cfg_path.write_text(toml.dumps({"cosmic-ray": cfg}))
  session = work / f"mutation-{name}.sqlite"
  env = test_env(work)
  cr = [sys.executable, "-m", "cosmic_ray.cli"]

  stale = [h["name"] for h in hand if h["module"] == module.stem and source.count(h["old"]) != 1]
  if stale:  # checked before any test runs: found only after the cosmic-ray pass, it cost the run
    raise SystemExit(f"hand mutants {stale}: `old` does not occur exactly once in "
                     f"{cfg['module-path']} (mutation/hand_mutants.toml)")
  status, secs = ("passed", 0) if count_only else run_tests(cfg["test-command"], work,
                                                           cfg["timeout"])
  if status != "passed":
    raise SystemExit(f"{name}: the tests do not pass unmutated ({status}): {cfg['test-command']}")
  print(f"[{name}] baseline passed in {secs:.0f} s", flush=True)
  from cosmic_ray.work_db import WorkDB, use_db  # pylint: disable=import-outside-toplevel
  from cosmic_ray.work_item import WorkerOutcome, WorkResult  # pylint: disable=import-outside-toplevel
  rows = []
  if hand_only:
    return _hand(name, cfg, work, module, source, hand, rows, equivalents)

  subprocess.run([*cr, "init", str(cfg_path), str(session)], cwd=work, env=env, check=True)
  with use_db(str(session), WorkDB.Mode.open) as db:
    n_in = 0
    for item in list(db.pending_work_items):
      m = item.mutations[0]
      inside = m.start_pos[0] in lines and any(k.fullmatch(m.operator_name) for k in keep)
      if inside:
        n_in += 1
      else:
        db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                              output="outside the scope"))
  print(f"[{name}] {n_in} mutants in scope", flush=True)
  if count_only:
    return {"module": name, "mutants": n_in}
  t0 = time.time()
  subprocess.run([*cr, "exec", str(cfg_path), str(session)], cwd=work, env=env, check=True)
  print(f"[{name}] cosmic-ray exec {time.time() - t0:.0f} s", flush=True)

  rows = session_rows(session)
  assert module.read_text() == source, f"{module} was left mutated"
  return _hand(name, cfg, work, module, source, hand, rows, equivalents)


def _hand(name, cfg, work, module, source, hand, rows, equivalents) -> dict:
  """Runs the hand-written mutants of this module, then classifies and counts every row."""
  stem = pathlib.Path(cfg["module-path"]).stem
  for h in hand:
    if h["module"] != stem:
      continue
    if source.count(h["old"]) != 1:
      raise SystemExit(f"hand mutant {h['name']!r}: {h['old']!r} occurs "
                       f"{source.count(h['old'])} times in {cfg['module-path']}")
    module.write_text(source.replace(h["old"], h["new"]))
    try:
      status, _ = run_tests(cfg["test-command"], work, cfg["timeout"])
    finally:
      module.write_text(source)
    line = source[:source.index(h["old"])].count("\n") + 1
    rows.append({"line": line, "operator": f"hand: {h['name']}", "occurrence": 0,
                 "old": h["old"].strip(), "new": h["new"].strip(),
                 "outcome": {"passed": "survived", "failed": "killed"}.get(status, "timeout")})
  for r in rows:
    if r["outcome"] == "survived":
      eq = next((e for e in equivalents if e["module"] == stem and e["line"] == r["old"]
                 and e["mutant"] == r["new"]), None)
      if eq:
        r["outcome"], r["why"] = "equivalent", eq["why"]
  rows.sort(key=lambda r: (r["line"], r["operator"], r["occurrence"]))
  count = lambda o: sum(r["outcome"] == o for r in rows)
  return {"module": name, "path": cfg["module-path"], "test_command": cfg["test-command"].replace(
      sys.executable, "python"), "mutants": len(rows), "killed": count("killed"),
          "equivalent": count("equivalent"), "survived": count("survived"),
          "incompetent": count("incompetent") + count("timeout"), "rows": rows}


def rescore(result: dict, equivalents: list[dict]) -> dict:
  """Reapplies mutation/equivalent.toml to the rows of a saved run (--json) and recounts."""
  stem = pathlib.Path(result["path"]).stem
  for r in result["rows"]:
    if r["outcome"] in ("survived", "equivalent"):
      eq = next((e for e in equivalents if e["module"] == stem and e["line"] == r["old"]
                 and e["mutant"] == r["new"]), None)
      r["outcome"] = "equivalent" if eq else "survived"
      r["why"] = eq["why"] if eq else None
  for o in ("killed", "equivalent", "survived", "incompetent"):
    result[o] = sum(r["outcome"] == o for r in result["rows"])
  return result


def report(results: list[dict], label: str) -> str:
  out = [f"## Mutation run: {label}", "",
         f"cosmic-ray, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
         "Mutants: in scope (see mutation/*.toml) plus the hand-written ones.", "",
         "| module | scope | mutants | killed | equivalent | survived | incompetent |",
         "|---|---|---|---|---|---|---|"]
  for r in results:
    scope = _load(HERE / f"{r['module']}.toml")["cosmic-ray"].get("scope", {})
    what = ", ".join(scope.get("functions", []) + [a for a, _ in scope.get("sections", [])])
    out.append(f"| {r['path']} | {what} | {r['mutants']} | {r['killed']} | {r['equivalent']} | "
               f"{r['survived']} | {r['incompetent']} |")
  for r in results:
    left = [x for x in r["rows"] if x["outcome"] in ("survived", "equivalent")]
    if not left:
      continue
    out += ["", f"### {r['path']}: survivors ({r['test_command']})", ""]
    for x in left:
      tag = "EQUIVALENT" if x["outcome"] == "equivalent" else "SURVIVED"
      out.append(f"- {tag} line {x['line']} {x['operator']}: `{x['old']}` -> `{x['new']}`")
      if x.get("why"):
        out.append(f"  - why equivalent: {x['why']}")
  return "\n".join(out) + "\n"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--modules", default=",".join(MODULES))
  ap.add_argument("--label", default="current tests")
  ap.add_argument("--report", default=str(HERE / "last_run.md"),
                  help="where the run's report goes (mutation/REPORT.md is the curated one)")
  ap.add_argument("--json", default=None, help="also write the figures and rows as JSON here")
  ap.add_argument("--tests", choices=("after", "before"), default="after",
                  help="each config's test-command, or its scope.before-command (the old suite)")
  ap.add_argument("--rescore", default=None,
                  help="comma-separated --json files of earlier runs: rewrite their report with "
                       "the current mutation/equivalent.toml instead of running anything")
  ap.add_argument("--timeout", type=float, default=None,
                  help="seconds per test run, instead of each config's (a loaded machine)")
  ap.add_argument("--hand-only", action="store_true", help="only the hand-written mutants")
  ap.add_argument("--harvest", default=None,
                  help="NAME=SESSION.sqlite,...: write the report of cosmic-ray sessions as they "
                       "stand (an interrupted run), without the hand-written mutants")
  ap.add_argument("--count", action="store_true", help="only count the mutants in scope")
  ap.add_argument("--no-hand", action="store_true", help="skip the hand-written mutants")
  args = ap.parse_args(argv)
  names = [m for m in args.modules.split(",") if m]
  bad = [m for m in names if not (HERE / f"{m}.toml").is_file()]
  if bad:
    print(f"--modules: no mutation/<name>.toml for {bad}; the default set is {MODULES}",
          file=sys.stderr)
    return 2
  keep = [re.compile(k) for k in _load(HERE / "operators.toml")["keep"]]
  equivalents = _load(HERE / "equivalent.toml").get("equivalent", [])
  hand = [] if args.no_hand else _load(HERE / "hand_mutants.toml").get("mutant", [])
  if args.harvest:
    results = []
    for spec in args.harvest.split(","):
      name, session = spec.split("=")
      cfg = tomllib.loads((HERE / f"{name}.toml").read_text())["cosmic-ray"]
      results.append(rescore({"module": name, "path": cfg["module-path"],
                              "test_command": cfg["test-command"].replace("{python}", "python"),
                              "rows": session_rows(pathlib.Path(session))}, equivalents))
      results[-1]["mutants"] = len(results[-1]["rows"])
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    args.rescore = args.json
  if args.rescore:
    results = [rescore(r, equivalents) for f in args.rescore.split(",")
               for r in json.loads(pathlib.Path(f).read_text())]
    text = report(results, args.label)
    pathlib.Path(args.report).write_text(text)
    print(text)
    return 1 if any(r["survived"] for r in results) else 0
  with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
    work = pathlib.Path(tmp)
    copy_tree(work)
    results = [run_module(n, work, equivalents, keep, hand, args.tests, args.count,
                          args.hand_only, args.timeout) for n in names]
  if args.count:
    print(json.dumps(results))
    return 0
  text = report(results, args.label)
  pathlib.Path(args.report).write_text(text)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
  print(text)
  return 1 if any(r["survived"] for r in results) else 0


if __name__ == "__main__":
  sys.exit(main())
