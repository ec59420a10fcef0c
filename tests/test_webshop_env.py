"""The WebShop environment on the real 1000-product catalogue: data, goals, pages, expert."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from environments.webshop.catalogue import (
    clean_options,
    find_catalogue_files,
    fixed_price,
    load_catalogue,
    parse_pricing,
    price_tag,
)
from environments.webshop.goals import NO_CAP, human_goals, price_cap, split_goals, synthetic_goals
from opid_gym.parsing import get_parser


@pytest.fixture(scope="session")
def webshop_data(data_root: Path) -> Path:
    if not (data_root / "webshop").is_dir():
        pytest.skip("WebShop data not present under the data root")
    pytest.importorskip("bm25s")
    pytest.importorskip("rapidfuzz")
    return data_root


@pytest.fixture(scope="session")
def env_kwargs(webshop_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return {"data_root": str(webshop_data), "search_backend": "bm25s",
            "cache_dir": str(tmp_path_factory.mktemp("webshop-index"))}


@pytest.fixture(scope="session")
def catalogue(webshop_data: Path):
    return load_catalogue(find_catalogue_files(webshop_data))


@pytest.fixture()
def env(env_kwargs: dict):
    from environments.webshop.env import WebShopEnv

    e = WebShopEnv("eval", **env_kwargs)
    yield e
    e.close()


# ----------------------------------------------------------------- catalogue
def test_parse_pricing_and_tags() -> None:
    assert parse_pricing("$12.99") == [12.99]
    assert parse_pricing("$10.00 - $25.50") == [10.0, 25.5]
    assert parse_pricing("$1,234.50") == [1234.5]
    assert parse_pricing("") == [100.0] and parse_pricing(None) == [100.0]
    assert price_tag([12.99]) == "$12.99" and price_tag([10.0, 25.5]) == "$10.0 to $25.5"


def test_clean_options() -> None:
    raw = {"Color": [{"value": " Black/White "}, {"value": "Red"}], "Size": None, "Style": []}
    assert clean_options(raw) == {"color": ("black | white", "red"), "style": ()}
    assert clean_options("") == {}


def test_raw_catalogue_cleans_to_the_search_engine_products(webshop_data: Path, catalogue) -> None:
    """The raw product list, cleaned here, equals WebShop's own cleaned products in documents.jsonl."""
    assert catalogue.files.products_format == "raw" and len(catalogue) == 1000
    docs = sorted(webshop_data.rglob("resources_1k/documents.jsonl"))[0]
    from_docs = load_catalogue(dataclasses.replace(catalogue.files, products=docs))
    assert from_docs.products == catalogue.products
    with open(docs, encoding="utf-8") as f:
        stored = [json.loads(line)["contents"] for line in f]
    assert catalogue.contents == stored  # our searchable text == the indexed text


def test_fixed_price_inside_its_range_and_stable(catalogue) -> None:
    ranged = [p for p in catalogue.products if len(p.pricing) == 2]
    assert ranged
    for p in ranged:
        lo, hi = sorted(p.pricing)
        assert lo <= catalogue.prices[p.asin] <= hi
        assert fixed_price(p) == catalogue.prices[p.asin]


# --------------------------------------------------------------------- goals
def test_goal_counts_and_split(catalogue) -> None:
    synthetic, human = synthetic_goals(catalogue), human_goals(catalogue)
    assert len(synthetic) == 6910 and len({g.asin for g in synthetic}) == 415
    assert len(human) == 13
    evals, train = split_goals(catalogue, "eval"), split_goals(catalogue, "train")
    assert len(evals) == 500 and len(train) == 6410
    assert {g.goal_id for g in evals}.isdisjoint(g.goal_id for g in train)
    assert {g.goal_id for g in evals} | {g.goal_id for g in train} == {g.goal_id for g in synthetic}
    assert [g.goal_id for g in split_goals(catalogue, "eval")] == [g.goal_id for g in evals]  # fixed order


def test_split_is_the_reference_goal_range(catalogue) -> None:
    # WebShop's SimServer: random.seed(233); random.shuffle(goals); verl-agent / OPID test on
    # goals[0:500] and train on goals[500:]. Done here exactly that way, on the global generator.
    import random

    saved = random.getstate()
    try:
        goals = list(synthetic_goals(catalogue))
        random.seed(233)
        random.shuffle(goals)
    finally:
        random.setstate(saved)
    assert [g.goal_id for g in split_goals(catalogue, "eval")] == [g.goal_id for g in goals[:500]]
    assert [g.goal_id for g in split_goals(catalogue, "train")] == [g.goal_id for g in goals[500:]]


def test_price_cap_rule() -> None:
    import numpy as np

    caps = {price_cap(23.5, np.random.default_rng(s))[0] for s in range(200)}
    assert caps == {40.0, 50.0, 60.0}  # larger of two of 30, 40, 50, 60: never 30
    assert price_cap(985.0, np.random.default_rng(0)) == (NO_CAP, "")  # only 990 above: no cap
    cap, text = price_cap(975.0, np.random.default_rng(0))
    assert cap == 990.0 and text == ", and price lower than 990.00 dollars"


def test_synthetic_goal_text(catalogue) -> None:
    goal = next(g for g in synthetic_goals(catalogue) if len(g.goal_options) == 2 and g.price_upper != NO_CAP)
    base = catalogue.attributes[goal.asin]["instruction"]
    (t1, v1), (t2, v2) = goal.goal_options
    assert t1 < t2  # option types in sorted order
    assert goal.instruction_text == (
        f"{base} with {t1}: {v1}, and {t2}: {v2}, and price lower than {goal.price_upper:.2f} dollars"
    )


# ---------------------------------------------------------------------- pages
def pieces(obs: str) -> list[str]:
    """The pieces of an observation: the page after the instruction, each piece quoted."""
    parts = obs.split(" [SEP] ")
    assert all(len(p) >= 2 and p[0] == p[-1] == "'" for p in parts), obs
    return [p[1:-1] for p in parts]


def page(env) -> list[str]:
    """The whole current page's pieces (before the reference's cut)."""
    return env.unwrapped.shop.render(env.unwrapped._session).split(" [SEP] ")


def product_clicks(actions: list[str]) -> list[str]:
    """The result-page clicks on products (every click but the navigation buttons)."""
    return [a for a in actions if a not in ("click[back to search]", "click[next >]", "click[< prev]")]


def test_search_page_and_admissible_search(env) -> None:
    obs, info = env.reset(seed=0, options={"task_index": 0})
    goal = env.goals[0]
    assert page(env) == ["WebShop", "Instruction:", goal.instruction_text, "Search"]
    assert obs == "'Search'"                                   # cut after the instruction, quoted
    # the reference's list: the query placeholder and the page's Search button
    assert info["admissible_actions"] == ["search[<your query>]", "click[search]"]
    assert info["score"] == 0.0


def test_reference_observation_cut_and_quote() -> None:
    from environments.webshop.shop import reference_observation

    text = "Instruction: [SEP] buy a red mug [SEP] Back to Search [SEP] Page 1 (Total results: 2) [SEP] Next >"
    assert reference_observation(text, "buy a red mug") == "'Back to Search' [SEP] 'Page 1 (Total results: 2)' [SEP] 'Next >'"
    done = "Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] 1.0"
    assert reference_observation(done, "buy a red mug") == done  # no instruction: unchanged


def test_search_works_on_any_page(env) -> None:
    env.reset(seed=0, options={"task_index": 0})
    goal = env.goals[0]
    env.step("search[black]")
    env.step(f"click[{env.unwrapped._session.results and env.unwrapped.shop.catalogue.products[env.unwrapped._session.results[0]].asin.lower()}]")
    assert env.unwrapped._session.page == "item"
    obs, *_, info = env.step(f"search[{goal.query}]")           # from the item page
    assert info["action_valid"] and env.unwrapped._session.page == "results"
    assert pieces(obs)[1] == "Page 1 (Total results: 50)"
    assert "search[<your query>]" not in info["admissible_actions"]  # listed only where the search bar is


def test_pagination(env) -> None:
    env.reset(seed=0, options={"task_index": 0})
    obs, *_, info = env.step("search[black]")
    assert page(env)[:2] == ["Instruction:", env.goals[0].instruction_text]
    p = pieces(obs)
    assert p[:2] == ["Back to Search", "Page 1 (Total results: 50)"]
    assert p[2] == "Next >" and "< Prev" not in p
    page1 = product_clicks(info["admissible_actions"])
    assert len(page1) == 10
    obs2, *_, info2 = env.step("click[Next >]")
    assert pieces(obs2)[1:4] == ["Page 2 (Total results: 50)", "< Prev", "Next >"]
    page2 = product_clicks(info2["admissible_actions"])
    assert len(page2) == 10 and not set(page1) & set(page2)
    for _ in range(4):
        obs, *_, info = env.step("click[next >]")
    assert "Page 6 (Total results: 50)" in obs            # past the 50 results: an empty page
    assert not product_clicks(info["admissible_actions"])
    for _ in range(5):
        obs, *_, info = env.step("click[< prev]")
    assert product_clicks(info["admissible_actions"]) == page1


def test_item_page_options_subpages_and_back(env) -> None:
    env.reset(seed=0, options={"task_index": 0})
    shop = env.unwrapped.shop
    goal = env.goals[0]
    product = shop.catalogue.get(goal.asin)
    env.step(f"search[{product.title}]")
    obs, *_, info = env.step(f"click[{goal.asin.lower()}]")
    p = pieces(obs)
    assert p[0:2] == ["Back to Search", "< Prev"]
    assert p[-7:] == [product.title, f"Price: {product.price_tag}", "Rating: N.A.", "Description", "Features",
                      "Reviews", "Buy Now"]
    for name, values in product.options.items():
        i = p.index(name)
        assert p[i + 1:i + 1 + len(values)] == [v.strip() for v in values]
    name, values = next(iter(product.options.items()))
    env.step(f"click[{values[-1]}]")
    assert env.unwrapped._session.options == {name: values[-1]}
    obs, *_ = env.step("click[Features]")
    assert pieces(obs) == ["Back to Search", "< Prev", *[b.strip() for b in product.bullet_points if b.strip()]]
    obs, *_ = env.step("click[< prev]")
    assert pieces(obs)[-1] == "Buy Now" and env.unwrapped._session.options == {name: values[-1]}
    obs, *_ = env.step("click[< prev]")                    # item -> results: options forgotten
    assert "Page 1 (Total results: 50)" in obs and env.unwrapped._session.options == {}
    obs, *_, info = env.step("click[back to search]")
    assert obs == "'Search'" and info["admissible_actions"][0] == "search[<your query>]"


def test_invalid_actions_change_nothing(env) -> None:
    obs0, _ = env.reset(seed=0, options={"task_index": 1})
    for bad in ("click[buy now]", "click[search]", "search[]", "jump", "click[b000000000]"):
        obs, reward, term, trunc, info = env.step(bad)
        assert (obs, reward, term, info["action_valid"]) == (obs0, 0.0, False, False)
    obs1, *_ = env.step("search[red shoes]")
    for bad in ("search[]", "click[description]", "click[nonexistent element]"):
        obs, reward, term, trunc, info = env.step(bad)
        assert (obs, reward, term, info["action_valid"]) == (obs1, 0.0, False, False)


def test_every_admissible_action_is_valid(env) -> None:
    env.reset(seed=0, options={"task_index": 2})
    shop, session = env.unwrapped.shop, env.unwrapped._session
    actions = shop.admissible_actions(session)
    assert not shop.step(session.copy(), actions[1])        # click[search]: listed, ignored (as upstream)
    shop.step(session, actions[0])                          # the placeholder search
    for action in shop.admissible_actions(session):
        assert shop.step(session.copy(), action), action


def test_search_results_identical_across_runs(catalogue, tmp_path: Path) -> None:
    """Two independently built bm25s indexes and one loaded from the cache give the same pages."""
    from environments.webshop.search import Bm25sEngine

    asins, checksum = [p.asin for p in catalogue.products], catalogue.checksum()
    first = Bm25sEngine(catalogue.contents, checksum=checksum, cache_dir=tmp_path / "a")
    second = Bm25sEngine(catalogue.contents, checksum=checksum, cache_dir=tmp_path / "b")
    loaded = Bm25sEngine(catalogue.contents, checksum=checksum, cache_dir=tmp_path / "a")
    queries = [g.instruction_text.lower() for g in split_goals(catalogue, "eval")[:60]] + ["black", "shoes"]
    for q in queries:
        hits = first.search(q)
        assert hits and hits == second.search(q) == loaded.search(q), q
    assert {asins[i] for i in first.search("black")} <= set(asins)


def test_same_goal_same_pages_in_two_envs(env_kwargs: dict) -> None:
    from environments.webshop.env import WebShopEnv

    a, b = WebShopEnv("eval", **env_kwargs), WebShopEnv("train", **env_kwargs)
    a.reset(seed=1, options={"task_index": 5})
    b.reset(seed=2, options={"task_index": 7})
    query = "search[women's long sleeve cotton t-shirt, machine wash]"
    oa, ob = a.step(query)[0], b.step(query)[0]
    assert oa == ob  # same pages (the instruction is cut off the observation)


# --------------------------------------------------------------- buy & expert
def test_expert_plan_wins_a_reachable_goal(env) -> None:
    obs, info = env.reset(seed=0, options={"task_index": 3})
    plan = info["expert_plan"]
    assert plan[0].startswith("search[") and plan[-1] == "click[buy now]"
    for i, action in enumerate(plan):
        assert env.unwrapped.expert_action() == action
        obs, reward, term, trunc, info = env.step(action)
        assert term == (i == len(plan) - 1)
    assert info["score"] == 1.0 and reward == 10.0 and info["won"]
    # the done page has no instruction: shown whole and unquoted, as in the reference
    assert obs.split(" [SEP] ") == ["Thank you for shopping with us!", "Your score (min 0.0, max 1.0)", "1.0"]
    assert env.unwrapped.expert_action() is None


def test_expert_recovers_after_a_detour(env) -> None:
    env.reset(seed=0, options={"task_index": 3})
    goal = env.goals[3]
    env.step(env.unwrapped.expert_action())                 # search
    other = next(a for a in product_clicks(env.unwrapped._current_admissible) if goal.asin.lower() not in a)
    env.step(other)                                          # a wrong product
    assert env.unwrapped.expert_action() == "click[< prev]"
    env.step("click[< prev]")
    assert env.unwrapped.expert_action() == f"click[{goal.asin.lower()}]"


def test_wrong_options_lower_the_score(env) -> None:
    """A goal with two options: buy its product with the first option only -> (A + 1 + 1) / (A + 2 + 1)."""
    index = next(i for i, g in enumerate(env.goals) if len(g.goal_options) == 2
                 and g.goal_id.split("/")[0] not in ("B07S7HDC88", "B082MT9162"))
    goal = env.goals[index]
    env.reset(seed=0, options={"task_index": index})
    shop = env.unwrapped.shop
    env.step(f"search[{shop.catalogue.get(goal.asin).title}]")
    env.step(f"click[{goal.asin.lower()}]")
    env.step(f"click[{goal.goal_options[0][1]}]")
    obs, reward, term, trunc, info = env.step("click[buy now]")
    a = len(goal.attributes)
    assert term and reward == 0.0 and not info["won"]
    assert math.isclose(info["score"], (a + 1 + 1) / (a + 2 + 1))
    assert info["score_details"]["option_matches"] == 1


def test_upstream_option_quirk_makes_a_goal_unwinnable(env_kwargs: dict) -> None:
    """'rectangular' contains 'tan': chosen -> 'tan', the goal pair stays -> 1 of 3 options fails."""
    from environments.webshop.env import WebShopEnv

    e = WebShopEnv("all", **env_kwargs)
    index = next(i for i, g in enumerate(e.goals) if ("item shape", "rectangular") in g.goal_options)
    _, info = e.reset(seed=0, options={"task_index": index})
    for action in info["expert_plan"]:
        *_, info = e.step(action)
    g = e.goals[index]
    n_attr, n_opt = len(g.attributes), len(g.goal_options)
    assert info["score_details"]["option_matches"] == n_opt - 1
    assert math.isclose(info["score"], (n_attr + n_opt - 1 + 1) / (n_attr + n_opt + 1))
    assert not info["won"]


def test_expert_wins_exactly_the_reachable_goals(env_kwargs: dict) -> None:
    """On 40 eval goals the expert's success equals the independent perfect-purchase check."""
    from agents.scripted import ExpertAgent
    from environments.webshop.reward import score_purchase
    from opid_gym import BENCHMARKS
    from opid_gym.evaluate import evaluate

    bench = BENCHMARKS.get("webshop")
    summary, trajs = evaluate(bench, ExpertAgent(), env_kwargs=env_kwargs, limit=40)
    from environments.webshop.env import WebShopEnv

    e = WebShopEnv("eval", **env_kwargs)
    shop = e.shop
    for t in trajs:
        goal = e.goals[t.task_index]
        perfect = score_purchase(shop.catalogue.get(goal.asin), goal, shop.catalogue.prices[goal.asin],
                                 list(shop.expert_options(goal).values()))
        assert t.won == (perfect.score == 1.0), goal.goal_id
        assert t.metrics["score"] == pytest.approx(perfect.score)
        assert all(s.valid for s in t.steps)
    assert summary.episodes == 40 and summary.invalid_rate == 0.0


def test_random_agent_rarely_buys_right(env_kwargs: dict) -> None:
    from agents.scripted import RandomAgent
    from opid_gym import BENCHMARKS
    from opid_gym.evaluate import evaluate

    summary, trajs = evaluate(BENCHMARKS.get("webshop"), RandomAgent(), env_kwargs=env_kwargs, limit=30)
    assert summary.success_rate < 0.2 and summary.metrics["score"] < 0.5
    assert all("score" in t.metrics for t in trajs)            # the score is there even without a purchase


def test_webshop_actions_with_angle_brackets_parse_as_valid() -> None:
    parse = get_parser("think_action_webshop")
    for action in ("click[< prev]", "click[next >]", "click[<b>x</b>]"):  # the reference checks no tags inside
        parsed = parse(f"<think>go</think><action>{action.upper()}</action>")
        assert parsed.valid and parsed.action == action


def test_check_env_passes(env_kwargs: dict) -> None:
    from opid_gym.checker import check_env

    results = check_env("webshop-human", **env_kwargs)
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]


def test_data_files_name_the_catalogue(env) -> None:
    files = env.unwrapped.data_files()
    assert set(files) == {"webshop/products", "webshop/attributes", "webshop/human"}
    assert files["webshop/attributes"].name == "items_ins_v2_1000.json" and all(p.is_file() for p in files.values())
