"""WebShop's prompt: the project's own wording in the reference's structure.

As in the OPID reference (``prompts/webshop.py`` and ``WebshopEnvironmentManager``): the
task line under the intro at every step; the recent turns as ``[Observation i: '…',
Action i: '…']`` lines; the admissible actions one per line, each quoted and followed by
a comma, between a ``[`` line and a ``]`` line; a prompt longer than 20000 characters
falls back to the history-free prompt.
"""

from opid_gym.history import PromptTemplate

WEBSHOP_PROMPT = PromptTemplate(
    intro=(
        "You are shopping in an online store (WebShop). Pages are shown as text whose parts are "
        "quoted and separated by [SEP]. Act with search[your query] to search, or with "
        "click[element] on one of the page's clickable elements."
    ),
    task_line="Your task is to: {task}",
    history_header="You have taken {n} step(s) so far. Your last {k} observation(s) and action(s):",
    turn="[Observation {i}: '{observation}', Action {i}: '{action}']",
    current="Now, at step {step}, you observe: {observation}",
    first_current="At step {step}, you observe: {observation}",
    admissible="Admissible actions now:\n[\n{actions}\n].",
    admissible_item="'{action}',",
    admissible_separator="\n",
    max_prompt_chars=20_000,
    instruction=(
        "Think about what to do next inside <think> </think>. "
        "Then give exactly one action inside <action> </action>."
    ),
)
