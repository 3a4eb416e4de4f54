r"""Every knowledge exchange x scoring on one network: test loss and incentive spread.

One combination (words in any order: an exchange, a scoring, a preset of configs/default.py):

  python scripts/train.py --config=configs/experiments/knowledge_exchange.py:diloco,shapley,small \
      --workdir=runs/diloco_shapley

The table of every combination (runs <workdir>/<exchange>_<scoring>, resuming finished ones, then
writes <workdir>/knowledge_exchange.csv and knowledge_exchange.png; one preset run per
combination, 14 in all):

  python configs/experiments/knowledge_exchange.py --preset=smoke --workdir=runs/knowledge_exchange

Exchanges: none, distill, average, diloco (bittensor_jax/exchange.py). Scorings: loss, loo,
shapley, and delta (average / diloco only). The spread of the incentive is the largest mean
incentive of any server (`top_incentive_share`) and the Gini coefficient of the honest servers'
mean incentives.
"""
import pathlib
import sys

import ml_collections

if __name__ == "__main__":  # run as a script from the repository root
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bittensor_jax import config as config_lib  # noqa: E402
from bittensor_jax import exchange  # noqa: E402

SCORINGS = ("loss", "loo", "shapley", "delta")
PRESETS = ("smoke", "small", "large")
COMBOS = tuple((e, s) for e in exchange.MODES for s in SCORINGS
               if s != "delta" or e in exchange.SYNCING)
COLUMNS = ("exchange", "scoring", "ensemble_loss", "best_server_loss", "isolated_server_loss",
           "participation_gain", "participation_gain_all", "honest_servers_earning",
           "top_incentive_share", "honest_incentive_gini", "copier_incentive_ratio",
           "newcomers_earning", "quality_incentive_spearman", "ngram_loss", "blocks_per_second")
DEFAULT = pathlib.Path(__file__).resolve().parents[1] / "default.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """arg = words among {an exchange, a scoring, a preset}; defaults: the preset's own."""
  words = [w.strip() for w in (arg or "").split(",") if w.strip()]
  known = exchange.MODES + SCORINGS + PRESETS
  unknown = [w for w in words if w not in known]
  if unknown:
    raise ValueError(f"knowledge_exchange.py: unknown word {unknown[0]!r} in {arg!r}; use an "
                     f"exchange {exchange.MODES}, a scoring {SCORINGS} and a preset {PRESETS}")
  pick = lambda group: [w for w in words if w in group]  # noqa: E731
  if any(len(pick(g)) > 1 for g in (exchange.MODES, SCORINGS, PRESETS)):
    raise ValueError(f"knowledge_exchange.py: {arg!r} names two of one kind")
  preset = pick(PRESETS)
  c = config_lib.load_config_file(f"{DEFAULT}:{preset[0] if preset else ''}")
  if pick(exchange.MODES):
    c.network.exchange = pick(exchange.MODES)[0]
  if pick(SCORINGS):
    c.network.scoring = pick(SCORINGS)[0]
  return c


def gini(x) -> float:
  """The Gini coefficient of nonnegative values (0: equal, near 1: one holds everything)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  x = np.sort(np.asarray(x, np.float64))
  if len(x) == 0 or x.sum() <= 0:
    return float("nan")
  n = len(x)
  return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def table_row(exchange_mode: str, scoring: str, summary: dict) -> dict:
  """One row of the table from a run's summary.json."""
  honest = [r["incentive"] for r in summary.get("servers", []) if r["behaviour"] == "honest"]
  row = {k: summary.get(k) for k in COLUMNS}
  row.update(exchange=exchange_mode, scoring=scoring, honest_incentive_gini=gini(honest))
  return row


def plot_table(frame, path) -> None:
  """Test loss (ensemble, best server, twin) and incentive spread per combination, as a PNG."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  labels = [f"{e}\n{s}" for e, s in zip(frame["exchange"], frame["scoring"])]
  x = np.arange(len(frame))
  fig = Figure(figsize=(max(8, 0.9 * len(frame)), 7), layout="constrained")
  ax1, ax2 = fig.subplots(2, 1, sharex=True)
  for i, (key, name) in enumerate((("ensemble_loss", "ensemble"),
                                   ("best_server_loss", "best server"),
                                   ("isolated_server_loss", "isolated twin (median)"))):
    ax1.bar(x + (i - 1) * 0.27, frame[key].astype(float), 0.27, label=name)
  ngram = frame["ngram_loss"].astype(float).dropna()
  if len(ngram):
    ax1.axhline(float(ngram.iloc[0]), color="k", ls="--", lw=1, label="byte trigram")
  lo = np.nanmin(frame[["ensemble_loss", "best_server_loss", "ngram_loss"]].astype(float)
                 .to_numpy())
  ax1.set_ylim(lo - 0.1, None)  # the trigram line stays in view
  ax1.set_ylabel("test loss (nats/byte)")
  ax1.legend(fontsize=8, ncols=4)
  ax2.bar(x - 0.2, frame["top_incentive_share"].astype(float), 0.4, label="top incentive share")
  ax2.bar(x + 0.2, frame["honest_incentive_gini"].astype(float), 0.4,
          label="Gini of honest servers' incentive")
  ax2.set_ylabel("incentive spread")
  ax2.set_xticks(x, labels, fontsize=8)
  ax2.legend(fontsize=8)
  FigureCanvasAgg(fig).print_png(str(path))


def main(argv) -> None:
  """Runs every combination on one network and writes the table as CSV and PNG."""
  import json  # pylint: disable=import-outside-toplevel
  import pandas as pd  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  from bittensor_jax import loop  # pylint: disable=import-outside-toplevel
  del argv
  f = flags.FLAGS
  workdir = pathlib.Path(f.workdir)
  rows = []
  for e, s in COMBOS:
    run_dir = workdir / f"{e}_{s}"
    summary_file = run_dir / "summary.json"
    if summary_file.is_file():
      summary = json.loads(summary_file.read_text())
    else:
      c = get_config(f"{e},{s},{f.preset}")
      if f.blocks:
        c.run.blocks = f.blocks
      summary = loop.train_and_evaluate(c, run_dir)
    rows.append(table_row(e, s, summary))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(workdir / "knowledge_exchange.csv", index=False, float_format="%.4f")
    plot_table(frame, workdir / "knowledge_exchange.png")
  print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=ungrouped-imports
  flags.DEFINE_string("workdir", "runs/knowledge_exchange", "Folder for the runs and the table.")
  flags.DEFINE_enum("preset", "smoke", list(PRESETS), "The network (configs/default.py preset).")
  flags.DEFINE_integer("blocks", 0, "Blocks per run (0: the preset's run.blocks).")
  app.run(main)
