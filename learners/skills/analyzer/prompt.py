"""The analyzer's prompt (the project's own wording).

Per algorithms spec §2 step 2 the analyzer sees the task, whether the episode
succeeded, the candidate step indices (all steps, 0-based) and, per step, the raw
observation, the full response and the discounted return ``G_t`` (γ = 0.95,
unpenalised rewards). What it is asked for depends on the outcome: for a success the
workflow that worked, for a failure the core mistake and its warning signs.

The task and the outcome are repeated after the steps so that a local model whose
context left-truncates a long episode still knows what it is judging.

As in the reference code (``jinyangwu/OPID``, ``opid/analysis.py``) the request is ONE
user message (no system prompt) and fields are shown whole by default. A re-ask after
an unparsable answer is the original prompt, then why the answer could not be used,
the end of that answer (its last 2000 characters) and the exact JSON shape wanted.
"""

from __future__ import annotations

from opid_gym.learner import discounted_returns
from opid_gym.types import Message, Trajectory

PROMPT_VERSION = "opid-analyzer-v2"
"""Changes whenever the wording changes (part of the analysis cache key)."""

ROLE = (
    "You study finished episodes of an AI agent that acts in a text environment, and you turn each "
    "episode into short, reusable advice for the next attempt. You always answer with a single JSON object."
)
PREVIOUS_ANSWER_CHARS = 2000

SUCCESS_ASK = (
    "the episode SUCCEEDED. State the workflow or decision rule that made it work, including the order "
    "of the key actions, so that an agent can repeat it on a similar task"
)
FAILURE_ASK = (
    "the episode FAILED. State the core mistake that caused the failure and the warning signs that "
    "should have made the agent change course, as advice for a new attempt"
)

STRICT_RETRY = (
    "IMPORTANT: your previous answer could not be used ({reason}). Reply with exactly one JSON object and "
    "nothing else - no code fences, no explanation - of this form: "
    '{{"episode_summary": "...", "episode_skill": "...", "step_skills": {{"<step index>": "..."}}}}'
)
PREVIOUS_ANSWER = "The end of your previous answer:\n{answer}"


def _clip(text: str, limit: int | None) -> str:
    text = text.strip()
    if limit is None or len(text) <= limit:
        return text
    half = max(1, limit // 2)
    return f"{text[:half]} […{len(text) - 2 * half} characters left out…] {text[-half:]}"


def outcome_line(traj: Trajectory) -> str:
    """SUCCESS or FAILURE, with how the episode ended."""
    if traj.won:
        return f"SUCCESS: the task was completed in {traj.length} step(s)."
    how = ("the step limit was reached" if traj.truncated else
           "the episode ended without completing the task" if traj.terminated else "the task was not completed")
    return f"FAILURE: {how} after {traj.length} step(s)."


def build_analysis_messages(
    traj: Trajectory, *, gamma: float = 0.95, max_step_skills: int = 5, max_field_chars: int | None = None,
    retry_reason: str | None = None, previous_answer: str = "",
) -> list[Message]:
    """The chat messages asking for the analysis of ``traj``.

    Args:
        gamma: discount of the per-step returns shown (G_t = Σ_k γ^k r_{t+k}).
        max_step_skills: K, the most step skills asked for.
        max_field_chars: observations and responses longer than this are shortened in
            the middle (the count of characters left out is shown); None: shown whole.
        retry_reason: set on a retry: why the previous answer was unusable; adds a
            stricter instruction and the end of ``previous_answer``.

    Returns:
        One user message (no system message).
    """
    returns = discounted_returns([s.reward for s in traj.steps], gamma)
    n = traj.length
    lines = [
        ROLE,
        "",
        f"Task: {traj.task}",
    ]
    if traj.task_type:
        lines.append(f"Task type: {traj.task_type}")
    lines += [
        f"Outcome: {outcome_line(traj)}",
        f"Candidate step indices: {', '.join(str(i) for i in range(n)) if n else '(none)'}",
        "",
        f"Each step below shows what the agent observed, its full response, and the discounted return "
        f"G_t (gamma = {gamma:g}) collected from that step to the end of the episode.",
    ]
    for step, ret in zip(traj.steps, returns):
        lines += [
            "",
            f"### Step {step.index}",
            f"Observation: {_clip(step.observation, max_field_chars)}",
            f"Response: {_clip(step.response, max_field_chars)}",
            f"Return G_{step.index}: {ret:.4g}",
        ]
    ask = SUCCESS_ASK if traj.won else FAILURE_ASK
    lines += [
        "",
        f"Recap: task \"{traj.task}\"; {outcome_line(traj)}",
        "Write one JSON object with exactly these three fields:",
        '- "episode_summary": two or three sentences on what happened in the episode.',
        f'- "episode_skill": one paragraph; {ask}.',
        f'- "step_skills": an object whose keys are at most {max_step_skills} step indices taken from the '
        "candidate list (the steps that decided the outcome) and whose values are one short imperative "
        "sentence of advice for that step.",
        "Answer with the JSON object only.",
    ]
    if retry_reason is not None:
        lines += ["", STRICT_RETRY.format(reason=retry_reason)]
        if previous_answer.strip():
            lines += ["", PREVIOUS_ANSWER.format(answer=previous_answer[-PREVIOUS_ANSWER_CHARS:])]
    return [{"role": "user", "content": "\n".join(lines)}]
