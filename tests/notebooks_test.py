"""Executes every notebook in colab/ with nbclient on the smoke preset (a few blocks)."""
import pathlib

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))


def test_there_are_notebooks():
  assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "yuma_scenarios", "federated_network"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, tmp_path_factory, monkeypatch):
  # the kernel inherits this environment (4 fake CPU devices from conftest, like loop_test, so
  # the persistent compilation cache is shared)
  monkeypatch.setenv("BTJ_PRESET", "smoke")
  monkeypatch.setenv("BTJ_BLOCKS", "20")
  monkeypatch.setenv("BTJ_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR",
                     str(tmp_path_factory.getbasetemp() / "jax_cache"))
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                   resources={"metadata": {"path": str(path.parent)}})
  client.execute()
  errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors
