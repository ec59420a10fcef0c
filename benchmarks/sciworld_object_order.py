"""Does a ScienceWorld task list its objects in the same order in every JVM?

Loads ``measure-melting-point-unknown-substance`` variation 205 (three wood cups of
paint) in JVMs started in different ways, with the JVM's default identity hash and with
opid-gym's :data:`environments.sciworld.env.JVM_OPTIONS`, and prints for each the order
of the cups at reset, a hash of the whole first observation and gold path, and the
time the gold path takes to replay:

* a fresh JVM, twice;
* a fresh JVM with ``-XX:+UseSerialGC`` (another garbage collector);
* one JVM that loaded two other tasks first.

Same hash in every row of a block = the episode does not depend on the JVM (see
docs/sciworld.md, "A fixed object order").

    python benchmarks/sciworld_object_order.py
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from environments.sciworld.env import JVM_OPTIONS, _start_engine  # noqa: E402

TASK, VARIATION = "measure-melting-point-unknown-substance", 205
BEFORE = [("boil", 0), ("chemistry-mix-paint-secondary-color", 3)]


def _episode(engine, replay: bool) -> str:
    engine.load(TASK, VARIATION, "easy", generateGoldPath=True)
    observation, _ = engine.reset()
    gold = list(engine.get_gold_action_sequence())
    cups = [line.split("containing ")[1].split(" ")[0] for line in observation.splitlines() if "wood cup" in line]
    digest = hashlib.sha256("\n".join([observation, *gold]).encode()).hexdigest()[:10]
    row = f"cups {'-'.join(cups):<20} episode {digest}"
    if replay:
        start = time.perf_counter()
        for action in gold:
            engine.step(action)
        row += f"  gold path {len(gold)} steps {time.perf_counter() - start:5.1f} s"
    return row


def _stop(engine) -> None:
    proc = engine._gateway.java_process
    engine.close()
    proc.terminate()
    proc.wait()


def main() -> None:
    for label, base in [("JVM default identity hash", ""), (f"opid-gym's {JVM_OPTIONS}", JVM_OPTIONS)]:
        print(label)
        for name, extra in [("fresh JVM", ""), ("fresh JVM again", ""), ("fresh JVM, -XX:+UseSerialGC", "-XX:+UseSerialGC")]:
            engine = _start_engine(1000, " ".join(o for o in (base, extra) if o))
            print(f"  {name:<32} {_episode(engine, replay=name == 'fresh JVM')}", flush=True)
            _stop(engine)
        engine = _start_engine(1000, base)
        for task, variation in BEFORE:
            engine.load(task, variation, "easy", generateGoldPath=True)
            engine.reset()
        print(f"  {'after two other tasks':<32} {_episode(engine, replay=False)}", flush=True)
        _stop(engine)


if __name__ == "__main__":
    main()
