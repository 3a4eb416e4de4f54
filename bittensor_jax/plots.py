"""PNG figures of a run (from a `history.read_all` dict) and of chain scenario replays.

Figures are built with `matplotlib.figure.Figure` and written by the Agg canvas, so nothing
touches pyplot's global state or needs a display. Every input key is optional: a panel whose
data is missing says "no data".
"""
import pathlib

import matplotlib
import numpy as np
import scipy.stats
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

SERVER, VALIDATOR = 0, 1
# server behaviour codes (network.BEHAVIOURS order) and validator behaviour names -> colour
SERVER_BEHAVIOURS = ("honest", "noise", "offline", "copier")
BEHAVIOUR_COLOURS = {"honest": "tab:green", "noise": "tab:red", "offline": "tab:gray",
                     "copier": "tab:purple", "lazy": "tab:olive", "cabal": "tab:red"}


def rank(x) -> np.ndarray:
  """1-based ranks of a 1-D array, ties getting the average of their ranks (scipy.stats)."""
  return scipy.stats.rankdata(np.asarray(x), method="average")


def spearman(x, y) -> float:
  """Spearman rank correlation (`scipy.stats.spearmanr`, average ranks for ties).

  Pairs where either value is not finite are dropped.

  Args:
    x: 1-D values.
    y: 1-D values, same length.

  Returns:
    The correlation; nan with fewer than 2 pairs or a constant input.
  """
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  keep = np.isfinite(x) & np.isfinite(y)
  if keep.sum() < 2 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
    return float("nan")
  return float(scipy.stats.spearmanr(x[keep], y[keep]).statistic)


def _no_data(ax, title: str) -> None:
  ax.set_title(title)
  ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
  ax.set_xticks([])
  ax.set_yticks([])


def _roles(history: dict) -> np.ndarray | None:
  """Role of each uid at the last epoch (0 server, 1 validator), or None when unknown."""
  if "role" in history and np.size(history["role"]):
    return np.asarray(history["role"])[-1].astype(int)
  if "roles" in history:
    return np.asarray(history["roles"]).astype(int)
  return None


def _x(history: dict, num_epochs: int) -> tuple[np.ndarray, str]:
  block = history.get("block")
  if block is not None and np.shape(block) == (num_epochs,):
    return np.asarray(block), "block"
  return np.arange(num_epochs), "epoch"


def _get(history: dict, key: str, ndim: int) -> np.ndarray | None:
  value = history.get(key)
  if value is None:
    return None
  value = np.asarray(value, dtype=np.float64)
  return value if value.ndim == ndim and value.shape[0] > 0 else None


def _stake_panel(ax, history: dict) -> None:
  stake = _get(history, "stake", 2)
  if stake is None:
    return _no_data(ax, "stake share")
  x, xlabel = _x(history, stake.shape[0])
  total = stake.sum(axis=1, keepdims=True)
  share = np.divide(stake, total, out=np.zeros_like(stake), where=total > 0)
  roles = _roles(history)
  if roles is None:
    roles = np.zeros(stake.shape[1], dtype=int)
  vals, servs = np.flatnonzero(roles == VALIDATOR), np.flatnonzero(roles != VALIDATOR)
  order = np.concatenate([vals, servs])
  blues = [matplotlib.colormaps["Blues"](0.4 + 0.5 * i / max(len(vals), 1))
           for i in range(len(vals))]
  oranges = [matplotlib.colormaps["Oranges"](0.3 + 0.5 * i / max(len(servs), 1))
             for i in range(len(servs))]
  ax.stackplot(x, share[:, order].T, colors=blues + oranges, linewidth=0.2, edgecolor="white")
  ax.legend(handles=[Patch(color="tab:blue", label="validators"),
                     Patch(color="tab:orange", label="servers")], fontsize=7, loc="upper left",
            bbox_to_anchor=(1.01, 1.0), frameon=False)
  ax.set(title="stake share (stacked, one band per uid)", xlabel=xlabel, ylabel="share of stake",
         ylim=(0, 1))


def behaviour_names(history: dict) -> list[str] | None:
  """What held each uid at the last epoch: server behaviours from history["behaviour"] [E,K],
  validator behaviours from history["validator_behaviour"] (names, optional; else "validator")."""
  roles = _roles(history)
  if roles is None:
    return None
  names = ["validator" if r == VALIDATOR else "server" for r in roles]
  vb = history.get("validator_behaviour")
  v_uids = np.flatnonzero(roles == VALIDATOR)
  if vb is not None and len(vb) == len(v_uids):
    for uid, name in zip(v_uids, vb):
      names[uid] = str(name)
  sb = history.get("behaviour")
  s_uids = np.flatnonzero(roles == SERVER)
  if sb is not None and np.ndim(sb) == 2 and np.shape(sb)[1] == len(s_uids) and len(sb):
    for uid, code in zip(s_uids, np.asarray(sb)[-1]):
      names[uid] = SERVER_BEHAVIOURS[int(code)]
  return names


def _lines_panel(ax, history: dict, key: str, role: int, title: str, ylabel: str) -> None:
  values = _get(history, key, 2)
  if values is None:
    return _no_data(ax, title)
  x, xlabel = _x(history, values.shape[0])
  roles = _roles(history)
  uids = np.arange(values.shape[1]) if roles is None else np.flatnonzero(roles == role)
  if uids.size == 0:
    uids = np.arange(values.shape[1])
  names = behaviour_names(history)
  styles = ["-", "--", ":", "-."]
  for i, uid in enumerate(uids):
    name = names[uid] if names else ""
    colour = BEHAVIOUR_COLOURS.get(name) if name else None
    ax.plot(x, values[:, uid], linewidth=1.2, color=colour, linestyle=styles[i % len(styles)],
            label=f"uid {uid} {name}".strip())
  if uids.size <= 16:
    # outside the axes, so it never covers a line
    ax.legend(fontsize=6, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
  ax.set(title=title, xlabel=xlabel, ylabel=ylabel)


def _quality_panel(ax, history: dict) -> None:
  incentive, quality = _get(history, "incentive", 2), _get(history, "quality", 2)
  if incentive is None or quality is None:
    return _no_data(ax, "incentive vs quality")
  incentive, quality = incentive[-1], quality[-1]
  roles = _roles(history)
  servers = np.ones_like(incentive, bool) if roles is None else roles == SERVER
  rho = spearman(incentive[servers], -quality[servers])
  names = behaviour_names(history)
  kinds = np.asarray(names) if names else np.full(len(incentive), "server")
  for kind in dict.fromkeys(kinds[servers]):
    pick = servers & (kinds == kind)
    ax.scatter(quality[pick], incentive[pick], s=24, color=BEHAVIOUR_COLOURS.get(kind),
               label=kind)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
  ax.set(title=f"last epoch: Spearman rho(incentive, -loss) = {rho:.3f}",
         xlabel="true held-out loss of the server (nats/byte, lower is better)",
         ylabel="incentive (share)")
  ax.title.set_fontsize(9)


def _loss_panel(ax, history: dict) -> None:
  server, ensemble = _get(history, "server_loss", 2), _get(history, "ensemble_loss", 1)
  best = _get(history, "best_server_loss", 1)
  if server is None and ensemble is None and best is None:
    return _no_data(ax, "loss")
  num_epochs = next(v.shape[0] for v in (server, ensemble, best) if v is not None)
  x, xlabel = _x(history, num_epochs)
  if server is not None:
    ax.plot(x, server, color="lightgray", linewidth=0.7)
    ax.plot([], [], color="lightgray", label="per server")
  if best is not None:
    ax.plot(x, best, color="tab:orange", linewidth=1.5, label="best server")
  if ensemble is not None:
    ax.plot(x, ensemble, color="tab:blue", linewidth=1.5, label="ensemble")
  ax.legend(fontsize=7, loc="upper right")
  ax.set(title="held-out loss", xlabel=xlabel, ylabel="nats per byte")


def _registration_panel(ax, history: dict) -> None:
  regs, deregs = _get(history, "registrations", 1), _get(history, "deregistrations", 1)
  if regs is None and deregs is None:
    return _no_data(ax, "registrations")
  num_epochs = (regs if regs is not None else deregs).shape[0]
  x, xlabel = _x(history, num_epochs)
  step = np.min(np.diff(x)) if num_epochs > 1 and np.all(np.diff(x) > 0) else 1
  width = 0.4 * step
  if regs is not None:
    ax.bar(x - width / 2, regs, width=width, color="tab:green", label="registrations")
  if deregs is not None:
    ax.bar(x + width / 2, deregs, width=width, color="tab:red", label="deregistrations")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
  ax.set(title="registrations / deregistrations", xlabel=xlabel, ylabel="count per epoch")


def _save(fig: Figure, path, dpi: int = 100) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=dpi)
  return path


def plot_dashboard(history: dict, path, title: str = "", dpi: int = 100) -> pathlib.Path:
  """Writes a 2x3 dashboard PNG of a run.

  Args:
    history: arrays by name, as `history.read_all` returns them; all keys optional: stake,
      incentive, dividends, emission, quality, server_loss [E,N]; role [E,N] or roles [N]
      (0 server, 1 validator); ensemble_loss, best_server_loss, registrations,
      deregistrations, block [E]; behaviour [E,K] (server codes) and validator_behaviour
      (names) mark each line with what holds the uid.
    path: the PNG to write.
    title: the figure title (say what the run was: preset and key settings).
    dpi: resolution of the PNG (the figure is 16 x 9 inches).

  Returns:
    The path written.
  """
  fig = Figure(figsize=(16, 9), layout="constrained")
  axes = fig.subplots(2, 3).ravel()
  _stake_panel(axes[0], history)
  _lines_panel(axes[1], history, "incentive", SERVER, "incentive (servers)", "share of incentive")
  _lines_panel(axes[2], history, "dividends", VALIDATOR, "dividends (validators)",
               "share of dividends")
  _quality_panel(axes[3], history)
  _loss_panel(axes[4], history)
  _registration_panel(axes[5], history)
  if title:
    fig.suptitle(title)
  return _save(fig, path, dpi)


def _stack_rows(rows: list[dict], key: str) -> np.ndarray | None:
  """[E, n] array of one per-uid key, nan-padded when the uid count changes."""
  values = [np.asarray(r[key], np.float64).ravel() for r in rows if r.get(key) is not None]
  if not values or len(values) != len(rows):
    return None
  out = np.full((len(values), max(v.shape[0] for v in values)), np.nan)
  for i, v in enumerate(values):
    out[i, :v.shape[0]] = v
  return out


def plot_scenario(replay_rows: list[dict], path, title: str = "", dpi: int = 100
                  ) -> pathlib.Path:
  """Writes a PNG of a chain scenario replay.

  Args:
    replay_rows: one dict per epoch with keys block, incentive, dividends, consensus,
      emission, validator_permit (per uid) and bonds (n x n nested list); any may be missing.
      A uid that ever holds a permit or earns dividends is drawn as a validator.
    path: the PNG to write.
    title: the figure title.
    dpi: resolution of the PNG (the figure is 16 x 9 inches).

  Returns:
    The path written.
  """
  fig = Figure(figsize=(16, 9), layout="constrained")
  axes = fig.subplots(2, 3).ravel()
  blocks = [r.get("block") for r in replay_rows]
  if replay_rows and all(b is not None for b in blocks):
    x, xlabel = np.asarray(blocks), "block"
  else:
    x, xlabel = np.arange(len(replay_rows)), "epoch"
  # roles as the epochs show them: a uid that ever holds a validator permit or earns dividends
  # is a validator (a permit holder whose weights consensus rejects earns none)
  validator_U = None
  for key in ("validator_permit", "dividends"):
    values = _stack_rows(replay_rows, key)
    if values is not None:
      seen = np.nan_to_num(values).max(0) > 0
      if validator_U is None:
        validator_U = seen
      else:
        size = max(seen.shape[0], validator_U.shape[0])
        validator_U = np.pad(validator_U, (0, size - validator_U.shape[0])) | np.pad(
            seen, (0, size - seen.shape[0]))
  panels = [("dividends", True, "share of dividends"), ("incentive", False, "share of incentive"),
            ("consensus", False, "consensus weight"), ("emission", None, "TAO per epoch")]
  for ax, (key, validators, ylabel) in zip(axes, panels):
    values = _stack_rows(replay_rows, key)
    if values is None:
      _no_data(ax, key)
      continue
    if key == "emission":
      values = values / 1e9  # rao -> TAO
    uids = np.arange(values.shape[1])
    if validators is not None and validator_U is not None:
      mask = np.zeros(values.shape[1], bool)
      mask[:validator_U.shape[0]] = validator_U
      uids = np.flatnonzero(mask if validators else ~mask)
      if uids.size == 0:
        uids = np.arange(values.shape[1])
    is_v = lambda u: validator_U is not None and u < validator_U.shape[0] and validator_U[u]
    for uid in uids:
      ax.plot(x, values[:, uid], marker=".", linewidth=1, linestyle="-" if is_v(uid) else "--",
              label=f"uid {uid} ({'validator' if is_v(uid) else 'server'})")
    if uids.size <= 12:
      ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    who = {True: "validators", False: "servers", None: "every uid"}[validators]
    ax.set(title=f"{key} ({who})", xlabel=xlabel, ylabel=ylabel)
  bonds = replay_rows[-1].get("bonds") if replay_rows else None
  if bonds is None or np.size(bonds) == 0:
    _no_data(axes[4], "bonds (last epoch)")
  else:
    bonds = np.asarray(bonds, np.float64)
    image = axes[4].imshow(bonds, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=axes[4], label="stored bond (u16)")
    axes[4].set(title="bonds (last epoch)", xlabel="target uid", ylabel="bonding uid")
    if max(bonds.shape) <= 20:
      axes[4].set_xticks(range(bonds.shape[-1]))
      axes[4].set_yticks(range(bonds.shape[0]))
  axes[5].set_axis_off()
  if title:
    fig.suptitle(title)
  return _save(fig, path, dpi)
