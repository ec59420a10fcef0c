"""How many WebShop goals a perfect purchase can win, and why the others cannot.

For every goal of a split, buy the goal product with the goal's options (the expert's
choice) at its price and score it with WebShop's reward. A goal whose perfect purchase
scores below 1.0 cannot be won by any agent: upstream's option reward compares a
chosen value with the ``(type, value)`` pair of a synthetic goal, so a value that
contains a colour word but is not exactly one (``black1901``, ``blackened bronze``) is
normalised to the colour on the chosen side only, and no longer matches.

    python benchmarks/webshop_goal_ceiling.py [--split eval] [--data-root DIR] [--option-match values]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from environments.webshop.env import WebShopEnv  # noqa: E402
from environments.webshop.reward import MATCH_THRESHOLD, fuzzy_ratio, normalize_color, score_purchase  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="eval", choices=["eval", "train", "human", "all"])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--search-backend", default="bm25s")
    parser.add_argument("--option-match", default="pairs", choices=["pairs", "values"])
    args = parser.parse_args()
    env = WebShopEnv(args.split, data_root=args.data_root, search_backend=args.search_backend,
                     option_match=args.option_match)
    shop, catalogue = env.shop, env.shop.catalogue
    unreachable = []
    for goal in env.goals:
        product = catalogue.get(goal.asin)
        assert product is not None
        chosen = list(shop.expert_options(goal).values())
        s = score_purchase(product, goal, catalogue.prices[goal.asin], chosen)
        if s.score != 1.0:
            failing = [
                o for o in goal.goal_options
                if not any(fuzzy_ratio(normalize_color(c), normalize_color(o)) > MATCH_THRESHOLD for c in chosen)
            ]
            unreachable.append((goal, s, failing))
    n = len(env.goals)
    print(f"split {args.split}: {n} goals; a perfect purchase wins {n - len(unreachable)} "
          f"({(n - len(unreachable)) / n:.4f}); mean perfect score "
          f"{1 - sum(1 - s.score for _, s, _ in unreachable) / n:.4f}")
    for goal, s, failing in unreachable:
        print(f"  {goal.goal_id:16s} score {s.score:.4f}  attrs {s.attribute_matches}/{s.num_attributes}  "
              f"options {s.option_matches}/{s.num_options}  unmatched goal options: {failing}")


if __name__ == "__main__":
    main()
