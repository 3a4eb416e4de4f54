"""A byte n-gram language model with interpolated Kneser-Ney smoothing: the non-neural yardstick.

Fitted on the union of the server shards (a centralized model that sees every shard, which no
neuron does), it gives every test loss of the network a reference point (`ngram_loss` in
summary.json). Counting and scoring are vectorized numpy: contexts are packed into int64 codes
(8 bits per byte, so orders up to 7), counted with `np.unique` and looked up with `searchsorted`.

Interpolated Kneser-Ney (Chen & Goodman 1998, eq. 17, one discount per order):

  P_n(c | h) = max(N(h c) - d, 0) / N(h .) + d * N1+(h .) / N(h .) * P_{n-1}(c | h')

where h' drops the oldest byte of h; the highest order uses raw counts N, the lower orders use
continuation counts (the number of distinct bytes seen before `h c`); an unseen context backs off
entirely to the lower order, and the order-0 model is uniform over the 256 bytes.

Dims: T bytes   S sequences
"""
from __future__ import annotations

import dataclasses

import numpy as np

VOCAB = 256


def _codes(seq_T: np.ndarray, n: int) -> np.ndarray:
  """i64[T-n+1] code of every n-gram of a byte sequence (oldest byte in the high bits)."""
  seq = np.asarray(seq_T, np.int64)
  out = np.zeros(max(seq.shape[0] - n + 1, 0), np.int64)
  for i in range(n):
    out = (out << 8) | seq[i:seq.shape[0] - n + 1 + i]
  return out


@dataclasses.dataclass(frozen=True)
class _Table:
  """Sorted unique keys with their counts."""
  keys: np.ndarray
  counts: np.ndarray

  @classmethod
  def of(cls, codes: np.ndarray) -> "_Table":
    keys, counts = np.unique(codes, return_counts=True)
    return cls(keys, counts.astype(np.float64))

  def get(self, q: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(self.keys, q), 0, max(len(self.keys) - 1, 0))
    if not len(self.keys):
      return np.zeros(q.shape, np.float64)
    return np.where(self.keys[i] == q, self.counts[i], 0.0)


@dataclasses.dataclass(frozen=True)
class NGram:
  """A fitted model: per order m (1..n) the counts of m-grams, their contexts and fan-outs."""
  order: int
  discount: float
  grams: tuple      # m-gram counts (raw for m = n, continuation counts below)
  contexts: tuple   # sum of those counts per (m-1)-byte context
  fanout: tuple     # number of distinct next bytes per context

  def logprobs(self, seq_T: np.ndarray, start: int | None = None) -> np.ndarray:
    """log P(seq[t] | seq[t-n+1:t]) in nats for t = start..T-1: f64[T - start].

    Positions closer than n-1 bytes to the start of `seq_T` use the shorter context available.
    """
    seq = np.asarray(seq_T, np.int64)
    start = self.order - 1 if start is None else start
    pos = np.arange(start, seq.shape[0])
    p = np.full(pos.shape, 1.0 / VOCAB)
    for m in range(1, self.order + 1):
      ok = pos >= m - 1
      gram = np.zeros(pos.shape, np.int64)
      for i in range(m):  # bytes t-m+1 .. t, oldest in the high bits
        gram = (gram << 8) | seq[np.maximum(pos - m + 1 + i, 0)]
      ctx = gram >> 8
      n_ctx = self.contexts[m - 1].get(ctx)
      seen = ok & (n_ctx > 0)
      safe = np.where(seen, n_ctx, 1.0)
      hit = np.maximum(self.grams[m - 1].get(gram) - self.discount, 0.0) / safe
      back = self.discount * self.fanout[m - 1].get(ctx) / safe
      p = np.where(seen, hit + back * p, p)
    return np.log(p)


def fit(sequences, order: int = 3, discount: float = 0.75) -> NGram:
  """Fits an interpolated Kneser-Ney byte n-gram model on several byte sequences.

  Args:
    sequences: byte arrays (uint8 or ints in [0, 256)); n-grams never span two sequences.
    order: n, in [1, 7].
    discount: the absolute discount d in (0, 1).

  Returns:
    The fitted `NGram`.

  Raises:
    ValueError: a bad order or discount, or no sequence as long as `order`.
  """
  if not 1 <= order <= 7:
    raise ValueError(f"ngram order: must be in [1, 7], got {order}")
  if not 0 < discount < 1:
    raise ValueError(f"ngram discount: must be in (0, 1), got {discount}")
  seqs = [np.asarray(s, np.int64) for s in sequences]
  if not any(s.shape[0] >= order for s in seqs):
    raise ValueError(f"ngram: no sequence holds {order} bytes")
  top = np.concatenate([_codes(s, order) for s in seqs])
  grams, contexts, fanout = [], [], []
  for m in range(order, 0, -1):
    if m == order:
      table = _Table.of(top)
    else:  # continuation counts: distinct bytes seen before each m-gram
      uniq = np.unique(np.concatenate([_codes(s, m + 1) for s in seqs]))
      table = _Table.of(uniq & ((1 << (8 * m)) - 1))
    ctx = table.keys >> 8
    ctx_keys, first = np.unique(ctx, return_index=True)
    sums = np.add.reduceat(table.counts, first) if len(first) else np.zeros(0)
    fans = np.diff(np.append(first, len(ctx))).astype(np.float64)
    grams.append(table)
    contexts.append(_Table(ctx_keys, sums))
    fanout.append(_Table(ctx_keys, fans))
  return NGram(order, discount, tuple(grams[::-1]), tuple(contexts[::-1]), tuple(fanout[::-1]))
