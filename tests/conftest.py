"""Test setup: 4 fake CPU devices and float64, set before jax starts.

Chain-exact tests need `jax_enable_x64`; neural-network code is explicit about float32, so it is
unaffected. Rank promotion raises, so a silent broadcast bug fails loudly.
"""
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

TESTDATA = pathlib.Path(__file__).parent / "testdata"
CHAIN_DATA = TESTDATA / "chain"


@pytest.fixture
def chain_data() -> pathlib.Path:
  return CHAIN_DATA
