"""The shop itself: pages, clickable elements, actions and the text observation.

Pages, as in WebShop's text environment (``web_agent_text_env.py``):

* **search**: the instruction and a search bar; ``search[<query>]`` runs a search.
* **results**: ``Page p (Total results: n)``, ``< Prev`` (from page 2 on), ``Next >``
  (always, as upstream: past the last result it shows an empty page), then 10
  products (ASIN, title, price) of the top 50.
* **item**: ``< Prev`` (back to the results), the options grouped by type, title,
  price, rating, the ``Description`` / ``Features`` / ``Reviews`` buttons, ``Buy Now``.
* **Description / Features / Reviews**: the sub-page text and ``< Prev`` (back to the item).
* **done**: after ``Buy Now``; the episode is over.

Every page but the search page has ``Back to Search``, which starts over (search,
page and chosen options are forgotten). Going back from an item to the results also
forgets the chosen options, as upstream.

Actions: ``search[...]`` (on any page, as upstream's text environment accepts it) and
``click[...]`` on one of the page's clickable elements, named by their lower-cased text: buttons (``back to
search``, ``< prev``, ``next >``, ``description``, ``features``, ``reviews``, ``buy
now``), result ASINs (``b09abc1234``) and option values. Anything else (an unknown
element, an empty search, garbage) changes nothing and returns the same page, as
upstream does. The verb is case-insensitive and the argument is taken between the
first ``[`` and the last ``]``, lower-cased, and compared with whitespace runs as single
spaces (some option values hold non-breaking spaces, which no agent can type;
upstream needs the exact text and lower-case verb, and breaks on brackets inside the
argument).

:meth:`Shop.render` gives the page's visible text, pieces joined by `` [SEP] `` (WebShop's
"simple" text mode); the done page says ``Thank you for shopping with us! [SEP] Your
score (min 0.0, max 1.0) [SEP] <score>``. What the agent observes is
:func:`reference_observation` of it: the pieces after the instruction, each quoted (the
OPID reference's ``format_obs``).

Admissible actions are the reference's: on the search page ``search[<your query>]`` (a
placeholder: any query is accepted) and ``click[search]`` (the page's Search button,
which upstream lists but ignores), elsewhere ``click[...]`` for each clickable element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from environments.webshop.catalogue import Catalogue, Product
from environments.webshop.goals import Goal
from environments.webshop.reward import MATCH_THRESHOLD, Score, fuzzy_ratio, normalize_color, score_purchase
from environments.webshop.search import TOP_N, SearchEngine

RESULTS_PER_PAGE = 10
SEARCH, RESULTS, ITEM, DONE = "search", "results", "item", "done"
SUB_PAGES = ("Description", "Features", "Reviews")
BUY_NOW, NEXT_PAGE, PREV_PAGE, BACK_TO_SEARCH = "buy now", "next >", "< prev", "back to search"
SEP = " [SEP] "
SEARCH_PLACEHOLDER = "search[<your query>]"
SEARCH_BUTTON = "search"

_ACTION = re.compile(r"\s*(search|click)\s*\[(.*)\]", re.IGNORECASE | re.DOTALL)


def _key(text: str) -> str:
    """How an element name is compared: lower case, any whitespace run as one space."""
    return " ".join(text.split()).lower()


def reference_observation(page_text: str, instruction: str) -> str:
    """The page as the OPID reference shows it to the model: the `` [SEP] `` pieces after
    the first piece equal to the instruction, each in single quotes; a page without the
    instruction (the done page) unchanged."""
    pieces = page_text.split(SEP)
    try:
        start = pieces.index(instruction)
    except ValueError:
        return page_text
    return SEP.join(f"'{p}'" for p in pieces[start + 1:])


def parse_action(action: str) -> tuple[str, str] | None:
    """``"click[Buy Now]"`` → ``("click", "buy now")``; None when it is neither verb."""
    m = _ACTION.match(action)
    if m is None:
        return None
    return m.group(1).lower(), _key(m.group(2))


@dataclass
class Session:
    """One shopper's state: the page, the last search, the product and chosen options."""

    goal: Goal
    page: str = SEARCH
    query: str | None = None
    results: tuple[int, ...] = ()
    page_num: int = 1
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    score: Score | None = None
    price: float | None = None

    def copy(self) -> Session:
        return Session(self.goal, self.page, self.query, self.results, self.page_num, self.asin,
                       dict(self.options), self.score, self.price)


class Shop:
    """Pages and actions over one catalogue and search engine (shared by many sessions)."""

    def __init__(self, catalogue: Catalogue, engine: SearchEngine) -> None:
        self.catalogue = catalogue
        self.engine = engine

    # ------------------------------------------------------------ page content
    def page_products(self, session: Session) -> list[Product]:
        start = (session.page_num - 1) * RESULTS_PER_PAGE
        return [self.catalogue.products[i] for i in session.results[start:start + RESULTS_PER_PAGE]]

    def product(self, session: Session) -> Product:
        assert session.asin is not None
        product = self.catalogue.get(session.asin)
        assert product is not None
        return product

    @staticmethod
    def option_types(product: Product) -> dict[str, str]:
        """Option value → its type; a value offered by two types goes to the last (as upstream)."""
        return {value: name for name, values in product.options.items() for value in values}

    def clickables(self, session: Session) -> list[str]:
        """The page's clickable elements (lower-case names), in page order, options last."""
        if session.page == SEARCH or session.page == DONE:
            return []
        if session.page == RESULTS:
            buttons = [BACK_TO_SEARCH] + ([PREV_PAGE] if session.page_num > 1 else []) + [NEXT_PAGE]
            return buttons + [p.asin.lower() for p in self.page_products(session)]
        if session.page == ITEM:
            buttons = [BACK_TO_SEARCH, PREV_PAGE] + [s.lower() for s in SUB_PAGES] + [BUY_NOW]
            return buttons + [v for v in self.option_types(self.product(session)) if v.strip() and v not in buttons]
        return [BACK_TO_SEARCH, PREV_PAGE]

    def has_search_bar(self, session: Session) -> bool:
        return session.page == SEARCH

    def render(self, session: Session) -> str:
        goal = session.goal
        if session.page == SEARCH:
            pieces = ["WebShop", "Instruction:", goal.instruction_text, "Search"]
        elif session.page == DONE:
            score = session.score.score if session.score is not None else 0.0
            pieces = ["Thank you for shopping with us!", "Your score (min 0.0, max 1.0)", str(score)]
        else:
            pieces = ["Instruction:", goal.instruction_text, "Back to Search"]
            if session.page == RESULTS:
                pieces.append(f"Page {session.page_num} (Total results: {len(session.results)})")
                if session.page_num > 1:
                    pieces.append("< Prev")
                pieces.append("Next >")
                for p in self.page_products(session):
                    pieces += [p.asin, p.title, p.price_tag]
            else:
                product = self.product(session)
                pieces.append("< Prev")
                if session.page == ITEM:
                    for name, values in product.options.items():
                        pieces += [name, *values]
                    pieces += [product.title, f"Price: {product.price_tag}", f"Rating: {product.rating}",
                               *SUB_PAGES, "Buy Now"]
                elif session.page == "Description":
                    pieces.append(product.description)
                elif session.page == "Features":
                    pieces += list(product.bullet_points)
                else:  # Reviews
                    for r in product.reviews:
                        pieces += [f'"{r.get("title", "")}"', str(r.get("score", "")), str(r.get("body", ""))]
        return SEP.join(p.strip() for p in pieces if p and p.strip())

    def admissible_actions(self, session: Session) -> list[str]:
        """The reference's list: the search placeholder where there is a search bar (then
        the page's Search button, which does nothing when clicked), else the clicks."""
        if session.page == DONE:
            return []
        if self.has_search_bar(session):
            return [SEARCH_PLACEHOLDER, f"click[{SEARCH_BUTTON}]"]
        return [f"click[{c}]" for c in self.clickables(session)]

    # ---------------------------------------------------------------- actions
    def search(self, session: Session, query: str) -> None:
        session.query = query
        session.results = tuple(self.engine.search(query, TOP_N))
        session.page_num = 1
        session.page = RESULTS
        session.asin = None
        session.options = {}

    def step(self, session: Session, action: str) -> bool:
        """Apply ``action`` to ``session``; False when it was not a valid action here."""
        parsed = parse_action(action)
        if parsed is None or session.page == DONE:
            return False
        verb, arg = parsed
        if verb == "search":
            if not arg:
                return False
            self.search(session, arg)
            return True
        by_key = {_key(c): c for c in self.clickables(session)}
        if arg not in by_key:
            return False
        arg = by_key[arg]
        if arg == BUY_NOW:
            product = self.product(session)
            session.price = self.catalogue.prices[product.asin]
            session.score = score_purchase(product, session.goal, session.price, list(session.options.values()))
            session.page = DONE
        elif arg == BACK_TO_SEARCH:
            session.page, session.query, session.results = SEARCH, None, ()
            session.page_num, session.asin, session.options = 1, None, {}
        elif arg == NEXT_PAGE:
            session.page_num += 1
        elif arg == PREV_PAGE:
            if session.page == RESULTS:
                session.page_num -= 1
            elif session.page == ITEM:
                session.page, session.asin, session.options = RESULTS, None, {}
            else:
                session.page = ITEM
        elif arg in (s.lower() for s in SUB_PAGES):
            session.page = next(s for s in SUB_PAGES if s.lower() == arg)
        elif session.page == RESULTS:
            session.asin = arg.upper()
            session.page = ITEM
        else:  # an option value on the item page
            session.options[self.option_types(self.product(session))[arg]] = arg
        return True

    # ----------------------------------------------------------------- expert
    def expert_query(self, goal: Goal) -> str:
        """The expert's search: the instruction text when its top 50 holds the goal
        product, else the product's title, else its catalogue query."""
        target = self.catalogue.index_of(goal.asin)
        product = self.catalogue.products[target]
        candidates = [goal.instruction_text.lower(), product.title.lower(), goal.query]
        for query in candidates:
            q = " ".join(query.split())
            if q and target in self.engine.search(q, TOP_N):
                return q
        return candidates[0]

    def expert_options(self, goal: Goal) -> dict[str, str]:
        """The option state the expert aims for: goal options clicked in order.

        Synthetic goals name exact values; a human goal's free-text option picks the
        product value it equals, else the one with the best fuzzy ratio above the
        reward's threshold.
        """
        product = self.catalogue.get(goal.asin)
        assert product is not None
        types = self.option_types(product)
        state: dict[str, str] = {}
        for wanted in goal.goal_options:
            if isinstance(wanted, tuple):
                value = wanted[1] if wanted[1] in types else None
            elif wanted in types:  # an exact value (``values`` goals); fuzzy ties could pick another
                value = wanted
            else:
                scored = [(fuzzy_ratio(normalize_color(v), normalize_color(wanted)), v) for v in types]
                best = max(scored, default=(0, None), key=lambda t: t[0])
                value = best[1] if best[0] > MATCH_THRESHOLD else None
            if value is not None:
                state[types[value]] = value
        return state

    def expert_action(self, session: Session, query: str, options: dict[str, str]) -> str | None:
        """The next action towards buying the goal product with the goal options."""
        goal_asin = session.goal.asin
        if session.page == DONE:
            return None
        if session.page == SEARCH:
            return f"search[{query}]"
        if session.page == RESULTS:
            on_page = [p.asin for p in self.page_products(session)]
            if goal_asin in on_page:
                return f"click[{goal_asin.lower()}]"
            target = self.catalogue.index_of(goal_asin)
            if target in session.results:
                wanted_page = session.results.index(target) // RESULTS_PER_PAGE + 1
                return f"click[{NEXT_PAGE if wanted_page > session.page_num else PREV_PAGE}]"
            return f"click[{BACK_TO_SEARCH}]"
        if session.page == ITEM:
            if session.asin != goal_asin:
                return f"click[{PREV_PAGE}]"
            for name, value in options.items():
                if session.options.get(name) != value:
                    return f"click[{value}]"
            return f"click[{BUY_NOW}]"
        return f"click[{PREV_PAGE}]"  # a sub-page

    def expert_plan(self, session: Session, query: str, options: dict[str, str], limit: int = 50) -> list[str]:
        """The expert's whole action sequence from ``session`` (which is not changed)."""
        sim = session.copy()
        plan: list[str] = []
        while len(plan) < limit:
            action = self.expert_action(sim, query, options)
            if action is None:
                break
            plan.append(action)
            if action == f"click[{BUY_NOW}]":  # the end; scoring it is not needed for the plan
                break
            self.step(sim, action)
        return plan
