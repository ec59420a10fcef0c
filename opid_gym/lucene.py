"""A thin helper around pyserini's Lucene BM25: build an index from JSONL, search it.

Shared by the environment families that offer a Lucene retriever (search QA, WebShop).
pyserini is optional and imported lazily (``pip install 'opid-gym[search-lucene]'``);
it needs a Java runtime: pyserini 0.25 runs on Java 11+ (Debian's
``openjdk-17-jre-headless``).

* :func:`build_index` runs pyserini's indexer (``python -m pyserini.index.lucene``) in a
  subprocess over a folder of ``{"id", "contents"}`` JSONL files. It writes into a
  temporary folder and renames it when Lucene has finished, so an interrupted build
  never leaves a half index behind, and a finished index is reused.
* :class:`LuceneIndex` searches an index through pyserini's Java classes directly
  (``io.anserini.search.SimpleSearcher``): importing ``pyserini.search`` would also
  load torch, onnxruntime and an OpenAI client, which BM25 does not need.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

INSTALL_HINT = (
    "the Lucene retriever needs pyserini and a Java 11+ runtime: pip install 'opid-gym[search-lucene]' "
    "(pyserini==0.25.0) and e.g. apt-get install openjdk-17-jre-headless"
)
DONE_MARKER = "opid_index_complete"


class LuceneUnavailable(ImportError):
    """pyserini or Java is missing; the message says how to install them."""


def available() -> bool:
    """Whether pyserini is importable and a ``java`` executable is on the PATH (or JAVA_HOME)."""
    import importlib.util

    if importlib.util.find_spec("pyserini") is None:
        return False
    java_home = os.environ.get("JAVA_HOME")
    return bool(shutil.which("java") or (java_home and Path(java_home, "bin", "java").exists()))


def _require() -> None:
    if not available():
        raise LuceneUnavailable(INSTALL_HINT)


def is_built(index_dir: str | Path) -> bool:
    return (Path(index_dir) / DONE_MARKER).is_file()


def build_index(
    collection_dir: str | Path, index_dir: str | Path, *, threads: int = 1, store_raw: bool = False,
    verbose: bool = True, extra_args: Sequence[str] = (),
) -> Path:
    """Index every ``*.jsonl`` file of ``collection_dir`` (``{"id", "contents"}`` lines) into
    ``index_dir`` with pyserini's default English analyzer; reuse a finished index.

    ``verbose`` streams Lucene's progress log to stderr; otherwise it is shown only on failure.
    """
    _require()
    index_dir = Path(index_dir)
    if is_built(index_dir):
        return index_dir
    partial = index_dir.with_name(index_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    cmd = [
        sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection",
        "--input", str(collection_dir), "--index", str(partial),
        "--generator", "DefaultLuceneDocumentGenerator", "--threads", str(int(threads)),
        *(["--storeRaw"] if store_raw else []), *extra_args,
    ]
    # Lucene logs its settings at length; keep the progress lines ("N docs added",
    # "Indexing Complete") and warnings on screen, and the whole log for errors.
    log: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            if verbose and any(w in line for w in ("docs added", "Complete", "documents indexed", "WARN", "ERROR")):
                print(line.rstrip(), file=sys.stderr, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pyserini indexing failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{''.join(log)[-4000:]}")
    (partial / DONE_MARKER).write_text("ok\n")
    if index_dir.exists():
        shutil.rmtree(index_dir)
    os.replace(partial, index_dir)
    return index_dir


class LuceneIndex:
    """BM25 search over a Lucene index (pyserini's defaults: k1=0.9, b=0.4).

    Hits are ``(docid, score)`` pairs, best first.
    """

    def __init__(self, index_dir: str | Path, *, k1: float = 0.9, b: float = 0.4) -> None:
        _require()
        try:
            from pyserini.pyclass import JString, autoclass  # starts the JVM with Anserini's jar
        except Exception as exc:  # pragma: no cover - depends on the install
            raise LuceneUnavailable(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
        self._jstr = JString
        searcher_cls = autoclass("io.anserini.search.SimpleSearcher")
        self._searcher = searcher_cls(JString(str(index_dir)))
        self._searcher.set_bm25(float(k1), float(b))
        self.index_dir = Path(index_dir)

    @property
    def num_docs(self) -> int:
        return int(self._searcher.get_total_num_docs())

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        hits = self._searcher.search(self._jstr(query), int(k))
        return [(str(h.docid), float(h.score)) for h in hits]

    def batch_search(self, queries: Sequence[str], k: int = 10, threads: int = 1) -> list[list[tuple[str, float]]]:
        from pyserini.pyclass import JArrayList

        qs, ids = JArrayList(), JArrayList()
        for i, q in enumerate(queries):
            qs.add(q)
            ids.add(str(i))
        results = self._searcher.batch_search(qs, ids, int(k), int(threads))
        by_id = {str(r.getKey()): r.getValue() for r in results.entrySet().toArray()}
        return [[(str(h.docid), float(h.score)) for h in by_id.get(str(i), [])] for i in range(len(queries))]

    def close(self) -> None:
        self._searcher.close()
