"""Parser time against response length: linear, not quadratic (issue 17.8).

For each parser and each adversarial response (one opening tag repeated, never
closed), times the parse at 64 KB, 256 KB and 1 MB and prints the seconds and the ratio
to the previous size. Linear time gives ratios near 4 (1 MB is past the parsers' read
bound, so its ratio is lower); the old regex parser took 3.2 s at 68 KB and over 120 s
at 1 MB (ratios near 16).

    python benchmarks/parser_time.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opid_gym.parsing import PARSERS  # noqa: E402

SIZES = (65_536, 262_144, 1_048_576)
UNITS = ("<think>", "<action>", "<search>", "<answer>")


def best_of(fn, text: str, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    print(f"{'parser':22s} {'unit':9s} " + "  ".join(f"{n // 1024:>5d} KB (ratio)" for n in SIZES))
    for name, parse in PARSERS.items():
        for unit in UNITS:
            cells, prev = [], None
            for n in SIZES:
                t = best_of(parse, unit * (n // len(unit)))
                cells.append(f"{t * 1e3:8.2f} ms ({t / prev:4.1f})" if prev else f"{t * 1e3:8.2f} ms (  - )")
                prev = t
            print(f"{name:22s} {unit:9s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
