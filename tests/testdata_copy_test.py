"""tests/testdata/chain is a byte-identical copy of ../shared/spec's JSON vectors and of its
regressions folder (every file, README included)."""
import pathlib

import pytest

from conftest import CHAIN_DATA

SPEC = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "spec"


def spec_files():
  """The shared files that have a copy here, relative to ../shared/spec."""
  files = [*SPEC.glob("*.json"), *(SPEC / "scenarios").glob("*.json"),
           *(p for p in (SPEC / "regressions").glob("*") if p.is_file())]
  return sorted(p.relative_to(SPEC) for p in files)


def our_files():
  files = [*CHAIN_DATA.glob("*.json"), *(CHAIN_DATA / "scenarios").glob("*.json"),
           *(p for p in (CHAIN_DATA / "regressions").glob("*") if p.is_file())]
  return sorted(p.relative_to(CHAIN_DATA) for p in files)


@pytest.mark.skipif(not SPEC.is_dir(), reason="../shared/spec is not present in this checkout")
def test_copy_matches_shared_spec():
  files = spec_files()
  assert files, "../shared/spec holds no JSON vectors"
  assert any(p.parts[0] == "regressions" for p in files), "../shared/spec/regressions is empty"
  for rel in files:
    src, copy = SPEC / rel, CHAIN_DATA / rel
    assert copy.is_file(), f"missing copy of {rel}: cp {src} {copy}"
    assert copy.read_bytes() == src.read_bytes(), f"{copy} differs from {src}: refresh the copy"
  assert our_files() == files, "stale extra files in testdata/chain"


def test_copy_is_complete():
  assert (CHAIN_DATA / "kernels.json").is_file()
  assert (CHAIN_DATA / "emission_schedule.json").is_file()
  assert len(list((CHAIN_DATA / "scenarios").glob("*.json"))) >= 11
  assert (CHAIN_DATA / "regressions" / "README.md").is_file()
  assert len(list((CHAIN_DATA / "regressions").glob("*.json"))) >= 4
