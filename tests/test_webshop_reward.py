"""WebShop's purchase score on hand-worked cases, one term at a time (no data needed)."""

from __future__ import annotations

import math
import warnings

import pytest

from environments.webshop import reward
from environments.webshop.catalogue import Product
from environments.webshop.goals import Goal
from environments.webshop.reward import (
    attribute_matches,
    fuzzy_ratio,
    normalize_color,
    option_matches,
    score_purchase,
    type_reward,
)


def product(**kw: object) -> Product:
    base = dict(
        asin="B000000001", name="Leather Wallet", title="Leather Wallet", description="", bullet_points=(),
        price_tag="$20.0", pricing=(20.0,), options={}, attributes=(), category="fashion",
        query="wallets", product_category="Clothing › Men › Accessories › Wallets",
    )
    base.update(kw)
    return Product(**base)  # type: ignore[arg-type]


def goal(**kw: object) -> Goal:
    base = dict(
        goal_id="g", kind="human", asin="B000000001", instruction_text="", attributes=(), goal_options=(),
        price_upper=1_000_000.0, name="Leather Wallet", query="wallets", category="fashion",
        product_category="Clothing › Men › Accessories › Wallets",
    )
    base.update(kw)
    return Goal(**base)  # type: ignore[arg-type]


def nouns_by_table(table: dict[str, tuple[str, ...]]):
    return lambda text: table[text]


# ------------------------------------------------------------------ fuzzy ratio
def test_fuzzy_ratio_drops_latin1_and_rounds() -> None:
    # "café" loses "é" (U+00E9 is in 128-255): "caf" vs "cafe": 2*3/(3+4) = 85.71 -> 86
    assert fuzzy_ratio("café", "cafe") == 86
    # token sets: one side's tokens inside the other's -> 100
    assert fuzzy_ratio("Gluten-Free", "gluten free") == 100
    # a pair goes through str(): "('size', 'x-large')" -> tokens size, x, large
    assert fuzzy_ratio(("size", "x-large"), "large") == 100


# ------------------------------------------------------------------ attributes
def test_attribute_matches_by_fuzzy_attribute() -> None:
    p = product(attributes=("gluten-free", "non gmo"))
    assert attribute_matches(p, ["gluten free"]) == 1          # same tokens after processing
    assert attribute_matches(p, ["sugar free"]) == 0           # shares only "free": ratio well below 85
    assert attribute_matches(p, ["gluten free", "sugar free", "non-gmo"]) == 2


def test_attribute_matches_by_title_bullets_description_substring() -> None:
    p = product(title="Long Lasting Lipstick Set", bullet_points=("Made with SHEA butter",),
                description="Cruelty free formula.", attributes=("DUMMY_ATTR",))
    assert attribute_matches(p, ["long lasting"]) == 1         # title, lower-cased
    assert attribute_matches(p, ["shea butter"]) == 1          # bullet points
    assert attribute_matches(p, ["cruelty free"]) == 1         # description
    assert attribute_matches(p, ["vegan"]) == 0


# --------------------------------------------------------------------- options
def test_normalize_color_string_and_pair() -> None:
    assert normalize_color("midnight black") == "black"        # first colour of WebShop's list found inside
    assert normalize_color("navy blue") == "blue"              # "blue" comes before "navy" in the list
    assert normalize_color("x-large") == "x-large"
    assert normalize_color(("color", "black")) == "black"      # a pair: only an exact element counts
    assert normalize_color(("color", "black1901")) == ("color", "black1901")


def test_option_matches_with_colour_normalisation() -> None:
    # "jet black" vs "black color" share only "black" (ratio ~71 without normalisation);
    # both normalise to "black" and then match
    assert fuzzy_ratio("jet black", "black color") <= 85
    assert option_matches(["jet black"], ["black color"]) == 1
    assert option_matches(["small"], ["large"]) == 0


def test_option_matches_synthetic_pairs_keep_upstream_quirks() -> None:
    assert option_matches(["black", "x-large"], [("color", "black"), ("size", "x-large")]) == 2
    assert option_matches(["large"], [("size", "x-large")]) == 1       # tokens of "large" ⊂ "size x large"
    assert option_matches(["small"], [("size", "x-large")]) == 0
    # the chosen "black1901" becomes "black"; the goal pair stays "color black1901": no match
    assert option_matches(["black1901"], [("color", "black1901")]) == 0


# ----------------------------------------------------------------------- price
def test_price_term_and_total() -> None:
    p = product(attributes=("gluten free", "soy free"), options={"flavor": ("vanilla", "chocolate")})
    g = goal(attributes=("gluten free", "soy free"), goal_options=("vanilla",), price_upper=40.0)
    nouns = nouns_by_table({"Leather Wallet": ("leather", "wallet")})
    under = score_purchase(p, g, 30.0, ["vanilla"], nouns=nouns)
    assert under.price_ok and under.score == 1.0
    over = score_purchase(p, g, 45.0, ["vanilla"], nouns=nouns)
    assert not over.price_ok and math.isclose(over.score, 3 / 4)      # (2 + 1 + 0) / (2 + 1 + 1)
    at_cap = score_purchase(p, g, 40.0, [], nouns=nouns)
    assert at_cap.price_ok and math.isclose(at_cap.score, 3 / 4)      # (2 + 0 + 1) / 4


# ------------------------------------------------------------------------ type
@pytest.mark.parametrize(
    "query, category, bought_nouns, expected_title",
    [
        ("wallets", "Other › Things", ("wallet", "case", "card", "zip"), 0.5),   # query match
        ("purses", "Clothing › Men › Bags", ("wallet", "x"), 0.5),              # 2 category levels shared
        ("purses", "Other › Things", ("wallet", "leather"), 1.0),               # title score > 0.2
    ],
)
def test_type_reward_match_branches(query: str, category: str, bought_nouns: tuple[str, ...],
                                    expected_title: float) -> None:
    table = {"Goal Name": ("leather", "wallet"), "Bought Name": bought_nouns}
    p = product(name="Bought Name", query=query, product_category=category)
    g = goal(name="Goal Name", query="wallets", product_category="Clothing › Men › Accessories › Wallets")
    t = type_reward(p, g, nouns=nouns_by_table(table))
    assert t.title_score == expected_title
    assert t.r_type == 1.0


def test_type_reward_each_match_alone_lifts_to_one() -> None:
    g = goal(name="Goal", query="wallets", product_category="A › B › C")
    five = {"Goal": ("a", "b", "c", "d", "e"), "Bought": ("a",)}  # title score 0.2: not > 0.2
    none = type_reward(product(name="Bought", query="other", product_category="X › Y"), g, nouns=nouns_by_table(five))
    query = type_reward(product(name="Bought", query="wallets", product_category="X › Y"), g, nouns=nouns_by_table(five))
    cat = type_reward(product(name="Bought", query="other", product_category="A › B › Q"), g, nouns=nouns_by_table(five))
    assert (none.r_type, query.r_type, cat.r_type) == (0.5, 1.0, 1.0)
    assert (none.query_match, query.query_match, cat.category_match) == (False, True, True)


def test_type_reward_low_branches() -> None:
    g = goal(name="Goal", query="wallets", product_category="A › B › C")
    five = ("a", "b", "c", "d", "e")

    def r(bought: tuple[str, ...], desired: tuple[str, ...], **kw: object) -> tuple[float, float]:
        t = type_reward(product(name="Bought", **kw), g, nouns=nouns_by_table({"Goal": desired, "Bought": bought}))
        return t.r_type, t.title_score

    # 1 of 5 nouns = 0.2: not > 0.2, no query or category match -> 0.5
    assert r(("a",), five, query="other", product_category="X") == (0.5, 0.2)
    # the same with a query match -> 1.0
    assert r(("a",), five, query="wallets", product_category="X") == (1.0, 0.2)
    # 1 of 11 nouns < 0.1 -> 0.1 even with the query matching
    eleven = tuple("abcdefghijk")
    assert r(("a",), eleven, query="wallets", product_category="A › B")[0] == 0.1
    # no shared noun -> 0.0
    assert r(("z",), five, query="wallets", product_category="A › B") == (0.0, 0.0)
    # the goal name has no noun: title score 0.2 -> 0.5 without other matches, 1.0 with one
    assert r(("z",), (), query="other", product_category="X") == (0.5, 0.2)
    assert r(("z",), (), query="other", product_category="A › B › Z") == (1.0, 0.2)


def test_title_score_divides_by_the_goal_noun_list() -> None:
    # goal.py: len(set(bought) & set(desired)) / len(desired), desired a list (duplicates counted)
    g = goal(name="Goal", query="wallets", product_category="A › B › C")
    table = {"Goal": ("wallet", "wallet", "leather", "strap"), "Bought": ("wallet",)}
    t = type_reward(product(name="Bought", query="other", product_category="X"), g, nouns=nouns_by_table(table))
    assert t.title_score == 1 / 4                       # not 1/3 (distinct goal nouns)
    assert t.r_type == 1.0                              # 0.25 > 0.2
    table = {"Goal": ("wallet", "wallet", "wallet", "wallet", "wallet", "leather"), "Bought": ("wallet",)}
    t = type_reward(product(name="Bought", query="other", product_category="X"), g, nouns=nouns_by_table(table))
    assert t.title_score == 1 / 6 and t.r_type == 0.5   # 1/2 with distinct nouns would give 1.0
    table = {"Goal": ("wallet",) * 11, "Bought": ("wallet",)}
    t = type_reward(product(name="Bought", query="wallets", product_category="X"), g, nouns=nouns_by_table(table))
    assert t.title_score == 1 / 11 and t.r_type == 0.1  # < 0.1 despite the query match


def test_type_reward_scales_the_total() -> None:
    p = product(name="Bought", attributes=("gluten free",), query="other", product_category="X")
    g = goal(name="Goal", attributes=("gluten free",), price_upper=100.0)
    s = score_purchase(p, g, 20.0, [], nouns=nouns_by_table({"Goal": ("a", "b", "c", "d", "e"), "Bought": ("a",)}))
    assert s.r_type == 0.5 and math.isclose(s.score, 0.5)                # (1 + 1) / 2 · 0.5


def test_spacy_nouns_of_a_product_name() -> None:
    if reward._spacy_pipeline() is None:
        pytest.skip("spaCy's en_core_web_sm is not installed")
    nouns = reward.spacy_nouns("Men's Leather Wallet with Coin Pocket")
    assert "wallet" in nouns and "pocket" in nouns and "with" not in nouns


def test_missing_spacy_model_warns_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    spacy = pytest.importorskip("spacy")

    def no_model(name: str, **_: object) -> None:
        raise OSError(f"[E050] Can't find model '{name}'")

    monkeypatch.setattr(spacy, "load", no_model)
    reward._spacy_pipeline.cache_clear()
    reward.spacy_nouns.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            nouns = reward.spacy_nouns("The Leather Wallet for Men")
        assert any("en_core_web_sm" in str(w.message) for w in caught)
        assert nouns == ("leather", "wallet", "men")
    finally:
        reward._spacy_pipeline.cache_clear()
        reward.spacy_nouns.cache_clear()


def _perfect_scores(env) -> list[float]:
    from environments.webshop.reward import score_purchase

    shop, catalogue = env.shop, env.shop.catalogue
    return [
        score_purchase(catalogue.get(g.asin), g, catalogue.prices[g.asin],
                       list(shop.expert_options(g).values())).score
        for g in env.goals
    ]


def test_option_match_values_makes_every_eval_goal_winnable(data_root) -> None:
    """`pairs` (the released reward) leaves some goals unwinnable; `values` does not."""
    from environments.webshop.env import WebShopEnv

    pairs = _perfect_scores(WebShopEnv("eval", data_root=data_root, search_backend="bm25s"))
    values = _perfect_scores(WebShopEnv("eval", data_root=data_root, search_backend="bm25s",
                                        option_match="values"))
    assert len(pairs) == len(values) == 500
    assert 0 < sum(s < 1.0 for s in pairs) < 50
    assert all(s == 1.0 for s in values)
    with pytest.raises(ValueError, match="option_match"):
        WebShopEnv("eval", data_root=data_root, search_backend="bm25s", option_match="both")
