"""The WebShop product catalogue: finding the files, loading and cleaning products.

Two on-disk forms of the same catalogue are read:

* the scraped product list (upstream ``items_shuffle_1000.json`` for the 1000-product
  shop, ``items_shuffle.json`` for the 1.18M one): raw Amazon records, cleaned here the
  way WebShop's engine cleans them (see :func:`clean_product`);
* the search engine's ``documents.jsonl`` (``resources_1k/`` or ``resources/``): one JSON
  line per product with ``id``, ``contents`` and the already cleaned ``product``.

Beside the products, ``items_ins_v2_*.json`` gives every product's attributes (and, for
some, a synthetic instruction), and ``items_human_ins*.json`` the human instructions.

Cleaning, as WebShop does it:

* products whose ASIN is ``"nan"`` or longer than 10 characters are dropped, and a
  repeated ASIN keeps its first record;
* the price string (``"$12.99"``, ``"$10.00 - $25.00"``) becomes one or two numbers
  (``[100.0]`` when missing), shown as ``$12.99`` or ``$10.0 to $25.0``;
* options become ``{type: [values]}``, type and values lower-cased, ``/`` in a value
  written `` | ``;
* the searchable text is title, description, first bullet point and the options
  (``"size: s, m, and color: red"``), lower-cased (:func:`searchable_text`);
* a product without attributes gets the placeholder ``DUMMY_ATTR``.

Each product also gets one fixed *price*: the single price, or for a price range a
uniform draw from the range, seeded by the ASIN (upstream draws it unseeded at start-up).
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from opid_gym.data import DataNotFoundError, missing_data_message, resolve_data_root

PRICE_SEED = 20240607
"""Seed of the per-product price draw for price ranges (with the ASIN's CRC32)."""

DOWNLOAD_HINT = (
    "WebShop's own setup (github.com/princeton-nlp/WebShop: `./setup.sh -d small` for 1000 products, "
    "`-d all` for 1.18M), then copy its data/ folder to <data root>/webshop/data/ (see docs/webshop.md)"
)

CATALOGUES: dict[str, dict[str, tuple[str, ...]]] = {
    # file name patterns, most preferred first (matched anywhere under <data root>/webshop)
    "1k": {
        "products": ("items_shuffle_1000.json", "items_shuffle_1000*.json", "resources_1k/documents.jsonl"),
        "attributes": ("items_ins_v2_1000.json",),
        "human": ("items_human_ins.json", "items_human_ins*.json"),
    },
    "full": {
        "products": ("items_shuffle.json", "resources/documents.jsonl"),
        "attributes": ("items_ins_v2.json",),
        "human": ("items_human_ins.json", "items_human_ins*.json"),
    },
}
"""The two catalogues WebShop ships: the 1000-product shop and the full 1.18M one."""


@dataclass(frozen=True, slots=True)
class Product:
    """One cleaned product, with the fields the shop shows and the reward reads."""

    asin: str
    name: str
    """The raw product name (= title); the type reward compares names."""
    title: str
    description: str
    bullet_points: tuple[str, ...]
    price_tag: str
    """The price as the pages show it: ``$12.99`` or ``$10.0 to $25.0``."""
    pricing: tuple[float, ...]
    """One price or a (low, high) range."""
    options: dict[str, tuple[str, ...]]
    """Option type → values, in the record's order (``{"size": ("s", "m"), ...}``)."""
    attributes: tuple[str, ...]
    category: str
    query: str
    product_category: str
    rating: str = "N.A."
    reviews: tuple[dict[str, Any], ...] = ()
    main_image: str = ""


@dataclass(frozen=True)
class CatalogueFiles:
    """Where one catalogue's files are."""

    products: Path
    attributes: Path
    human: Path | None

    @property
    def products_format(self) -> str:
        return "documents" if self.products.suffix == ".jsonl" else "raw"


@dataclass
class Catalogue:
    """The cleaned products (in file order), their searchable texts and fixed prices."""

    products: list[Product]
    contents: list[str]
    prices: dict[str, float]
    attributes: dict[str, dict[str, Any]]
    """``items_ins_v2``: ASIN → {attributes, instruction?, instruction_attributes?}."""
    human_instructions: dict[str, list[dict[str, Any]]]
    files: CatalogueFiles | None = None
    _by_asin: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_asin = {p.asin: i for i, p in enumerate(self.products)}

    def __len__(self) -> int:
        return len(self.products)

    def index_of(self, asin: str) -> int:
        return self._by_asin[asin]

    def get(self, asin: str) -> Product | None:
        i = self._by_asin.get(asin)
        return None if i is None else self.products[i]

    def checksum(self) -> str:
        """SHA-256 of the ids and searchable texts: names the search index cache."""
        h = hashlib.sha256()
        for p, text in zip(self.products, self.contents):
            h.update(p.asin.encode())
            h.update(b"\t")
            h.update(text.encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()


# ------------------------------------------------------------------ locating files
def webshop_root(data_root: str | Path | None) -> Path:
    root = resolve_data_root(data_root)
    return root / "webshop" if (root / "webshop").is_dir() else root


def _find(base: Path, patterns: Iterable[str]) -> Path | None:
    for pattern in patterns:
        if "/" in pattern:
            parent, name = pattern.rsplit("/", 1)
            hits = sorted(p for p in base.rglob(name) if p.parent.name == parent)
        else:
            hits = sorted(base.rglob(pattern))
        hits = [p for p in hits if p.is_file()]
        if hits:
            return hits[0]
    return None


def find_catalogue_files(
    data_root: str | Path | None = None,
    catalogue: str = "1k",
    *,
    products_file: str | Path | None = None,
    attributes_file: str | Path | None = None,
    human_file: str | Path | None = None,
) -> CatalogueFiles:
    """Find a catalogue's files under ``<data root>/webshop`` (explicit paths win)."""
    if catalogue not in CATALOGUES:
        raise ValueError(f"unknown WebShop catalogue {catalogue!r}; known: {', '.join(CATALOGUES)}")
    base = webshop_root(data_root)
    names = CATALOGUES[catalogue]
    found: dict[str, Path | None] = {}
    for key, explicit in (("products", products_file), ("attributes", attributes_file), ("human", human_file)):
        if explicit is not None:
            path = Path(explicit).expanduser()
            if not path.is_file():
                raise DataNotFoundError(f"WebShop {key} file not found: {path}")
            found[key] = path
        else:
            found[key] = _find(base, names[key]) if base.is_dir() else None
    for key in ("products", "attributes"):
        if found[key] is None:
            raise DataNotFoundError(
                missing_data_message(f"WebShop {catalogue} catalogue ({' or '.join(names[key])})", base, DOWNLOAD_HINT,
                                     holds="webshop", searched=True)
            )
    return CatalogueFiles(found["products"], found["attributes"], found["human"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------ cleaning
def parse_pricing(pricing: Any) -> list[float]:
    """``"$10.99"`` → ``[10.99]``; ``"$10.00 - $25.50"`` → ``[10.0, 25.5]``; missing → ``[100.0]``.

    A list of numbers (the search-engine form) is taken as it is.
    """
    if isinstance(pricing, (list, tuple)):
        values = [float(x) for x in pricing]
        return values[:2] if values else [100.0]
    if not pricing:
        return [100.0]
    values = []
    for piece in str(pricing).split("$")[1:]:
        digits = re.sub(r"[^\d.]", "", piece)
        try:
            values.append(float(Decimal(digits)))
        except InvalidOperation:
            continue
    return values[:2] if values else [100.0]


def price_tag(pricing: list[float]) -> str:
    return f"${pricing[0]}" if len(pricing) == 1 else f"${pricing[0]} to ${pricing[1]}"


def clean_options(customization: Any) -> dict[str, tuple[str, ...]]:
    """Raw ``customization_options`` → ``{type: values}``, lower-cased, ``/`` → `` | ``."""
    options: dict[str, tuple[str, ...]] = {}
    if not customization or not isinstance(customization, dict):
        return options
    for name, contents in customization.items():
        if contents is None:
            continue
        values = tuple(str(c["value"]).strip().replace("/", " | ").lower() for c in contents)
        options[str(name).lower()] = values
    return options


def clean_product(raw: dict[str, Any], attributes: dict[str, dict[str, Any]]) -> Product:
    """One raw scraped record → :class:`Product` (see the module docstring)."""
    asin = raw["asin"]
    small = raw.get("small_description", "")
    bullets = tuple(small) if isinstance(small, list) else (small,)
    pricing = parse_pricing(raw.get("pricing"))
    attrs = attributes.get(asin, {}).get("attributes")
    images = raw.get("images") or [""]
    return Product(
        asin=asin,
        name=raw.get("name", ""),
        title=raw.get("name", ""),
        description=raw.get("full_description", ""),
        bullet_points=tuple(str(b) for b in bullets),
        price_tag=price_tag(pricing),
        pricing=tuple(pricing),
        options=clean_options(raw.get("customization_options")),
        attributes=tuple(attrs) if attrs is not None else ("DUMMY_ATTR",),
        category=raw.get("category", ""),
        query=str(raw.get("query", "")).lower().strip(),
        product_category=raw.get("product_category", ""),
        main_image=images[0] if images else "",
    )


def product_from_document(doc: dict[str, Any]) -> Product:
    """A ``documents.jsonl`` product (already cleaned by WebShop) → :class:`Product`."""
    p = doc["product"]
    pricing = parse_pricing(p.get("pricing"))
    return Product(
        asin=p["asin"],
        name=p.get("name", p.get("Title", "")),
        title=p.get("Title", p.get("name", "")),
        description=p.get("Description", ""),
        bullet_points=tuple(str(b) for b in p.get("BulletPoints", [])),
        price_tag=p.get("Price") or price_tag(pricing),
        pricing=tuple(pricing),
        options={str(k): tuple(v) for k, v in (p.get("options") or {}).items()},
        attributes=tuple(p.get("Attributes", ("DUMMY_ATTR",))),
        category=p.get("category", ""),
        query=str(p.get("query", "")).lower().strip(),
        product_category=p.get("product_category", ""),
        rating=str(p.get("Rating", "N.A.")),
        reviews=tuple(p.get("Reviews") or ()),
        main_image=p.get("MainImage", ""),
    )


def searchable_text(product: Product) -> str:
    """What the search engine indexes: title, description, first bullet, options; lower-cased."""
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product.options.items())
    first_bullet = product.bullet_points[0] if product.bullet_points else ""
    return " ".join([product.title, product.description, first_bullet, option_text]).lower()


def fixed_price(product: Product) -> float:
    """The product's one price: its price, or a seeded uniform draw inside its range."""
    if len(product.pricing) == 1:
        return float(product.pricing[0])
    low, high = product.pricing[:2]
    rng = np.random.default_rng([PRICE_SEED, zlib.crc32(product.asin.encode())])
    return float(low + (high - low) * rng.random())  # like random.uniform: high < low allowed


def _keep(asin: Any, seen: set[str]) -> bool:
    if not isinstance(asin, str) or asin == "nan" or len(asin) > 10 or asin in seen:
        return False
    seen.add(asin)
    return True


def load_catalogue(files: CatalogueFiles, *, num_products: int | None = None) -> Catalogue:
    """Load and clean a catalogue (``num_products``: keep only the first N records)."""
    with open(files.attributes, encoding="utf-8") as f:
        attributes: dict[str, dict[str, Any]] = json.load(f)
    human: dict[str, list[dict[str, Any]]] = {}
    if files.human is not None:
        with open(files.human, encoding="utf-8") as f:
            human = json.load(f)
    products: list[Product] = []
    contents: list[str] = []
    seen: set[str] = set()
    if files.products_format == "documents":
        with open(files.products, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if num_products is not None and i >= num_products:
                    break
                if not line.strip():
                    continue
                doc = json.loads(line)
                if not _keep(doc["product"].get("asin"), seen):
                    continue
                product = product_from_document(doc)
                products.append(product)
                contents.append(doc.get("contents") or searchable_text(product))
    else:
        with open(files.products, encoding="utf-8") as f:
            raw_products = json.load(f)
        if num_products is not None:
            raw_products = raw_products[:num_products]
        for raw in raw_products:
            if not _keep(raw.get("asin"), seen):
                continue
            product = clean_product(raw, attributes)
            products.append(product)
            contents.append(searchable_text(product))
    prices = {p.asin: fixed_price(p) for p in products}
    return Catalogue(products, contents, prices, attributes, human, files)
