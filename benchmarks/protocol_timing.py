"""How long resolving a protocol takes, with a cold and a warm file-hash cache.

    OPID_GYM_DATA=../shared/data python -m benchmarks.protocol_timing [--benchmark alfworld-unseen]

Prints the median of a few repeats of each, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    import opid_gym
    from benchmarks.protocols import FileHashCache, protocol_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="alfworld-unseen")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench = opid_gym.BENCHMARKS.get(args.benchmark)
    cold, warm, hashes = [], [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            cache_file = Path(tmp) / f"cache{i}.json"
            t0 = time.perf_counter()
            hashes.add(protocol_for(bench, cache=FileHashCache(cache_file)).hash)
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            p = protocol_for(bench, cache=FileHashCache(cache_file))
            warm.append(time.perf_counter() - t0)
            hashes.add(p.hash)
    assert len(hashes) == 1, hashes
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"{p.id}#{p.hash}: {len(p.task_ids)} tasks, {p.document['data']['files']} data files")
    print(f"cold cache {c:.3f} s   warm cache {w:.3f} s   cold/warm {c / w:.2f}x   (median of {args.repeats})")


if __name__ == "__main__":
    main()
