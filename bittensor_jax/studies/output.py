"""Shared CLI plumbing of the studies: the output flags and writing rows as JSON and CSV.

Every study defines `--json` (print the rows as one JSON list on stdout), `--csv PATH` (write the
rows as CSV) and `--plots DIR` (write PNG figures there) with `define_output_flags()`, and turns on
float64 with `enable_x64()` before it touches the chain (the ledger counts rao in int64).
"""
from __future__ import annotations

import csv
import json
import math
import pathlib
import sys
from typing import Any, Iterable, Sequence

from absl import flags


def define_output_flags() -> None:
  """Defines --json, --csv and --plots (call once at module import of a study's CLI)."""
  flags.DEFINE_bool("json", False, "print the result rows as one JSON list on stdout")
  flags.DEFINE_string("csv", None, "write the result rows to this CSV file")
  flags.DEFINE_string("plots", None, "write the figures (PNG) into this directory")


def enable_x64() -> None:
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_enable_x64", True)


def _clean(v: Any) -> Any:
  """JSON-safe scalars: numpy numbers become Python numbers, nan/inf become None."""
  if hasattr(v, "item"):
    v = v.item()
  if isinstance(v, float) and not math.isfinite(v):
    return None
  return v


def clean_rows(rows: Iterable[dict]) -> list[dict]:
  return [{k: _clean(v) for k, v in r.items()} for r in rows]


def write_csv(path: str | pathlib.Path, rows: Sequence[dict]) -> pathlib.Path:
  """Writes rows (dicts with the same keys) as CSV; nan is written as an empty field."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  rows = clean_rows(rows)
  with path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
    w.writeheader()
    for r in rows:
      w.writerow({k: "" if v is None else v for k, v in r.items()})
  return path


def emit(rows: Sequence[dict], *, as_json: bool, csv_path: str | None,
         table: str | None = None) -> None:
  """Prints the rows as JSON (or the text table), and writes the CSV when asked."""
  if csv_path:
    write_csv(csv_path, rows)
  if as_json:
    print(json.dumps(clean_rows(rows)))
  elif table is not None:
    print(table)
  sys.stdout.flush()


def format_table(rows: Sequence[dict], columns: Sequence[str], fmt: str = "{:.3f}") -> str:
  """A plain fixed-width text table of the given columns (floats with `fmt`)."""
  cells = [[c for c in columns]]
  for r in rows:
    cells.append([fmt.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in columns])
  widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
  lines = ["  ".join(x.rjust(w) for x, w in zip(row, widths)) for row in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def plots_dir(path: str | None) -> pathlib.Path | None:
  if not path:
    return None
  p = pathlib.Path(path)
  p.mkdir(parents=True, exist_ok=True)
  return p
