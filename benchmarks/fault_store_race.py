"""Issue 17: 12 processes append 5 records each to a results store that does not exist yet
(all released at once by a barrier), repeated N times; prints records lost.

Usage: PYTHONPATH=. python benchmarks/fault_store_race.py [N]
"""

import multiprocessing as mp, sys, tempfile, os
from pathlib import Path

def worker(path, k, q, barrier):
    from opid_gym.results import ResultsStore, new_record
    barrier.wait()
    lost = 0
    for i in range(5):
        try:
            ResultsStore(path).append(new_record(kind="eval", benchmark="b", protocol_id="p", protocol_hash="h",
                model="m", agent="a", learner=None, seed=k, config_hash="c", metrics={"success_rate": 1.0},
                per_type={}, episodes=1, errors=0, cost={}))
        except Exception as exc:
            lost += 1
            q.put(repr(exc))
    q.put(("lost", lost))

if __name__ == "__main__":
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    total_lost = bad_trials = 0; msgs = set()
    for t in range(trials):
        path = Path(tempfile.mkdtemp()) / "r.sqlite"
        q = mp.Queue(); b = mp.Barrier(12); ps = [mp.Process(target=worker, args=(path, k, q, b)) for k in range(12)]
        [p.start() for p in ps]; [p.join() for p in ps]
        lost = 0
        while not q.empty():
            m = q.get()
            if isinstance(m, tuple): lost += m[1]
            else: msgs.add(m[:100])
        from opid_gym.results import ResultsStore
        n = len(ResultsStore(path))
        total_lost += 60 - n; bad_trials += n < 60
    print(f"{trials} trials x 12 processes x 5 appends: trials losing records {bad_trials}, records lost {total_lost}; errors {sorted(msgs)}")
