"""WebShop's prompt wording (the project's own text)."""

from opid_gym.history import PromptTemplate

WEBSHOP_PROMPT = PromptTemplate(
    intro=(
        "You are shopping in an online store (WebShop). Pages are shown as text whose parts are "
        "separated by [SEP]. Act with search[your query] where there is a search bar, or with "
        "click[element] on one of the page's clickable elements."
    ),
    task_line="Your task is to: {task}",
    history_header="You have taken {n} step(s) so far. Your last {k} observation(s) and action(s):",
    turn="[Observation {i}: {observation}] [Action {i}: {action}]",
    current="Now, at step {step}, you observe: {observation}",
    first_current="At step {step}, you observe: {observation}",
    admissible="Admissible actions now: [{actions}]",
    instruction=(
        "Think about what to do next inside <think> </think>. "
        "Then give exactly one action inside <action> </action>."
    ),
)
