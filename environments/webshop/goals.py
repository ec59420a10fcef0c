"""WebShop goals: what to buy, and the fixed train/eval split.

Two kinds of goals, built the way WebShop builds them:

* **synthetic** (``items_ins_v2``): every product with an ``instruction`` gives one goal
  per combination of its option values (option types in sorted order); the text is
  ``"<instruction> with <type>: <value>, and <type>: <value>"`` plus the price clause.
  On the 1000-product catalogue that is 6910 goals from 415 products.
* **human** (``items_human_ins``): one goal per human instruction whose
  ``instruction_attributes`` is not empty; its options are the worker's
  ``instruction_options`` (free text). 13 goals on the 1000-product catalogue.

The price cap: the first four multiples of 10 (10 … 990) above the product's price;
two of them are drawn without replacement and the larger is the cap, written as
``", and price lower than X.XX dollars"``. With fewer than two candidates the cap is
1,000,000 and no clause is written. One draw per synthetic product (all its option
combinations share it, as upstream) and one per human instruction, each seeded by
:data:`CAP_SEED` and the ASIN (upstream draws them unseeded).

The split (:func:`split_goals`) is the reference's: the synthetic goals, in catalogue
order, are shuffled as WebShop's server shuffles its goal list (``random.seed(233);
random.shuffle(goals)``, Python's Mersenne Twister); goals 0 to :data:`EVAL_GOALS` - 1
(500) of the shuffled list are the evaluation goals (``webshop-eval``, the OPID /
verl-agent test range), the rest (6410) the training goals (``webshop-train``). The 13
human goals are their own evaluation split (``webshop-human``).
"""

from __future__ import annotations

import itertools
import random
import zlib
from dataclasses import dataclass

import numpy as np

from environments.webshop.catalogue import Catalogue

CAP_SEED = 233
"""Seed of the price-cap draws (with the ASIN's CRC32)."""
SPLIT_SEED = 233
"""Seed of WebShop's server shuffle of its goal list (``random.seed(233)``)."""
EVAL_GOALS = 500
"""Number of synthetic goals in the evaluation split (the reference's goals 0-499)."""
NO_CAP = 1_000_000.0
PRICE_STEPS = tuple(10.0 * i for i in range(1, 100))
SPLITS = ("train", "eval", "human", "all")

@dataclass(frozen=True)
class Goal:
    """One shopping goal.

    ``goal_options`` keeps upstream's shapes, which the option reward depends on:
    ``(type, value)`` pairs for synthetic goals, free-text strings for human ones.
    """

    goal_id: str
    kind: str
    asin: str
    instruction_text: str
    attributes: tuple[str, ...]
    goal_options: tuple[str | tuple[str, str], ...]
    price_upper: float
    name: str
    query: str
    category: str
    product_category: str


def price_cap(price: float, rng: np.random.Generator) -> tuple[float, str]:
    """The cap and its instruction clause (see the module docstring)."""
    candidates = [p for p in PRICE_STEPS if p > price][:4]
    if len(candidates) < 2:
        return NO_CAP, ""
    picked = rng.choice(len(candidates), size=2, replace=False)
    cap = max(candidates[int(i)] for i in picked)
    return cap, f", and price lower than {cap:.2f} dollars"


def _cap_rng(asin: str, k: int = 0) -> np.random.Generator:
    return np.random.default_rng([CAP_SEED, zlib.crc32(asin.encode()), k])


def synthetic_goals(catalogue: Catalogue) -> list[Goal]:
    goals: list[Goal] = []
    for product in catalogue.products:
        meta = catalogue.attributes.get(product.asin, {})
        instruction = meta.get("instruction")
        if instruction is None:
            continue
        attributes = tuple(meta.get("instruction_attributes") or ())
        if not attributes:
            raise ValueError(f"synthetic goal for {product.asin} has no instruction_attributes")
        cap, price_text = price_cap(catalogue.prices[product.asin], _cap_rng(product.asin))
        names = sorted(product.options)
        for k, combo in enumerate(itertools.product(*(product.options[n] for n in names))):
            pairs = tuple(zip(names, combo))
            option_text = ", and ".join(f"{n}: {v}" for n, v in pairs)
            option_text = f" with {option_text}" if option_text else ""
            goals.append(Goal(
                goal_id=f"{product.asin}/{k}", kind="synthetic", asin=product.asin,
                instruction_text=f"{instruction}{option_text}{price_text}",
                attributes=attributes, goal_options=pairs, price_upper=cap, name=product.title,
                query=product.query, category=product.category, product_category=product.product_category,
            ))
    return goals


def human_goals(catalogue: Catalogue) -> list[Goal]:
    goals: list[Goal] = []
    for product in catalogue.products:
        for j, ins in enumerate(catalogue.human_instructions.get(product.asin, [])):
            attributes = tuple(ins.get("instruction_attributes") or ())
            if not attributes:
                continue
            cap, price_text = price_cap(catalogue.prices[product.asin], _cap_rng(product.asin, j + 1))
            goals.append(Goal(
                goal_id=f"{product.asin}/h{j}", kind="human", asin=product.asin,
                instruction_text=str(ins["instruction"]).strip(".") + price_text,
                attributes=attributes, goal_options=tuple(ins.get("instruction_options") or ()),
                price_upper=cap, name=product.name, query=product.query, category=product.category,
                product_category=product.product_category,
            ))
    return goals


def reference_order(n: int) -> list[int]:
    """Where each goal of an ``n``-goal list lands after WebShop's server shuffle:
    ``order[k]`` is the index (in catalogue order) of the shuffled list's goal ``k``.

    ``random.shuffle`` permutes by position only, so shuffling the indices with the
    same seed gives the same permutation as shuffling the goals (own generator: the
    global ``random`` state is left alone).
    """
    order = list(range(n))
    random.Random(SPLIT_SEED).shuffle(order)
    return order


def split_goals(catalogue: Catalogue, split: str, *, eval_goals: int = EVAL_GOALS) -> list[Goal]:
    """The goals of one split, in their fixed order (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"unknown WebShop split {split!r}; known: {', '.join(SPLITS)}")
    if split == "human":
        return human_goals(catalogue)
    synthetic = synthetic_goals(catalogue)
    if split == "all":
        return synthetic + human_goals(catalogue)
    order = reference_order(len(synthetic))
    n_eval = min(eval_goals, len(synthetic))
    chosen = order[:n_eval] if split == "eval" else order[n_eval:]
    return [synthetic[int(i)] for i in chosen]
