"""A local OpenAI-compatible server that answers OPID analyzer prompts (tests, CPU demos).

It reads the candidate step indices out of the analyzer prompt and answers with an
analysis in the shapes real models produce, cycling through them: plain JSON, JSON in
a code fence with prose around it, trailing commas with integer keys, "step N" keys
including one out of range. ``garbage_every=n`` makes every n-th answer unusable
(the analyzer then retries with its stricter instruction).

Run it standalone (prints its base URL, serves until interrupted)::

    python -m tests.support.analyzer_server [--garbage-every N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import sys
import threading
from typing import Any

from tests.support.openai_server import ChatServer, Reply

_CANDIDATES = re.compile(r"Candidate step indices: ([0-9, ]+)")


def candidate_steps(body: Any) -> list[int]:
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    m = _CANDIDATES.search(users[-1] if users else "")
    return [int(x) for x in m.group(1).replace(" ", "").split(",") if x] if m else []


def analysis_text(body: Any, n: int) -> str:
    """Answer number ``n`` (0-based) to the analyzer request ``body``."""
    steps = candidate_steps(body)
    last = steps[-1] if steps else 0
    skill = "Check the admissible actions first, then act on the object the task names, in order."
    shape = n % 4
    if shape == 0:
        return json.dumps({"episode_summary": "The agent wandered.", "episode_skill": skill,
                           "step_skills": {str(last): "Pick an admissible action instead of free text."}})
    if shape == 1:
        return ("Here is my analysis:\n```json\n" + json.dumps({
            "episode_summary": "Short episode.", "episode_skill": skill,
            "step_skills": {"0": "Start by going to the place where the object usually is."}}, indent=2)
            + "\n```\nHope this helps.")
    if shape == 2:
        return ('{"episode_summary": "ok", "episode_skill": "%s", "step_skills": {%d: "Act, do not repeat.",},}'
                % (skill, steps[0] if steps else 0))
    return json.dumps({"summary": "ok", "episode_skill": skill,
                       "step_skills": {f"step {last}": "Finish the task here.", "step 999": "out of range"}})


class AnalyzerReplies:
    """A server behaviour: answers analyzer prompts (thread-safe counter)."""

    def __init__(self, garbage_every: int = 0) -> None:
        self.garbage_every = garbage_every
        self._count = itertools.count()
        self._lock = threading.Lock()

    def __call__(self, handler: Any, body: Any) -> None:
        with self._lock:
            n = next(self._count)
        if self.garbage_every and (n + 1) % self.garbage_every == 0:
            text = "I am not sure what you want."
        else:
            text = analysis_text(body, n)
        Reply(text, prompt_tokens=len(json.dumps(body)) // 4, completion_tokens=len(text) // 4)(handler, body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--garbage-every", type=int, default=0, help="every n-th answer is unusable (0: never)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it like Ctrl-C
    server = ChatServer(default=AnalyzerReplies(args.garbage_every)).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"served {len(server.requests)} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
