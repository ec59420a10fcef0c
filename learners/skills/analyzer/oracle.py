"""``oracle``: an analyzer that reads the environment's expert. An ABLATION, not OPID's method.

OPID's analyzer judges a finished trajectory in hindsight, from what the trajectory
itself shows. The oracle instead asks the environment's own expert (ALFWorld's
hand-coded expert, WebShop's goal-product path, the keypad toy's answer) what it would
have done **from the very state each step acted in**, and turns every disagreement
into a step skill. It is an upper bound on what hindsight step skills can teach, for
ablations; no result obtained with it is a result of the paper's method.

What it reads (a typed interface, no family is named):

* ``Step.expert_action``: the expert's action for that step's state, recorded by the
  rollout when the learner's ``needs_expert`` is True (OPID's is, with this analyzer);
* ``Trajectory.expert_plan``: the expert's plan from the start state, where the
  environment exposes one at reset (used for the episode skill of a lost episode).

Critical steps: the steps whose action differs (case- and space-insensitively) from
the expert's, earliest first, at most K; each gets "Do '<expert action>' now …". The
episode skill: for a won episode the hindsight workflow (as ``hindsight-rules``); for a
lost one the expert's plan from the start, else the expert's actions at the steps it
disagreed with. A trajectory with no expert information at all gets no analysis
(``ValueError``; OPID counts it as an analyzer failure): the environment has no expert,
or the rollout did not record it.
"""

from __future__ import annotations

from learners.skills.analyzer.parse import Analysis, clip_text
from learners.skills.analyzer.rules import MAX_WORKFLOW, rules_analysis
from opid_gym.types import Trajectory

ABLATION_NOTE = "oracle analyzer (ablation: reads the environment's expert; not the paper's method)"


def _norm(action: str) -> str:
    return " ".join(action.lower().split())


def _q(action: str) -> str:
    return "'" + clip_text(action, 80) + "'"


def disagreements(traj: Trajectory) -> list[tuple[int, str]]:
    """(step, expert action) of every step whose action differs from the expert's for that state."""
    return [(s.index, s.expert_action) for s in traj.steps
            if s.expert_action is not None and _norm(s.action) != _norm(s.expert_action)]


def oracle_analysis(traj: Trajectory, max_step_skills: int = 5) -> Analysis:
    """The oracle's analysis of ``traj`` (see the module docstring).

    Raises:
        ValueError: the trajectory carries no expert information.
    """
    recorded = [s for s in traj.steps if s.expert_action is not None]
    if not recorded and not traj.expert_plan:
        raise ValueError("no expert information in the trajectory: the environment has no expert, or the "
                         "rollout did not record Step.expert_action (the learner's needs_expert)")
    wrong = disagreements(traj)
    if recorded:
        steps = {t: f"Do {_q(a)} now: it is the expert's next action from this exact situation."
                 for t, a in wrong[:max_step_skills]}
    else:  # only the start-state plan: valid while the agent has followed it so far
        plan = traj.expert_plan or []
        steps = {}
        for s in traj.steps:
            if s.index >= len(plan):
                break
            if _norm(s.action) != _norm(plan[s.index]):
                if max_step_skills:
                    steps[s.index] = f"Do {_q(plan[s.index])} now: it is the expert's next action from this situation."
                break
    summary = (f"{'Succeeded' if traj.won else 'Failed'} after {traj.length} step(s); "
               f"{len(wrong)} step(s) differed from the environment expert's action. [{ABLATION_NOTE}]")
    if traj.won:
        skill = rules_analysis(traj, 0).episode_skill
    else:
        plan = traj.expert_plan or [a for _, a in wrong]
        shown = plan if len(plan) <= MAX_WORKFLOW else plan[:MAX_WORKFLOW] + ["…"]
        skill = (f"This attempt failed. The environment's expert solves this task with: {' -> '.join(shown)}. "
                 "Follow that sequence.")
    return Analysis(summary, clip_text(skill), steps)
