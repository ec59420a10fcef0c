"""How often WebShop's two search backends agree, on the goal queries.

For every distinct goal instruction (lower-cased, as a ``search[...]`` of it would be)
both backends search the catalogue; the script prints the share of queries whose
top 10 is identical (same products, same order), whose top-10 *set* is identical,
and whose whole top 50 is identical, plus how often each backend has the goal
product in its top 50, and the mean time per query of each, measured side by side.

    python benchmarks/search_agreement.py [--split all] [--data-root DIR] [--show 5]

Needs both backends: bm25s (``opid-gym[webshop]``) and pyserini + Java
(``opid-gym[webshop-lucene]``, see docs/webshop.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from environments.webshop.catalogue import find_catalogue_files, load_catalogue  # noqa: E402
from environments.webshop.goals import split_goals  # noqa: E402
from environments.webshop.search import Bm25sEngine, LuceneEngine, lucene_available  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="all", choices=["eval", "train", "human", "all"])
    parser.add_argument("--catalogue", default="1k", choices=["1k", "full"])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--show", type=int, default=3, help="print this many disagreements")
    args = parser.parse_args()
    if not lucene_available():
        print("the Lucene backend is not available (pyserini, pyjnius, Java): see docs/webshop.md", file=sys.stderr)
        return 2
    catalogue = load_catalogue(find_catalogue_files(args.data_root, args.catalogue))
    asins, checksum = [p.asin for p in catalogue.products], catalogue.checksum()
    engines = {
        "lucene": LuceneEngine(asins, catalogue.contents, checksum=checksum),
        "bm25s": Bm25sEngine(catalogue.contents, checksum=checksum),
    }
    goals = split_goals(catalogue, args.split)
    queries: dict[str, set[int]] = {}
    for g in goals:
        queries.setdefault(g.instruction_text.lower(), set()).add(catalogue.index_of(g.asin))
    results: dict[str, dict[str, list[int]]] = {}
    seconds: dict[str, float] = {}
    for name, engine in engines.items():
        engine.search("warm up")
        start = time.perf_counter()
        results[name] = {q: engine.search(q) for q in queries}
        seconds[name] = time.perf_counter() - start
    n = len(queries)
    lucene, bm25s = results["lucene"], results["bm25s"]
    top10 = sum(lucene[q][:10] == bm25s[q][:10] for q in queries)
    set10 = sum(set(lucene[q][:10]) == set(bm25s[q][:10]) for q in queries)
    top50 = sum(lucene[q] == bm25s[q] for q in queries)
    print(f"catalogue {args.catalogue} ({len(catalogue)} products), split {args.split}: {n} distinct goal queries")
    print(f"top-10 identical (order too): {top10}/{n} = {top10 / n:.4f}")
    print(f"top-10 same set:              {set10}/{n} = {set10 / n:.4f}")
    print(f"top-50 identical:             {top50}/{n} = {top50 / n:.4f}")
    for name in engines:
        hit = sum(bool(targets & set(results[name][q])) for q, targets in queries.items())
        print(f"{name:7s} goal product in top 50: {hit / n:.4f}   {1000 * seconds[name] / n:.2f} ms/query")
    print(f"time ratio lucene/bm25s: {seconds['lucene'] / seconds['bm25s']:.2f}")
    shown = 0
    for q in queries:
        if lucene[q][:10] != bm25s[q][:10] and shown < args.show:
            shown += 1
            print(f"\n  {q}\n    lucene {[asins[i] for i in lucene[q][:10]]}\n    bm25s  {[asins[i] for i in bm25s[q][:10]]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
