"""PNG figures of the studies (matplotlib `Figure` + Agg canvas: no pyplot state, no display)."""
from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig: Figure, path: pathlib.Path) -> pathlib.Path:
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  return path


def consensus_figures(directory, rows: Sequence[dict], grids: dict, grid_step: float,
                      sweeps: dict, baseline: dict) -> list[pathlib.Path]:
  """Retention contours (W_H on x, W_C on y), the retention lines and the four sweeps.

  Args:
    directory: output folder (exists).
    rows: `consensus_guarantees.run` rows.
    grids: mean E_H grids [W_H, W_C] keyed by (sigma_w, kappa, bonds_penalty, validator_share,
      honest_stake).
    grid_step: the grid step (for the axes).
    sweeps: {parameter: values}.
    baseline: the baseline setting.

  Returns:
    The written paths.
  """
  directory = pathlib.Path(directory)
  out = []
  base_key = tuple(baseline[k] for k in ("sigma_w", "kappa", "bonds_penalty", "validator_share"))
  base = {k[-1]: g for k, g in grids.items() if k[:-1] == base_key}
  for sh, g in sorted(base.items()):
    n = g.shape[0]
    axis = np.linspace(0, 1, n)
    fig = Figure(figsize=(4.6, 4))
    ax = fig.add_subplot()
    cs = ax.contourf(axis, axis, g.T, levels=np.linspace(0, 1, 21), cmap="viridis")
    fig.colorbar(cs, ax=ax, label="honest emission $E_H$")
    ax.contour(axis, axis, g.T, levels=[sh], colors="red", linewidths=2)
    ax.set_xlabel("honest utility (self-weight) $W_H$")
    ax.set_ylabel("cabal self-weight $W_C$")
    ax.set_title(f"$E_H$ at $S_H$ = {sh:g} (red: $E_H = S_H$)")
    out.append(_save(fig, directory / f"consensus_emission_{round(100 * sh)}.png"))
  if base:
    fig = Figure(figsize=(4.6, 4))
    ax = fig.add_subplot()
    for sh, g in sorted(base.items()):
      axis = np.linspace(0, 1, g.shape[0])
      cs = ax.contour(axis, axis, g.T, levels=[sh],
                      colors=[tuple(np.array([0.1, 0.3, 0.9]) * sh)])
      ax.clabel(cs, fmt={sh: f"{sh:g}"}, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("honest utility $W_H$")
    ax.set_ylabel("cabal self-weight $W_C$")
    ax.set_title("retention lines $E_H = S_H$ (baseline)")
    out.append(_save(fig, directory / "consensus_retention_lines.png"))
  fig = Figure(figsize=(13, 3.4))
  for p, (name, values) in enumerate(sweeps.items()):
    ax = fig.add_subplot(1, len(sweeps), p + 1)
    for v in values:
      pts = sorted((r["honest_stake"], r["honest_utility_required"]) for r in rows
                   if r[name] == v and all(r[o] == baseline[o] for o in baseline if o != name))
      if pts:
        x, y = np.array(pts, dtype=float).T
        ax.plot(x, y, "o-", label=f"{name} = {v:g}")
    ax.set_xlabel("honest stake $S_H$")
    ax.set_ylabel("honest utility required")
    ax.set_ylim(0.4, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(f"worst-case honest utility required (grid step {grid_step:g})")
  out.append(_save(fig, directory / "consensus_sweeps.png"))
  return out


def bar_table(path, title: str, labels: Sequence[str], series: dict[str, Sequence[float]],
              ylabel: str) -> pathlib.Path:
  """Grouped bars: one group per label, one bar per series (e.g. per variant)."""
  fig = Figure(figsize=(max(6, 0.9 * len(labels) * max(1, len(series)) / 3), 3.8))
  ax = fig.add_subplot()
  width = 0.8 / max(1, len(series))
  x = np.arange(len(labels))
  for k, (name, vals) in enumerate(series.items()):
    ax.bar(x + k * width - 0.4 + width / 2, np.asarray(vals, float), width, label=name)
  ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
  ax.axhline(0, color="k", lw=0.6)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(fontsize=6, ncol=2)
  return _save(fig, pathlib.Path(path))


def lines(path, title: str, x: np.ndarray, series: dict[str, np.ndarray], xlabel: str,
          ylabel: str) -> pathlib.Path:
  """Line chart of several series over x."""
  fig = Figure(figsize=(6, 3.8))
  ax = fig.add_subplot()
  for name, y in series.items():
    ax.plot(x, np.asarray(y, float), label=name)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  return _save(fig, pathlib.Path(path))


def case_panels(path, title: str, panels: Sequence[str], groups: Sequence[str],
                series: dict[str, np.ndarray], ylabel: str, ncols: int = 4) -> pathlib.Path:
  """One small grouped-bar panel per case: a group per validator, a bar per series (variant).

  Args:
    path: the PNG to write.
    title: the figure title.
    panels: panel titles (one per case).
    groups: group labels within a panel (the validators).
    series: {variant: values[panel, group]}.
    ylabel: the y label of the leftmost panels.
    ncols: panels per row.
  """
  nrows = -(-len(panels) // ncols)
  height = 2.5 * nrows + 1.0
  fig = Figure(figsize=(4.2 * ncols, height))
  width = 0.8 / max(1, len(series))
  x = np.arange(len(groups))
  colors = [f"C{k % 10}" if k < 10 else "k" for k in range(len(series))]
  handles = []
  for p, name in enumerate(panels):
    ax = fig.add_subplot(nrows, ncols, p + 1)
    for k, (label, vals) in enumerate(series.items()):
      bars = ax.bar(x + k * width - 0.4 + width / 2, np.asarray(vals, float)[p], width,
                    color=colors[k], label=label)
      if p == 0:
        handles.append(bars)
    ax.set_xticks(x, groups, fontsize=8)
    ax.axhline(0, color="k", lw=0.6)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(name, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    if p % ncols == 0:
      ax.set_ylabel(ylabel, fontsize=8)
  fig.suptitle(title, y=1 - 0.05 / height, fontsize=12)
  fig.legend(handles, list(series), loc="upper center", ncol=min(len(series), 6), fontsize=8,
             bbox_to_anchor=(0.5, 1 - 0.35 / height))
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.85 / height))
  return _save(fig, pathlib.Path(path))
