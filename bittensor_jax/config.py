"""ConfigDict -> the frozen `NetworkConfig` that jit closes over; checks of the `run` section.

A ConfigDict never enters jitted code: `network_config` copies `c.network` into
`network.NetworkConfig` (with `transformer.ModelConfig` and `train.TrainConfig` nested), turning
lists into tuples. Types are checked by ml_collections (an override keeps the config file's type)
and by `network.check_types` (the dataclass annotations, resolved with `typing.get_type_hints`);
ranges by `NetworkConfig` itself. Unknown keys and bad values raise ValueError naming the config
field (`network.model.width: ...`).

  c = config.load_preset("configs/default.py:smoke")   # notebooks
  cfg = config.network_config(c)
"""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
from typing import Any

import ml_collections

from bittensor_jax import network
from bittensor_jax.neurons import train, transformer

_NESTED = {"model": transformer.ModelConfig, "train": train.TrainConfig}
RUN_FIELDS = ("blocks", "blocks_per_call", "checkpoint_every_epochs", "keep_checkpoints",
              "log_every_epochs")


def _to_dict(c) -> dict:
  return c.to_dict() if isinstance(c, ml_collections.ConfigDict) else dict(c)


def _plain(value: Any) -> Any:
  """ConfigDict values as the dataclasses hold them: lists become tuples."""
  return tuple(value) if isinstance(value, list) else value


def _build(cls, values: dict, prefix: str):
  """Instantiates dataclass `cls` from `values`, naming `prefix.field` in every error."""
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise ValueError(f"{prefix}.{unknown[0]}: unknown field; known: {sorted(fields)}")
  kwargs = {}
  for name, value in values.items():
    f = fields[name]
    where = f"{prefix}.{name}"
    if name in _NESTED and cls is network.NetworkConfig:
      if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a dict of {_NESTED[name].__name__} fields")
      kwargs[name] = _build(_NESTED[name], value, where)
    else:
      kwargs[name] = _plain(value)
  try:
    obj = cls(**kwargs)  # NetworkConfig checks its own types and ranges
  except ValueError as e:
    msg = str(e)
    raise ValueError(msg if msg.startswith(prefix) else f"{prefix}: {msg}") from e
  if cls is not network.NetworkConfig:
    network.check_types(obj, prefix)
  if cls is transformer.ModelConfig:
    _check_model(prefix, dataclasses.asdict(obj))
  if cls is train.TrainConfig:
    _check_train(prefix, dataclasses.asdict(obj))
  return obj


def _check_model(prefix: str, d: dict) -> None:
  for name in ("vocab", "width", "depth", "heads", "context", "mlp_ratio"):
    if d[name] < 1:
      raise ValueError(f"{prefix}.{name}: must be >= 1, got {d[name]}")
  if d["width"] % d["heads"]:
    raise ValueError(f"{prefix}.width: {d['width']} is not a multiple of heads={d['heads']}")


def _check_train(prefix: str, d: dict) -> None:
  if d["schedule"] not in ("cosine", "constant"):
    raise ValueError(f"{prefix}.schedule: must be 'cosine' or 'constant', got {d['schedule']!r}")
  if not d["lr"] > 0:
    raise ValueError(f"{prefix}.lr: must be > 0, got {d['lr']}")


def network_config(c) -> network.NetworkConfig:
  """The network section of a config as a frozen, hashable `NetworkConfig`.

  Args:
    c: the whole ConfigDict (its `network` section is used) or the `network` section itself.

  Returns:
    The NetworkConfig.

  Raises:
    ValueError: an unknown key or a bad value; the message starts with the field's path.
  """
  d = _to_dict(c)
  section = d["network"] if "network" in d and isinstance(d["network"], dict) else d
  if "network" in d and "seed" in d and "seed" not in section:
    section = {**section, "seed": d["seed"]}
  return _build(network.NetworkConfig, section, "network")


def run_settings(c) -> dict:
  """The `run` section checked: {blocks, blocks_per_call (0 resolved to tempo), ...}.

  Args:
    c: the whole ConfigDict.

  Returns:
    A plain dict of ints.

  Raises:
    ValueError: an unknown or missing key or a bad value, naming `run.<field>`.
  """
  d = _to_dict(c)
  run = dict(d.get("run", {}))
  unknown = sorted(set(run) - set(RUN_FIELDS))
  if unknown:
    raise ValueError(f"run.{unknown[0]}: unknown field; known: {list(RUN_FIELDS)}")
  for name in RUN_FIELDS:
    if name not in run:
      raise ValueError(f"run.{name}: missing")
    v = run[name]
    if isinstance(v, bool) or not isinstance(v, int):
      raise ValueError(f"run.{name}: expected an integer, got {v!r}")
    if v < (0 if name == "blocks_per_call" else 1):
      raise ValueError(f"run.{name}: must be >= {0 if name == 'blocks_per_call' else 1}, "
                       f"got {v}")
  if run["blocks_per_call"] == 0:
    run["blocks_per_call"] = int(d["network"]["tempo"])
  return run


REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def repo_path(relative: str) -> pathlib.Path:
  """A file of the repository (configs/..., tests/testdata/...) found from the package, not the cwd.

  `pip install -e .` and a clone on `sys.path` keep the package inside the repository, so this
  works from any folder (notebooks, scratch folders). A plain `pip install .` ships only the
  Python modules: then there is no such file and the error says so.

  Args:
    relative: a path relative to the repository root, e.g. "configs/default.py"; a ":arg"
      suffix is kept ("configs/default.py:smoke").

  Returns:
    The absolute path (with the suffix).

  Raises:
    ValueError: the file does not exist next to the package.
  """
  path, sep, arg = str(relative).partition(":")
  full = REPO_ROOT / path
  if not full.exists():
    raise ValueError(f"{path}: not found under {REPO_ROOT}; configs and scenario files ship with "
                     f"the repository (clone it and `pip install -e .`), not with `pip install .`")
  return pathlib.Path(f"{full}{sep}{arg}")


def load_config_file(path_and_arg: str) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]` and returns its `get_config(arg)`, as config_flags does.

  Args:
    path_and_arg: e.g. "configs/default.py:smoke" (relative paths resolve from the cwd).

  Returns:
    The ConfigDict.
  """
  path, _, arg = str(path_and_arg).partition(":")
  file = pathlib.Path(path)
  if not file.is_file():
    raise ValueError(f"config file {path!r} not found (cwd {pathlib.Path.cwd()})")
  spec = importlib.util.spec_from_file_location(f"btj_config_{file.stem}", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def load_preset(path_and_arg: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
  """Loads a config file with its preset and applies dotted overrides (for notebooks).

  Args:
    path_and_arg: e.g. "configs/default.py:smoke"; a relative path that does not exist from the
      cwd is looked up in the repository (`repo_path`), so notebooks work from any folder.
    overrides: e.g. {"run.blocks": 40, "network.kappa": 0.6}.

  Returns:
    The locked ConfigDict.

  Raises:
    ValueError: an override names an unknown field or has the wrong type.
  """
  path = str(path_and_arg).partition(":")[0]
  if not pathlib.Path(path).is_absolute() and not pathlib.Path(path).exists():
    path_and_arg = repo_path(path_and_arg)
  c = load_config_file(path_and_arg)
  c.lock()
  for dotted, value in (overrides or {}).items():
    override(c, dotted, value)
  return c


def override(c: ml_collections.ConfigDict, dotted: str, value) -> None:
  """Sets `c.<dotted>` = value in place; ValueError naming the field when it does not exist."""
  *parents, leaf = dotted.split(".")
  node = c
  for i, name in enumerate(parents):
    if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
      raise ValueError(f"{'.'.join(parents[:i + 1])}: no such config section")
    node = node[name]
  if leaf not in node:
    raise ValueError(f"{dotted}: unknown config field")
  try:
    node[leaf] = value
  except TypeError as e:
    raise ValueError(f"{dotted}: {e}") from e
