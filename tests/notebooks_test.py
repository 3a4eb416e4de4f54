"""Executes every notebook in colab/ from an empty scratch folder, on the smoke preset.

This is the Colab path: the kernel's working folder holds no repository, so the first cell must
find the checkout ($BTJ_REPO) and the configs and scenario files must be found from the package.
"""
import os
import pathlib

import pytest

from bittensor_jax import notebooks

NOTEBOOKS = sorted(notebooks.NOTEBOOK_DIR.glob("*.ipynb"))


def test_there_are_notebooks():
  assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "yuma_scenarios", "federated_network"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_from_a_scratch_folder(path, tmp_path, tmp_path_factory):
  scratch = tmp_path / "scratch"
  scratch.mkdir()
  # the kernel inherits conftest's environment and its persistent compilation cache, but runs on
  # one CPU device (XLA_FLAGS emptied), like scripts_test's train.py, whose smoke programs it
  # shares; on conftest's 4 fake devices the three notebooks took 64 s instead of 54 s (warm)
  nb = notebooks.execute(path, scratch, env={
      "BTJ_PRESET": "smoke", "BTJ_BLOCKS": "20", "BTJ_WORKDIR": str(tmp_path / "run"),
      "JAX_COMPILATION_CACHE_DIR": os.environ["JAX_COMPILATION_CACHE_DIR"],  # conftest.py
      "XLA_FLAGS": ""})
  assert not notebooks.errors(nb)
  assert notebooks.images(nb) >= 1  # every notebook shows at least one plot
  assert sorted(p.name for p in scratch.iterdir()) == []  # nothing written to the cwd
