"""The package boundary: the chain knows nothing of neural networks, and the networks nothing of it.

Two checks of the same rule. `ast` reads every import in the source tree (always runs): modules
under `bittensor_jax/chain/` may import only the chain itself, numpy, jax, flax, matplotlib and the
standard library, and nothing reachable from `bittensor_jax/neurons/` imports the chain. The
import-linter contracts in pyproject.toml (`[tool.importlinter]`) state it for `lint-imports`;
that test runs when import-linter is installed (the `dev` extra).
"""
import ast
import re
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "bittensor_jax"
CHAIN_ALLOWED = {"numpy", "jax", "jaxlib", "flax", "matplotlib"}


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
  parts = path.relative_to(root).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path, tree_modules: set[str], root: pathlib.Path = ROOT) -> set[str]:
  """Every module `path` imports (anywhere in the file, relative imports resolved), with
  `from a import b` also giving a.b when a.b is one of `tree_modules`."""
  mod = module_name(path, root)
  package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      found.add(base)
      found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in tree_modules)
  return found


def graph() -> dict[str, set[str]]:
  """module -> the modules it imports, for every module of the bittensor_jax package."""
  files = sorted(PKG.rglob("*.py"))
  names = {module_name(f) for f in files}
  return {module_name(f): imports_of(f, names) for f in files}


def within(name: str, package: str) -> bool:
  return name == package or name.startswith(package + ".")


def chain_violations(g: dict[str, set[str]]) -> list[str]:
  bad = []
  for mod, deps in g.items():
    if not within(mod, "bittensor_jax.chain"):
      continue
    for dep in deps:
      top = dep.split(".")[0]
      if within(dep, "bittensor_jax.chain") or top in CHAIN_ALLOWED | sys.stdlib_module_names:
        continue
      bad.append(f"{mod} imports {dep}")
  return bad


def neurons_violations(g: dict[str, set[str]]) -> list[str]:
  """Chains of internal imports from bittensor_jax.neurons that reach bittensor_jax.chain."""
  bad = []
  for start in (m for m in g if within(m, "bittensor_jax.neurons")):
    seen, todo = {start: [start]}, [start]
    while todo:
      cur = todo.pop()
      for dep in g.get(cur, ()):
        if within(dep, "bittensor_jax.chain"):
          bad.append(" -> ".join(seen[cur] + [dep]))
        elif dep in g and dep not in seen:
          seen[dep] = seen[cur] + [dep]
          todo.append(dep)
  return bad


def test_chain_imports_only_itself_and_the_allowed_libraries():
  g = graph()
  assert any(within(m, "bittensor_jax.chain") for m in g) and len(g) > 10
  assert chain_violations(g) == []


def test_neurons_never_reach_the_chain():
  assert neurons_violations(graph()) == []


def test_the_checks_catch_a_violation():
  """The same checks on a graph with forbidden imports added report each of them."""
  g = {m: set(d) for m, d in graph().items()}
  g["bittensor_jax.chain.kernels"] |= {"bittensor_jax.scoring", "optax"}
  g["bittensor_jax.data"] = g.get("bittensor_jax.data", set()) | {"bittensor_jax.chain.ledger"}
  assert sorted(chain_violations(g)) == [
      "bittensor_jax.chain.kernels imports bittensor_jax.scoring",
      "bittensor_jax.chain.kernels imports optax"]
  assert any(v.endswith("bittensor_jax.data -> bittensor_jax.chain.ledger")
             for v in neurons_violations(g))


def test_a_relative_or_from_import_resolves_to_the_module(tmp_path):
  src = tmp_path / "bittensor_jax" / "chain" / "x.py"
  src.parent.mkdir(parents=True)
  src.write_text("from .. import network\nfrom bittensor_jax import scoring\nimport optax.tree\n")
  got = imports_of(src, {"bittensor_jax.network", "bittensor_jax.scoring"}, root=tmp_path)
  assert {"bittensor_jax.network", "bittensor_jax.scoring", "optax.tree"} <= got
  assert chain_violations({"bittensor_jax.chain.x": got}) != []


def test_import_linter_contracts_are_kept(monkeypatch):
  cli = pytest.importorskip("importlinter.cli", reason="import-linter (dev extra) not installed")
  monkeypatch.chdir(ROOT)
  monkeypatch.syspath_prepend(str(ROOT))
  assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True,
                          no_logo=True) == 0


def chain_md_sections() -> set[str]:
  """Section numbers of docs/chain.md headings ("## 1. The epoch" -> "1", "### 3.3, 3.4" both)."""
  found = set()
  for line in (ROOT / "docs" / "chain.md").read_text().splitlines():
    m = re.match(r"#{2,3} ([0-9][0-9.]*(?:, [0-9][0-9.]*)*)[ .]", line)
    if m:
      found.update(x.rstrip(".") for x in m.group(1).split(", "))
  return found


def test_docstring_citations_point_into_the_repo():
  """Every `§x.y` the chain code cites is a section of docs/chain.md; nothing cites the
  project-external spec (SPEC.md, FORMAT.md) any more."""
  sections = chain_md_sections()
  assert {"0", "1.6", "1.10", "3.1", "4.2", "5.3", "6", "11"} <= sections
  cited, outside = set(), []
  for path in sorted(PKG.rglob("*.py")):
    text = path.read_text()
    cited.update(re.findall(r"§([0-9]+(?:\.[0-9]+)*)", text))
    outside += [f"{path.relative_to(ROOT)}: {m}" for m in
                re.findall(r"\b(?:SPEC\.md|SPEC [0-9]|(?<!_)FORMAT\.md)", text)]
  assert cited and cited <= sections, sorted(cited - sections)
  assert outside == []
