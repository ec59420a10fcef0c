"""Static skill library: selection by task type, keywords and question form; user folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from learners.skills.library import SCIWORLD_TOPICS, load_library, question_kind, sciworld_topic, webshop_family


def test_packaged_library_has_every_kind() -> None:
    lib = load_library()
    assert lib.kinds("alfworld") == sorted(["pick", "look", "clean", "heat", "cool", "pick2"])
    assert lib.kinds("webshop") == sorted(["apparel", "footwear", "home", "electronics", "accessories",
                                           "beauty", "other"])
    assert lib.kinds("searchqa") == sorted(["direct", "multihop", "attribute", "comparison"])
    assert set(lib.kinds("sciworld")) == {topic for _, topic in SCIWORLD_TOPICS}


def test_alfworld_selects_by_task_type() -> None:
    skills = load_library().select("alfworld", "heat some egg and put it in garbagecan.", "heat")
    assert skills.kind == "heat" and "microwave" in skills.specific
    assert skills.general and skills.text.startswith(skills.specific)


@pytest.mark.parametrize("instruction,family", [
    ("i need a pair of men's running shoes in size 10, and price lower than 50.00 dollars", "footwear"),
    ("i want a women's short sleeve t-shirt in black, large", "apparel"),
    ("find me a usb-c charger cable for my phone", "electronics"),
    ("i am looking for a gluten free organic snack pack", "beauty"),
    ("a leather wallet for men, brown", "accessories"),
    ("i need a velvet accent chair for the living room", "home"),
    ("i want a set of 12 colored pencils", "other"),
])
def test_webshop_family_keywords(instruction: str, family: str) -> None:
    assert webshop_family(instruction) == family


@pytest.mark.parametrize("question,dataset,kind", [
    ("Which is older, the Eiffel Tower or the Statue of Liberty?", "hotpotqa", "comparison"),
    ("Are Random House Tower and 888 7th Avenue both used for real estate?", "hotpotqa", "comparison"),
    ("Who is the director of the film that won Best Picture in 1995?", "musique", "multihop"),
    ("when was the last time the eagles won the superbowl", "nq", "attribute"),
    ("who sings does he love me with reba", "nq", "direct"),
])
def test_question_kinds(question: str, dataset: str, kind: str) -> None:
    assert question_kind(question, dataset) == kind


def test_user_library_folder(tmp_path: Path) -> None:
    (tmp_path / "alfworld").mkdir()
    (tmp_path / "general.md").write_text("Be brief.")
    (tmp_path / "alfworld" / "look.md").write_text("Find the lamp.")
    skills = load_library(tmp_path).select("alfworld", "examine the book with the desklamp.", "look")
    assert skills.text == "Find the lamp.\nBe brief."
    assert load_library(tmp_path).select("alfworld", "x", "heat").text == "Be brief."  # kind file absent
    with pytest.raises(FileNotFoundError, match="general.md"):
        load_library(tmp_path / "alfworld")


def test_every_kind_the_environments_report_has_a_library_text() -> None:
    from environments.alfworld.games import TASK_TYPES
    from environments.searchqa.datasets import DATASETS, SINGLE_HOP
    from learners.skills.library import MULTI_HOP_DATASETS

    lib = load_library()
    for task_type in TASK_TYPES.values():  # the six short ALFWorld types the env reports
        assert lib.select("alfworld", "some task", task_type).specific, task_type
    # search QA: the data set decides multi-hop exactly where the environment says so
    assert MULTI_HOP_DATASETS == set(DATASETS) - set(SINGLE_HOP)
    assert {question_kind("who wrote it", d) for d in DATASETS} <= set(lib.kinds("searchqa"))


def test_every_sciworld_task_has_its_topic_text() -> None:
    pytest.importorskip("scienceworld", reason="the engine's task names come with `opid-gym[sciworld]`")
    from environments.sciworld.splits import engine_task_names

    lib = load_library()
    topics = {name: sciworld_topic(name) for name in engine_task_names()}
    assert "general" not in topics.values(), topics
    assert set(topics.values()) == set(lib.kinds("sciworld"))  # every topic file is used
    for name, topic in topics.items():
        skills = lib.select("sciworld", "Your task is to ...", name)
        assert skills.kind == topic and skills.specific and skills.general, name
    assert topics["measure-melting-point-unknown-substance"] == "measurement" and topics["melt"] == "matter"
    assert sciworld_topic("a-task-added-later") == "general"
    assert lib.select("sciworld", "x", "a-task-added-later").text == lib.select("sciworld", "x", "").general


def test_prompt_hook_puts_the_selected_text_first_in_the_last_user_message() -> None:
    from learners.skills.library import SKILLS_HEADER, library_prompt_hook, with_library_text

    lib = load_library()
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    hook = library_prompt_hook(lib, "webshop")
    out = hook(msgs, {"task": "i need running shoes under 40 dollars", "task_type": "fashion"})
    footwear = lib.select("webshop", "running shoes", "").text
    assert out == [msgs[0], {"role": "user", "content": f"{SKILLS_HEADER}\n{footwear}\n\nU"}]
    assert msgs[1]["content"] == "U"  # the input is not modified
    assert with_library_text(msgs, "") == msgs
