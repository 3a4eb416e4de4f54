"""Executes the colab/ notebooks the way a reader's Colab does: from an empty scratch folder.

The kernel's working folder holds no repository, so the notebook's first cell has to find the
checkout ($BTJ_REPO, set here to the repository of this package) or clone it, and every config
and scenario file has to be found from the package. Used by tests/notebooks_test.py and by
scripts/refresh_notebooks.py (which saves the outputs into the committed notebooks).
"""
import os
import pathlib
import tempfile

import nbclient
import nbformat

from bittensor_jax import config

NOTEBOOK_DIR = config.REPO_ROOT / "colab"


def execute(path, scratch=None, env: dict | None = None, timeout: int = 900):
  """Runs a notebook with its kernel in `scratch` (a new temp folder by default).

  Args:
    path: the .ipynb file.
    scratch: the kernel's working folder.
    env: extra environment variables for the kernel (BTJ_PRESET, BTJ_BLOCKS, BTJ_WORKDIR, ...).
    timeout: seconds per cell.

  Returns:
    The executed notebook (nbformat node).

  Raises:
    nbclient.exceptions.CellExecutionError: a cell failed.
  """
  scratch = pathlib.Path(scratch or tempfile.mkdtemp(prefix="btj_nb_"))
  nb = nbformat.read(path, as_version=4)
  saved = dict(os.environ)
  os.environ.update({"BTJ_REPO": str(config.REPO_ROOT), **(env or {})})
  try:  # the kernel inherits this process's environment
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(scratch)}})
    client.execute()
  finally:
    os.environ.clear()
    os.environ.update(saved)
  return nb


def errors(nb) -> list:
  """The error outputs of an executed notebook."""
  return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
          if o.get("output_type") == "error"]


def images(nb) -> int:
  """How many PNG outputs an executed notebook shows."""
  return sum("image/png" in o.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
             for o in cell.get("outputs", []))
