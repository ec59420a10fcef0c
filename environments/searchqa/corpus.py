"""Passage corpora for search QA: reading JSONL corpora by line number, without loading them.

A corpus is a JSONL file, one passage a line, in any of the layouts in use:

* ``{"id", "contents"}`` with ``contents = '"Title"\\ntext'`` (FlashRAG / Search-R1,
  e.g. ``wiki-18.jsonl``, the 21M-passage Wikipedia-2018 dump);
* ``{"title", "text"}`` (DPR style, ``Ning-Guo__hotpotqa-agent/data/corpus.jsonl``);
* ``{"title", "paragraph_text"}`` (IRCoT paragraphs).

:class:`PassageStore` keeps only the byte offset of every line (8 bytes a passage,
computed once and cached beside the indexes), so a 14 GB corpus costs 170 MB of memory.

The default offline corpus, :func:`offline_hotpotqa_corpus`, merges the two HotpotQA
passage sets under ``<data root>/search_qa`` (duplicates dropped): the 4968 passages of
``Ning-Guo__hotpotqa-agent/data/corpus.jsonl`` (which cover its 500 HotpotQA
train-split questions) and the paragraphs of the 500 dev questions in
``xindili-cmu__anlp-project-multihop/.../dev_subsampled.jsonl`` — 9721 passages.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from opid_gym.data import DataNotFoundError, missing_data_message

OFFLINE_CORPUS_SOURCES = (
    "Ning-Guo__hotpotqa-agent/data/corpus.jsonl",
    "xindili-cmu__anlp-project-multihop/processed_data/hotpotqa/dev_subsampled.jsonl",
)
OFFLINE_CORPUS_NAME = "hotpotqa-offline"


@dataclass(frozen=True)
class Passage:
    title: str
    text: str

    @property
    def contents(self) -> str:
        """Title and text on two lines: what the retrievers index."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def parse_passage(rec: Mapping[str, Any]) -> Passage:
    """One corpus record in any supported layout → :class:`Passage`."""
    if "contents" in rec and "text" not in rec:
        head, _, body = str(rec["contents"]).partition("\n")
        if not body:  # no title line
            return Passage("", head.strip())
        return Passage(head.strip().strip('"').strip(), body.strip())
    text = rec.get("text", rec.get("paragraph_text", ""))
    return Passage(str(rec.get("title", "")).strip(), " ".join(str(text).split()))


def file_fingerprint(*paths: Path) -> str:
    """A short id of files by path, size and modification time (not their content)."""
    h = hashlib.sha1()
    for p in paths:
        st = Path(p).stat()
        h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


class PassageStore:
    """Random access to the passages of a JSONL corpus by line number.

    Args:
        path: the corpus file.
        offsets_path: where the cached line offsets live (computed when missing).
        progress: show a progress bar while scanning a new corpus.
    """

    def __init__(self, path: str | Path, offsets_path: str | Path, *, progress: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataNotFoundError(f"corpus file not found: {self.path}")
        offsets_path = Path(offsets_path)
        if not offsets_path.is_file():
            offsets_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_save_npy(offsets_path, self._scan(progress))
        self.offsets: np.ndarray = np.load(offsets_path, mmap_mode="r")
        self._fh: Any = None
        self._pid = -1

    def _scan(self, progress: bool) -> np.ndarray:
        from tqdm import tqdm

        offsets: list[int] = []
        pos = 0
        size = self.path.stat().st_size
        quiet = not progress or size < 1 << 26  # a bar only for corpora over 64 MB
        with open(self.path, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, disable=quiet,
                                              desc=f"scanning {self.path.name}") as bar:
            for line in f:
                if line.strip():
                    offsets.append(pos)
                pos += len(line)
                bar.update(len(line))
        return np.asarray(offsets, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def _file(self) -> Any:
        if self._fh is None or self._pid != os.getpid():  # one handle per process (forked workers)
            self._fh = open(self.path, "rb")
            self._pid = os.getpid()
            weakref.finalize(self, self._fh.close)  # closed with the corpus, or at exit
        return self._fh

    def __getitem__(self, index: int) -> Passage:
        if not 0 <= index < len(self):
            raise IndexError(f"passage {index} out of range for {len(self)} passages")
        f = self._file()
        f.seek(int(self.offsets[index]))
        return parse_passage(json.loads(f.readline()))

    def iter_range(self, start: int, stop: int) -> Iterator[Passage]:
        """Passages ``start`` … ``stop - 1`` in order (one sequential read)."""
        stop = min(stop, len(self))
        if start >= stop:
            return
        with open(self.path, "rb") as f:
            f.seek(int(self.offsets[start]))
            n = start
            while n < stop:
                line = f.readline()
                if not line:
                    break
                if line.strip():
                    yield parse_passage(json.loads(line))
                    n += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def offline_hotpotqa_corpus(search_qa_root: Path, cache_dir: Path) -> Path:
    """The merged offline HotpotQA corpus as one JSONL file in ``cache_dir`` (built once)."""
    sources = [search_qa_root / s for s in OFFLINE_CORPUS_SOURCES]
    missing = [s for s in sources if not s.is_file()]
    if missing:
        raise DataNotFoundError(missing_data_message(
            "search QA offline HotpotQA corpus", missing[0],
            "no download: it is the small offline corpus; pass corpus=<path to a JSONL corpus> instead "
            "(see docs/searchqa.md)"))
    target = cache_dir / "corpora" / f"{OFFLINE_CORPUS_NAME}-{file_fingerprint(*sources)}.jsonl"
    if target.is_file():
        return target
    seen: set[tuple[str, str]] = set()
    records: list[dict[str, str]] = []

    def add(p: Passage) -> None:
        key = (p.title, p.text)
        if p.text and key not in seen:
            seen.add(key)
            records.append({"id": str(len(records)), "title": p.title, "text": p.text})

    with open(sources[0], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                add(parse_passage(json.loads(line)))
    with open(sources[1], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                for ctx in json.loads(line).get("contexts", []):
                    add(parse_passage(ctx))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return target
