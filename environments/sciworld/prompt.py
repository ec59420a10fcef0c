"""ScienceWorld's prompt: the project's own wording in the reference's structure.

As in the OPID reference (``prompts/sciworld.py`` and ``SciWorldEnvironmentManager``):
the task line under the intro at every step, the recent turns as ``[Observation i:
'…', Action i: '…']`` lines, the current observation, then the admissible actions.

One difference, on purpose: the reference lists the engine's action *templates*
(``open OBJ``) and its object names, and leaves the model to combine them; here the
admissible actions are the engine's valid action-object combinations
(``get_valid_action_object_combinations``, the list the reference keeps as
``possible_actions``), so the prompt, the random agent and the checker all see actions
the engine can execute. They are listed on one line, comma separated.
"""

from opid_gym.history import PromptTemplate

SCIWORLD_PROMPT = PromptTemplate(
    intro=(
        "You are an agent in ScienceWorld, a text-based simulated world in which you carry out "
        "tasks from the elementary science curriculum."
    ),
    task_line="Your task is: {task}",
    history_header="You have taken {n} step(s) so far. Your last {k} observation(s) and action(s):",
    turn="[Observation {i}: '{observation}', Action {i}: '{action}']",
    current="Now, at step {step}, you observe: {observation}",
    first_current="At step {step}, you observe: {observation}",
    admissible="Admissible actions now: [{actions}].",
    admissible_separator=", ",
    instruction=(
        "Think about what to do next inside <think> </think>. "
        "Then give exactly one admissible action inside <action> </action>."
    ),
)
