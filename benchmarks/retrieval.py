"""Retrievers side by side on the offline HotpotQA corpus: recall@3 and queries per second.

    python benchmarks/retrieval.py --data-root ../shared/data [--retrievers bm25s,pyserini,dense]

For each retriever: the oracle-retrieval recall@3 (a gold answer string in the top-3
passages of one search with the question text; see environments/searchqa/oracle.py) on
the 500 train-split and 500 dev HotpotQA questions the corpus covers, and the search
speed one query at a time (as the environment searches) and batched. Indexes are built
on first use under --index-dir and reused; the build time is shown apart. All
retrievers run in this one process on the same machine, so their speeds compare.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from environments.searchqa.oracle import covered_questions, recall_at_k  # noqa: E402
from environments.searchqa.retrievers import RetrieverConfig, build_retriever, index_folder  # noqa: E402
from opid_gym import lucene  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="data root (default: $OPID_GYM_DATA)")
    p.add_argument("--index-dir", default=None, help="index cache (default: ~/.cache/opid-gym/search_index)")
    p.add_argument("--retrievers", default="bm25s,pyserini,dense")
    p.add_argument("--encoder", default="minilm", help="dense encoder (minilm = the packaged all-MiniLM-L6-v2)")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--speed-queries", type=int, default=300, help="queries timed one by one")
    args = p.parse_args(argv)

    questions = covered_questions(args.data_root)
    rows = []
    for kind in args.retrievers.split(","):
        if kind == "pyserini" and not lucene.available():
            print(f"skipping pyserini: {lucene.INSTALL_HINT}", file=sys.stderr)
            continue
        cfg = RetrieverConfig(kind=kind, data_root=args.data_root, index_dir=args.index_dir, encoder=args.encoder)
        corpus = cfg.corpus_path()
        cached = index_folder(cfg, corpus).is_dir() and (index_folder(cfg, corpus) / "manifest.json").is_file()
        t0 = time.perf_counter()
        retriever = build_retriever(cfg)
        open_s = time.perf_counter() - t0
        found = recall_at_k(retriever, questions, args.k)  # also warms the retriever up
        by_split = {s: [f for f, q in zip(found, questions) if q.split == s] for s in ("train", "dev")}
        speed_qs = [q.question for q in questions[: args.speed_queries]]
        t0 = time.perf_counter()
        for q in speed_qs:
            retriever.search(q, args.k)
        single = len(speed_qs) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        retriever.search_batch([q.question for q in questions], args.k)
        batch = len(questions) / (time.perf_counter() - t0)
        name = f"dense ({args.encoder})" if kind == "dense" else kind
        rows.append((name, sum(by_split["train"]) / len(by_split["train"]), sum(by_split["dev"]) / len(by_split["dev"]),
                     sum(found) / len(found), single, batch, open_s, "cached" if cached else "built"))
        passages = len(retriever.store)

    print(f"\noracle-retrieval report: offline HotpotQA corpus ({passages} passages), one search with the question "
          f"text, top-{args.k}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}, "
          f"python {platform.python_version()}")
    head = ("retriever", "R@3 train(500)", "R@3 dev(500)", "R@3 all", "q/s one-by-one", "q/s batch", "open s", "index")
    widths = (18, 14, 12, 8, 15, 10, 8, 7)
    print(" ".join(f"{h:{w}s}" if i == 0 else f"{h:>{w}s}" for i, (h, w) in enumerate(zip(head, widths))))
    for name, tr, dv, al, single, batch, open_s, state in rows:
        print(f"{name:18s} {tr:14.3f} {dv:12.3f} {al:8.3f} {single:15.1f} {batch:10.1f} {open_s:8.1f} {state:>7s}")
    if len(rows) > 1:
        base = rows[0]
        print("speed relative to " + base[0] + ": " + ", ".join(
            f"{r[0]} {r[4] / base[4]:.2f}x one-by-one, {r[5] / base[5]:.2f}x batch" for r in rows[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
