"""Search QA's prompt wording (the project's own text)."""

from opid_gym.history import PromptTemplate

SEARCHQA_PROMPT = PromptTemplate(
    intro=(
        "You answer a question with the help of a search engine over Wikipedia passages. "
        "Each turn you either search or give your final answer; the episode ends at your answer "
        "or after a few turns."
    ),
    task_line="Question: {task}",
    history_header="You have taken {n} turn(s) so far. Your last {k} observation(s) and action(s):",
    turn="[Observation {i}: {observation}] [Action {i}: {action}]",
    current="Now, at turn {step}, you observe: {observation}",
    first_current="This is turn {step}; you have not searched yet.",
    admissible="",
    history_actions="search_answer",  # past turns show <search>q</search>, as the model writes them
    instruction=(
        "Think step by step inside <think> </think>. Then do exactly one of these: search by writing "
        "a query inside <search> </search> (the top 3 passages come back inside <information> </information>), "
        "or give a short final answer inside <answer> </answer>, for example <answer> Paris </answer>."
    ),
)
