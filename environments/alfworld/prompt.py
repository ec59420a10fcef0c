"""ALFWorld's prompt: the project's own wording in the reference's structure.

As in the OPID reference (``prompts/alfworld.py`` and ``AlfWorldEnvironmentManager``):
the first step shows the observation, which ends with the task, and no separate task
line; later steps put the task line under the intro, then the recent turns as
``[Observation i: '…', Action i: '…']`` lines, the current observation, and the
admissible actions quoted one per line (``help`` left out by the environment).
"""

from opid_gym.history import PromptTemplate

ALFWORLD_PROMPT = PromptTemplate(
    intro="You are an agent in a household that is simulated as a text game (ALFWorld).",
    task_line="Your task is to: {task}",
    history_header="You have taken {n} step(s) so far. Your last {k} observation(s) and action(s):",
    turn="[Observation {i}: '{observation}', Action {i}: '{action}']",
    current="Now, at step {step}, you observe: {observation}",
    first_current="At step {step}, you observe: {observation}",
    admissible="Admissible actions now: [{actions}].",
    admissible_separator="\n ",
    first_step_task_line=False,
    instruction=(
        "Think about what to do next inside <think> </think>. "
        "Then give exactly one admissible action inside <action> </action>."
    ),
)
