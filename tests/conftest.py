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



# `make test` runs `pytest -n 2 --dist loadfile`: each test file stays on one worker, so a module's
# shared fixture (a smoke run, a compiled network) is built once, not once per worker (with the
# default `--dist load` both workers took tests of every module and both built its fixtures, at
# the same moment, so neither found the other's compilation in the cache). The files that take
# minutes go first, so the two workers end together instead of one finishing a long file alone.
SLOW_FIRST = ("network_test", "loop_test", "scripts_test", "distributed_test", "readme_test",
              "notebooks_test", "studies_test", "network_economy_test", "economy_study_test",
              "economy_block_test", "differential_test", "evaluation_test", "exchange_test")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_FIRST)}
  items.sort(key=lambda item: rank.get(pathlib.Path(str(item.fspath)).stem, len(rank)))
