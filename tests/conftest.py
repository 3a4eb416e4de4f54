"""Test setup: 4 fake CPU devices and float64, set before jax starts.

Chain-exact tests need `jax_enable_x64`; neural-network code is explicit about float32, so it is
unaffected. Rank promotion raises, so a silent broadcast bug fails loudly.
"""
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole run, shared by both xdist workers and every
# subprocess (train.py, README blocks, notebooks compile the same smoke network many times);
# kept between runs in .cache/ (git-ignored). Results do not depend on it: XLA keys each entry by
# the program, its options and the jax/jaxlib version.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(pathlib.Path(__file__).resolve().parent.parent / ".cache" / "jax-tests"))
# Every compile is kept, not only those over JAX's 1 s default: building a network runs a few
# hundred small eager ops (model init, the ledger), ~60 ms of compile each, about 15 s that every
# test process and subprocess paid again (measured on scripts/sweep.py: 67.7 -> 53.0 s warm).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

TESTDATA = pathlib.Path(__file__).parent / "testdata"
CHAIN_DATA = TESTDATA / "chain"


@pytest.fixture
def chain_data() -> pathlib.Path:
  return CHAIN_DATA


# Hypothesis profiles for the differential tests (tests/differential_test.py): "ci" (default) runs a
# few hundred examples in about a minute; `pytest --hypothesis-profile=long` runs 5,000+.
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
_hyp_settings.register_profile("long", max_examples=5000, deadline=None, print_blob=True)
if _hyp_settings.get_current_profile_name() == "default":   # tests import this file again as
  _hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))  # tests.conftest



# `make test` runs `pytest -n 2 --dist loadfile --no-loadscope-reorder`: each test file stays on one
# worker, so a module's shared fixture (a smoke run, a compiled network) is built once, not once per
# worker (with the default `--dist load` both workers took tests of every module and both built its
# fixtures, at the same moment, so neither found the other's compilation in the cache). The files
# go out in this order, the ones that take minutes first (seconds on one run of the suite, two
# workers, cold cache), so the two workers end together instead of one finishing a long file
# alone. Without --no-loadscope-reorder, xdist hands out the files with the most tests first and
# this order is lost. scripts_test goes before loop_test, readme_test and notebooks_test: their
# one-device subprocesses run the smoke network that scripts_test compiles, and find it in the
# persistent cache.
SLOW_FIRST = ("network_test",          # 396 s
              "scripts_test",          # 162
              "studies_test",          # 174
              "distributed_test",      # 122
              "benchmarks_test",       # 122
              "yuma_test",             # 114
              "loop_test",             # 152 (before the smoke run was shared)
              "evaluation_test",       # 88
              "network_economy_test",  # 85
              "readme_test", "notebooks_test", "weights_test", "rows_test", "scoring_test",
              "replay_test", "economy_shares_test", "train_test", "kernels_test", "yuma_rules_test",
              "differential_test", "economy_regimes_test", "transformer_test")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_FIRST)}
  items.sort(key=lambda item: rank.get(pathlib.Path(str(item.fspath)).stem, len(rank)))
