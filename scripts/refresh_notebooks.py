r"""Re-executes the colab/ notebooks from a scratch folder and saves them with their outputs.

  python scripts/refresh_notebooks.py                      # every notebook, smoke preset
  python scripts/refresh_notebooks.py --notebooks=quickstart

The committed notebooks carry their outputs so GitHub shows the plots. Each one runs as in
Colab (an empty working folder, the repository found by the first cell). Prints each notebook
with its number of plots and size; exits 2 when a notebook fails.
"""
import pathlib

import nbformat
from absl import flags

from bittensor_jax import cli, notebooks

flags.DEFINE_list("notebooks", None, "Notebook names (default: all of colab/).")
flags.DEFINE_string("preset", "smoke", "Preset of configs/default.py the notebooks run.")
flags.DEFINE_integer("blocks", 0, "Blocks per run (0: the preset's).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  paths = sorted(notebooks.NOTEBOOK_DIR.glob("*.ipynb"))
  if FLAGS.notebooks:
    paths = [p for p in paths if p.stem in FLAGS.notebooks]
    if len(paths) != len(FLAGS.notebooks):
      raise ValueError(f"--notebooks: unknown in {FLAGS.notebooks}")
  for path in paths:
    nb = notebooks.execute(path, env={"BTJ_PRESET": FLAGS.preset,
                                      "BTJ_BLOCKS": str(FLAGS.blocks)})
    if notebooks.errors(nb):
      raise ValueError(f"{path.name}: a cell failed; not saved")
    for cell in nb.cells:  # no kernel-specific metadata churn in the diff
      cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, path)
    print(f"{path}: {notebooks.images(nb)} plots, {pathlib.Path(path).stat().st_size} bytes")


if __name__ == "__main__":
  cli.run(main)
