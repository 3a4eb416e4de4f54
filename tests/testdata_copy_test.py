"""tests/testdata/chain is a byte-identical copy of ../shared/spec's JSON vectors."""
import pathlib

import pytest

from conftest import CHAIN_DATA

SPEC = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "spec"


def spec_json_files():
  return sorted([*SPEC.glob("*.json"), *(SPEC / "scenarios").glob("*.json")])


@pytest.mark.skipif(not SPEC.is_dir(), reason="../shared/spec is not present in this checkout")
def test_copy_matches_shared_spec():
  files = spec_json_files()
  assert files, "../shared/spec holds no JSON vectors"
  for src in files:
    rel = src.relative_to(SPEC)
    copy = CHAIN_DATA / rel
    assert copy.is_file(), f"missing copy of {rel}: cp {src} {copy}"
    assert copy.read_bytes() == src.read_bytes(), f"{copy} differs from {src}: refresh the copy"
  ours = sorted(p.relative_to(CHAIN_DATA) for p in CHAIN_DATA.rglob("*.json")
                if p.relative_to(CHAIN_DATA).parts[0] != "cr")  # cr/: this repo's own scenarios
  assert ours == sorted(p.relative_to(SPEC) for p in files), "stale extra files in testdata/chain"


def test_copy_is_complete():
  assert (CHAIN_DATA / "kernels.json").is_file()
  assert (CHAIN_DATA / "emission_schedule.json").is_file()
  assert len(list((CHAIN_DATA / "scenarios").glob("*.json"))) >= 11
