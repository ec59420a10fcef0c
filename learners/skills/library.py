"""The static skill library: general advice plus one text per task kind.

Several baselines (Skill-Prompt*, Skill-GRPO, SDAR, OPSD, Skill-SD, RLSD) condition on a
fixed library instead of hindsight skills (spec: algorithms.md §3). The library is data:
a folder of Markdown files, the packaged one by default, any folder with the same
layout when a user points ``skill_library`` at it::

    general.md
    alfworld/{pick,look,clean,heat,cool,pick2}.md
    webshop/{apparel,footwear,home,electronics,accessories,beauty,other}.md
    searchqa/{direct,multihop,attribute,comparison}.md
    sciworld/{matter,measurement,chemistry,electricity,classification,plants,genetics,lifecycle,forces}.md

Selection: ALFWorld by the task type the environment reports; WebShop by keywords of
the instruction (product family); search QA by the question's form (comparison,
entity-attribute) and the data set's hop count (multi-hop data sets → multihop);
ScienceWorld by the topic of the engine's task name (:data:`SCIWORLD_TOPICS`).
Missing files are simply absent from the text; an unknown family gets the general text.

How the text reaches a prompt (:func:`with_library_text`): one section at the start of
the last user message, before everything the environment's template wrote. The same
function serves the student's prompts (Skill-GRPO, Skill-Prompt* evaluation, through
:func:`library_prompt_hook`) and the teacher's prompts of the distillation baselines
(``learners/distill.py``), so both see the library the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from opid_gym.types import Message

PACKAGED = Path(__file__).with_name("library")

WEBSHOP_KEYWORDS: dict[str, tuple[str, ...]] = {
    # checked in this order; the family with the most keyword hits wins, earlier on ties
    "footwear": ("shoe", "shoes", "sneaker", "sneakers", "boot", "boots", "sandal", "sandals", "slipper",
                 "slippers", "heel", "heels", "loafer", "loafers", "clog", "clogs", "flats"),
    "apparel": ("shirt", "t-shirt", "shirts", "dress", "dresses", "pants", "jeans", "jacket", "coat", "hoodie",
                "sweater", "sweatshirt", "socks", "underwear", "bra", "leggings", "shorts", "skirt", "blouse",
                "tops", "top", "swimsuit", "pajama", "pajamas", "clothing", "vest", "cardigan", "tank", "jumpsuit"),
    "electronics": ("charger", "cable", "usb", "phone", "iphone", "samsung", "laptop", "tablet", "ipad", "speaker",
                    "headphone", "headphones", "earbuds", "camera", "battery", "hdmi", "adapter", "tv", "monitor",
                    "keyboard", "mouse", "router", "bluetooth", "wireless", "screen", "projector", "remote"),
    "accessories": ("bag", "bags", "wallet", "watch", "watches", "jewelry", "necklace", "bracelet", "earrings",
                    "ring", "belt", "hat", "cap", "sunglasses", "backpack", "purse", "handbag", "scarf",
                    "keychain", "tote"),
    "beauty": ("shampoo", "conditioner", "lotion", "cream", "serum", "makeup", "lipstick", "nail", "hair", "skin",
               "soap", "perfume", "deodorant", "vitamin", "supplement", "toothpaste", "snack", "snacks", "tea",
               "coffee", "gluten", "organic", "sugar", "protein", "oil", "wig", "brush", "mask", "beard", "facial"),
    "home": ("sofa", "couch", "chair", "table", "bed", "pillow", "curtain", "curtains", "rug", "lamp", "shelf",
             "decor", "furniture", "mattress", "blanket", "towel", "mirror", "candle", "storage", "cabinet",
             "ottoman", "stool", "desk", "bedding", "sheets", "vase", "wall", "kitchen", "bathroom", "living"),
}

MULTI_HOP_DATASETS = {"hotpotqa", "2wiki", "musique", "bamboogle"}
_COMPARISON = re.compile(r"\b(both|either|same|older|younger|earlier|later|first|larger|bigger|smaller|taller|"
                         r"longer|shorter|more|fewer|higher|lower)\b")
_ATTRIBUTE = re.compile(r"^(when|where|what year|what date|how many|how much|how long|how old|how tall|"
                        r"what is the (population|height|length|capital|area))\b")


SCIWORLD_TOPICS: tuple[tuple[str, str], ...] = (
    # (task-name prefix, topic), first match wins; the engine's 30 task names
    ("measure-melting-point", "measurement"), ("use-thermometer", "measurement"),
    ("boil", "matter"), ("melt", "matter"), ("freeze", "matter"), ("change-the-state-of-matter", "matter"),
    ("chemistry-mix", "chemistry"),
    ("power-component", "electricity"), ("test-conductivity", "electricity"),
    ("find-", "classification"),
    ("grow-", "plants"),
    ("mendelian-genetics", "genetics"),
    ("identify-life-stages", "lifecycle"), ("lifespan-", "lifecycle"),
    ("inclined-plane", "forces"),
)


def sciworld_topic(task_name: str) -> str:
    """The library topic of a ScienceWorld task (its engine name, e.g. ``boil``); ``general`` if none."""
    return next((topic for prefix, topic in SCIWORLD_TOPICS if task_name.startswith(prefix)), "general")


def webshop_family(instruction: str) -> str:
    words = re.findall(r"[a-z][a-z\-']*", instruction.lower())
    best, best_hits = "other", 0
    for family, keys in WEBSHOP_KEYWORDS.items():
        hits = sum(1 for w in words if w in keys)
        if hits > best_hits:
            best, best_hits = family, hits
    return best


def question_kind(question: str, dataset: str | None = None) -> str:
    q = " ".join(question.lower().split())
    if _COMPARISON.search(q) and (" or " in q or "both" in q or "same" in q):
        return "comparison"
    if dataset in MULTI_HOP_DATASETS:
        return "multihop"
    if _ATTRIBUTE.search(q):
        return "attribute"
    return "direct"


@dataclass(frozen=True)
class LibrarySkills:
    """The library text chosen for one task: general advice, the kind's advice, and the kind."""

    general: str
    specific: str
    kind: str

    @property
    def text(self) -> str:
        return "\n".join(part for part in (self.specific, self.general) if part)


@dataclass(frozen=True)
class SkillLibrary:
    root: Path

    def _read(self, *parts: str) -> str:
        return _read_file(self.root.joinpath(*parts))

    def kind(self, family: str, task: str, task_type: str) -> str:
        if family == "alfworld":
            return task_type
        if family == "webshop":
            return webshop_family(task)
        if family == "searchqa":
            return question_kind(task, task_type)
        if family == "sciworld":
            return sciworld_topic(task_type)
        return task_type or "general"

    def select(self, family: str, task: str, task_type: str = "") -> LibrarySkills:
        """The skills for one task of ``family`` (``alfworld``, ``webshop``, ``searchqa``, ``sciworld``)."""
        kind = self.kind(family, task, task_type)
        return LibrarySkills(self._read("general.md"), self._read(family, f"{kind}.md"), kind)

    def kinds(self, family: str) -> list[str]:
        folder = self.root / family
        return sorted(p.stem for p in folder.glob("*.md")) if folder.is_dir() else []


@lru_cache(maxsize=256)
def _read_file(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


def load_library(path: str | Path | None = None) -> SkillLibrary:
    """The packaged library, or the folder at ``path`` (same layout)."""
    root = Path(path).expanduser() if path else PACKAGED
    if not (root / "general.md").is_file():
        raise FileNotFoundError(f"skill library folder {root} has no general.md (see learners/skills/library.py)")
    return SkillLibrary(root)


# ----------------------------------------------------------------- prompts
SKILLS_HEADER = "Skills that help with this kind of task:"
"""The first line of the skills section added to a prompt."""


def with_library_text(messages: list[Message], text: str) -> list[Message]:
    """A copy of ``messages`` whose last user message starts with a skills section.

    ``text`` empty: the messages unchanged (copied). No user message: one is appended.
    """
    out = [dict(m) for m in messages]
    if not text:
        return out
    section = f"{SKILLS_HEADER}\n{text}\n\n"
    for m in reversed(out):
        if m.get("role") == "user":
            m["content"] = section + str(m.get("content", ""))
            return out
    out.append({"role": "user", "content": section.rstrip()})
    return out


def library_prompt_hook(library: SkillLibrary, family: str) -> Callable[[list[Message], dict[str, Any]], list[Message]]:
    """A rollout prompt hook (``opid_gym.rollout.PromptHook``) that shows the library skills.

    The skills are selected per step from the environment's info (``task``,
    ``task_type``) as :meth:`SkillLibrary.select` does for ``family``.
    """

    def hook(messages: list[Message], info: dict[str, Any]) -> list[Message]:
        skills = library.select(family, str(info.get("task", "")), str(info.get("task_type", "")))
        return with_library_text(messages, skills.text)

    return hook


def skills_prompt_hook(source: str | Path | None, family: str) -> Callable[[list[Message], dict[str, Any]], list[Message]]:
    """The prompt hook of ``opid-bench eval --skills`` (``opid_gym.builtin.SKILLS_PROMPT_HOOK``):
    the library at ``source`` (None: the packaged one) for ``family``.

    Raises:
        FileNotFoundError: ``source`` is not a skill library folder.
    """
    return library_prompt_hook(load_library(source), family)
