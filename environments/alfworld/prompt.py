"""ALFWorld's prompt wording (the project's own text)."""

from opid_gym.history import PromptTemplate

ALFWORLD_PROMPT = PromptTemplate(
    intro="You are an agent in a household that is simulated as a text game (ALFWorld).",
    task_line="Your task is to: {task}",
    history_header="You have taken {n} step(s) so far. Your last {k} observation(s) and action(s):",
    turn="[Observation {i}: {observation}] [Action {i}: {action}]",
    current="Now, at step {step}, you observe: {observation}",
    first_current="At step {step}, you observe: {observation}",
    admissible="Admissible actions now: [{actions}]",
    instruction=(
        "Think about what to do next inside <think> </think>. "
        "Then give exactly one admissible action inside <action> </action>."
    ),
)
