"""Every ```python block of README.md runs as written, on its own, from an empty folder.

Each block goes to a fresh interpreter (no conftest: no x64 switch, no fake devices), so a block
that forgets its imports or the x64 line fails here as it would for a reader.
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(),
                    flags=re.S | re.M)


def test_readme_has_python_blocks():
  assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs_in_a_fresh_interpreter(index, tmp_path, tmp_path_factory):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  env["JAX_PLATFORMS"] = "cpu"
  script = tmp_path / f"readme_block_{index}.py"
  script.write_text(BLOCKS[index])
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, f"README block {index}:\n{BLOCKS[index]}\n{proc.stderr[-3000:]}"
  # no misleading warnings before a clear error, and nothing written outside the scratch folder
  assert "int64" not in proc.stderr, proc.stderr[-2000:]
