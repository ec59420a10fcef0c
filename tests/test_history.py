"""History managers render the exact prompt text for a recorded episode."""

from __future__ import annotations

from environments.alfworld.prompt import ALFWORLD_PROMPT
from opid_gym.history import ChatHistory, EpisodeView, TokenBudgetHistory, WindowHistory, make_history

# A recorded ALFWorld episode (valid_unseen look_at_obj_in_light-Book-None-DeskLamp-308).
TASK = "examine the book with the desklamp."
OBS0 = "You are in the middle of a room. Looking quickly around you, you see a bed 1, a desk 1.\n\nYour task is to: examine the book with the desklamp."
OBS1 = "You arrive at bed 1. On the bed 1, you see a book 1."
OBS2 = "You pick up the book 1 from the bed 1."
HISTORY = [(OBS0, "go to bed 1"), (OBS1, "take book 1 from bed 1")]
ADMISSIBLE = ["go to desk 1", "inventory", "look"]
INSTRUCTION = ("Think about what to do next inside <think> </think>. "
               "Then give exactly one admissible action inside <action> </action>.")


def test_window_prompt_exact_text() -> None:
    view = EpisodeView(task=TASK, observation=OBS2, step=2, history=HISTORY, admissible_actions=ADMISSIBLE)
    messages = WindowHistory(length=1).render(ALFWORLD_PROMPT, view)
    expected = "\n".join([
        "You are an agent in a household that is simulated as a text game (ALFWorld).",
        "Your task is to: examine the book with the desklamp.",
        "You have taken 2 step(s) so far. Your last 1 observation(s) and action(s):",
        "[Observation 2: 'You arrive at bed 1. On the bed 1, you see a book 1.', Action 2: 'take book 1 from bed 1']",
        "Now, at step 3, you observe: You pick up the book 1 from the bed 1.",
        "Admissible actions now: ['go to desk 1'\n 'inventory'\n 'look'].",  # one per line, as the reference
        INSTRUCTION,
    ])
    assert messages == [{"role": "user", "content": expected}]


def test_window_first_step_has_no_history_block() -> None:
    # ALFWorld's first step, as the reference's ALFWORLD_TEMPLATE_NO_HIS: the observation
    # (which ends with the task) and no separate task line
    view = EpisodeView(task=TASK, observation=OBS0, step=0, history=[], admissible_actions=None)
    text = WindowHistory(length=5).render(ALFWORLD_PROMPT, view)[0]["content"]
    assert text == "\n".join([
        "You are an agent in a household that is simulated as a text game (ALFWorld).",
        f"At step 1, you observe: {OBS0}",
        INSTRUCTION,
    ])
    assert text.count("Your task is to:") == 1 and text.index("Your task is to:") > text.index("At step 1")
    chat = ChatHistory().render(ALFWORLD_PROMPT, view)[0]["content"]
    assert chat == text


def test_webshop_prompt_structure_and_length_fallback() -> None:
    from environments.webshop.prompt import WEBSHOP_PROMPT

    history = [("'Search'", "search[red mug]")]
    view = EpisodeView(task="buy a red mug", observation="'Back to Search' [SEP] 'Next >'", step=1, history=history,
                       admissible_actions=["click[back to search]", "click[next >]"])
    text = WindowHistory(length=2).render(WEBSHOP_PROMPT, view)[0]["content"]
    assert "Your task is to: buy a red mug" in text  # the task line at every step
    assert "[Observation 1: ''Search'', Action 1: 'search[red mug]']" in text
    assert "Admissible actions now:\n[\n'click[back to search]',\n'click[next >]',\n]." in text
    # a prompt over 20000 characters falls back to the history-free prompt (reference rule)
    long_view = EpisodeView(task="buy a red mug", observation="'Next >'", step=1,
                            history=[("x" * 20_000, "search[red mug]")], admissible_actions=["click[next >]"])
    fallback = WindowHistory(length=2).render(WEBSHOP_PROMPT, long_view)[0]["content"]
    assert "x" * 100 not in fallback and "[Observation" not in fallback
    assert fallback == WindowHistory(length=0).render(WEBSHOP_PROMPT, long_view)[0]["content"]
    assert "Your task is to: buy a red mug" in fallback and "At step 2, you observe: 'Next >'" in fallback
    short = WindowHistory(length=2).render(WEBSHOP_PROMPT, view)[0]["content"]
    assert len(short) < 20_000 and "[Observation 1:" in short  # under the limit: history kept


def test_window_length_bounds_the_pairs_shown() -> None:
    view = EpisodeView(task=TASK, observation=OBS2, step=2, history=HISTORY)
    two = WindowHistory(length=2).render(ALFWORLD_PROMPT, view)[0]["content"]
    assert "Action 1: 'go to bed 1'" in two and "Action 2: 'take book 1 from bed 1'" in two
    zero = WindowHistory(length=0).render(ALFWORLD_PROMPT, view)[0]["content"]
    assert "Action 1" not in zero and "Your task is to:" in zero  # later steps keep the task line


def test_token_budget_keeps_the_most_recent_pairs_that_fit() -> None:
    view = EpisodeView(task=TASK, observation=OBS2, step=2, history=HISTORY)
    turn2 = ALFWORLD_PROMPT.turn.format(i=2, observation=OBS1, action="take book 1 from bed 1")
    manager = TokenBudgetHistory(budget=len(turn2), count=len)  # exactly one pair fits
    text = manager.render(ALFWORLD_PROMPT, view)[0]["content"]
    assert turn2 in text and "Action 1:" not in text


def test_chat_history_alternates_and_never_repeats_reasoning() -> None:
    view = EpisodeView(task=TASK, observation=OBS2, step=2, history=HISTORY, admissible_actions=ADMISSIBLE)
    messages = ChatHistory().render(ALFWORLD_PROMPT, view)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == "<action>go to bed 1</action>"
    assert messages[2]["content"] == f"Now, at step 2, you observe: {OBS1}"
    assert messages[-1]["content"].endswith(INSTRUCTION)
    assert "<think>" not in "".join(m["content"] for m in messages if m["role"] == "assistant")


def test_make_history_by_name() -> None:
    assert make_history("window", length=3).length == 3
    assert make_history("chat").name == "chat"
    try:
        make_history("nope")
    except KeyError as exc:
        assert "unknown history manager" in str(exc)
    else:
        raise AssertionError("expected KeyError")


def test_search_history_shows_actions_as_the_model_writes_them() -> None:
    from environments.searchqa.prompt import SEARCHQA_PROMPT

    view = EpisodeView(task="who wrote hamlet?", observation="<information>Doc 1 ...</information>", step=1,
                       history=[("who wrote hamlet?", "search[hamlet author]")])
    text = WindowHistory(length=4).render(SEARCHQA_PROMPT, view)[0]["content"]
    assert "<search>hamlet author</search>" in text and "search[hamlet author]" not in text
    chat = ChatHistory().render(SEARCHQA_PROMPT, view)
    assert chat[1] == {"role": "assistant", "content": "<search>hamlet author</search>"}
