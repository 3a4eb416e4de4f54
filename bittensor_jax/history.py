"""Append-only per-epoch history of a run, one tensorstore zarr array per field.

Layout under `path`:

  fields.json     {field: {"shape": [...], "dtype": "float64"}}, written once at creation
  progress.json   {"num_epochs": E}: rows 0..E-1 of every field are complete
  <field>/        zarr v2 array [capacity, *shape], one chunk per epoch, capacity grows by
                  doubling (a metadata-only resize)

`HistoryWriter.append` writes the row of every field first and only then replaces
progress.json (tmp file, fsync, `os.replace`), so a reader that trusts `num_epochs` sees exactly
the epochs whose rows were all written, even after a crash between the two. Rows past
`num_epochs` may hold partial data from a crashed append; readers never return them.

Readers open the arrays read-only on every call, so they work while a writer is running.
"""
import json
import os
import pathlib

import numpy as np
import tensorstore as ts

_FIELDS = "fields.json"
_PROGRESS = "progress.json"
_INITIAL_CAPACITY = 64


def _spec(path: pathlib.Path, field: str) -> dict:
  return {"driver": "zarr", "kvstore": {"driver": "file", "path": str(path / field)}}


def _write_json(file: pathlib.Path, obj) -> None:
  """Writes JSON atomically: a tmp file in the same directory, fsync, then `os.replace`."""
  tmp = file.with_name(f".{file.name}.tmp")
  with open(tmp, "w") as f:
    json.dump(obj, f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, file)


def _write_progress(path: pathlib.Path, num_epochs: int) -> None:
  _write_json(path / _PROGRESS, {"num_epochs": num_epochs})


def _load_fields(path: pathlib.Path) -> dict[str, tuple[tuple[int, ...], str]]:
  raw = json.loads((path / _FIELDS).read_text())
  return {name: (tuple(f["shape"]), f["dtype"]) for name, f in raw.items()}


def fields(path) -> dict[str, tuple[tuple[int, ...], str]]:
  """The fields of a history: {name: (per-epoch shape, dtype name)}."""
  return _load_fields(pathlib.Path(path))


def num_epochs(path) -> int:
  """How many epochs are completely written (0 for a history with no progress file)."""
  file = pathlib.Path(path) / _PROGRESS
  if not file.exists():
    return 0
  return int(json.loads(file.read_text())["num_epochs"])


# The metagraph letters of the SDK (`bittensor.Metagraph`: S W B C Tv I D E) -> stored names.
ALIASES = {"S": "stake", "W": "weights", "B": "bonds", "C": "consensus", "Tv": "validator_trust",
           "I": "incentive", "D": "dividends", "E": "emission"}


def resolve(path, field: str) -> str:
  """The stored name of `field` (a stored name or a metagraph letter, `ALIASES`).

  Raises:
    ValueError: the history does not exist, or has no such field (the message lists them).
  """
  path = pathlib.Path(path)
  if not (path / _FIELDS).exists():
    raise ValueError(f"{path} is not a history (no {_FIELDS}); pass <workdir>/history")
  known = _load_fields(path)
  name = ALIASES.get(field, field)
  if name not in known:
    letters = ", ".join(f"{k}={v}" for k, v in ALIASES.items())
    raise ValueError(f"history field {field!r} unknown; known: {sorted(known)} "
                     f"(metagraph letters: {letters})")
  return name


def read(path, field: str, start: int = 0, stop: int | None = None) -> np.ndarray:
  """Reads rows [start, stop) of one field, clipped to the completed epochs.

  Args:
    path: the history directory (str or Path).
    field: the stored name ("incentive") or the SDK's metagraph letter ("I"; `ALIASES`).
    start: first epoch.
    stop: one past the last epoch; None for all completed epochs.

  Returns:
    An array [stop - start, *shape] of the field's dtype.

  Raises:
    ValueError: an unknown field (the message lists the known ones) or a missing history.
  """
  path = pathlib.Path(path)
  field = resolve(path, field)
  count = num_epochs(path)
  stop = count if stop is None else min(stop, count)
  start = min(start, stop)
  arr = ts.open(_spec(path, field), open=True, read=True).result()
  return arr[start:stop].read().result()


def read_all(path, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
  """Reads rows [start, stop) of every field; all fields see the same epoch count."""
  path = pathlib.Path(path)
  count = num_epochs(path)
  stop = count if stop is None else min(stop, count)
  return {name: read(path, name, start, stop) for name in fields(path)}


class HistoryWriter:
  """Writes one row per epoch of every field.

  Attributes:
    path: the history directory.
    fields: {name: (per-epoch shape, dtype name)}.
  """

  # pylint: disable-next=redefined-outer-name
  def __init__(self, path, fields: dict[str, tuple[tuple[int, ...], object]]):
    """Creates the history, or reopens it (for a resumed run) when it exists.

    Args:
      path: the history directory.
      fields: {name: (per-epoch shape, dtype)}, e.g. {"stake": ((N,), np.float64)}.

    Raises:
      ValueError: the history exists with different fields.
    """
    self.path = pathlib.Path(path)
    self.fields = {name: (tuple(int(d) for d in shape), np.dtype(dtype).name)
                   for name, (shape, dtype) in fields.items()}
    if (self.path / _FIELDS).exists():
      existing = _load_fields(self.path)
      if existing != self.fields:
        raise ValueError(f"history at {self.path} has fields {existing}, not {self.fields}")
      self._arrays = {name: ts.open(_spec(self.path, name), open=True, read=True,
                                    write=True).result() for name in self.fields}
    else:
      self.path.mkdir(parents=True, exist_ok=True)
      self._arrays = {name: self._create(name, shape, dtype)
                      for name, (shape, dtype) in self.fields.items()}
      _write_json(self.path / _FIELDS, {name: {"shape": list(shape), "dtype": dtype}
                                        for name, (shape, dtype) in self.fields.items()})

  def _create(self, name: str, shape: tuple[int, ...], dtype: str) -> ts.TensorStore:
    return ts.open(
        _spec(self.path, name), create=True, delete_existing=True, dtype=dtype,
        shape=(_INITIAL_CAPACITY, *shape),
        chunk_layout=ts.ChunkLayout(chunk_shape=(1, *shape))).result()

  @property
  def num_epochs(self) -> int:
    """The committed epoch count."""
    return num_epochs(self.path)

  def _ensure_capacity(self, epoch: int) -> None:
    for name, arr in self._arrays.items():
      capacity = arr.shape[0]
      if epoch >= capacity:
        while epoch >= capacity:
          capacity *= 2
        self._arrays[name] = arr.resize(
            exclusive_max=(capacity, *arr.shape[1:]), resize_metadata_only=True).result()

  def append(self, epoch: int, values: dict) -> None:
    """Writes row `epoch` of every field, then commits the epoch count as `epoch + 1`.

    Writing an epoch below the committed count (a resumed run redoing epochs) first truncates
    the count to `epoch`, so readers never see a half-overwritten row.

    Args:
      epoch: the row; at most the committed count (no gaps).
      values: {field: array of the field's per-epoch shape}; every field is required.

    Raises:
      ValueError: a gap, missing or unknown fields, or a wrong shape.
    """
    count = self.num_epochs
    if not 0 <= epoch <= count:
      raise ValueError(f"epoch {epoch} would leave a gap after {count} committed epochs")
    if set(values) != set(self.fields):
      raise ValueError(f"append needs exactly the fields {sorted(self.fields)}, "
                       f"got {sorted(values)}")
    rows = {}
    for name, (shape, dtype) in self.fields.items():
      rows[name] = np.asarray(values[name]).astype(dtype, copy=False)
      if rows[name].shape != shape:
        raise ValueError(f"field {name}: shape {rows[name].shape}, expected {shape}")
    if epoch < count:
      _write_progress(self.path, epoch)
    self._ensure_capacity(epoch)
    futures = [self._arrays[name][epoch].write(row) for name, row in rows.items()]
    for f in futures:
      f.result()
    _write_progress(self.path, epoch + 1)
