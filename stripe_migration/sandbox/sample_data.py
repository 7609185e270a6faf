"""Realistic sample catalogue rows for the sandbox, a few percent of them bad as a CMS gets them.

:func:`generate_products` is deterministic for a seed (ids included), so tests and demos can name
rows; :func:`generate_catalog` also says which rows are bad and how. Valid rows use the price texts
editors really type ("19.99", " 24.00 ", "12,50", "€ 12.50", "$8.99", "1,299.00", "1500" yen) so the
parser's accepted forms are exercised. Bad rows cover the ways a CMS goes wrong (see
:data:`DEFECT_KINDS`). :func:`insert_products` loads rows into ``products`` with one COPY.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from stripe_migration.catalog.columns import CONTENT_COLUMNS
from stripe_migration.db.urls import libpq_url

#: The defects seeded into bad rows, each refused by validation with a reason naming the field.
DEFECT_KINDS: tuple[str, ...] = (
    "price_unparseable",
    "price_negative",
    "price_below_minimum",
    "name_missing",
    "currency_unknown",
    "too_many_images",
    "name_too_long",
    "description_too_long",
    "metadata_nested",
)

_ADJECTIVES = (
    "Classic", "Organic", "Everyday", "Premium", "Compact", "Vintage", "Handmade", "Lightweight",
    "Recycled", "Minimalist", "Deluxe", "Rustic", "Nordic", "Waterproof", "Travel",
)  # fmt: skip
_MATERIALS = (
    "Cotton", "Linen", "Ceramic", "Walnut", "Bamboo", "Leather", "Wool", "Steel", "Glass",
    "Cork", "Canvas", "Copper", "Oak", "Merino", "Stoneware",
)  # fmt: skip
_NOUNS = (
    "T-Shirt", "Tote Bag", "Coffee Mug", "Cutting Board", "Notebook", "Water Bottle", "Scarf",
    "Desk Lamp", "Backpack", "Candle", "Teapot", "Throw Blanket", "Phone Case", "Plant Pot",
    "Wallet", "Beanie", "Serving Bowl", "Pour-Over Dripper", "Yoga Mat", "Apron",
)  # fmt: skip
_CATEGORIES = ("apparel", "home", "kitchen", "office", "outdoor", "accessories")
_COLORS = ("black", "white", "sand", "forest", "navy", "terracotta", "grey")
_SENTENCES = (
    "Made to last and designed for daily use.",
    "Each piece is finished by hand, so small variations are part of its charm.",
    "Ships in plastic-free packaging.",
    "Easy to clean; we recommend washing by hand.",
    "A thoughtful gift for friends and family.",
    "Sourced from certified suppliers.",
    "Pairs well with the rest of the collection.",
    "Dimensions and care instructions are printed on the label.",
)
_PRICE_POINTS = ("4.99", "8.99", "12.50", "14.00", "19.99", "24.00", "29.95", "39.00", "49.99",
                 "64.50", "89.00", "129.00", "249.99", "1299.00")  # fmt: skip
# Currency mix of the sample; jpy exercises a zero-decimal currency.
_CURRENCY_WEIGHTS = (("usd", 50), ("eur", 25), ("gbp", 10), ("jpy", 5), ("cad", 5), ("chf", 3),
                     ("sek", 2))  # fmt: skip


@dataclass(frozen=True)
class SampleCatalog:
    """Generated rows and, for each bad row, its defect kind (by id)."""

    rows: list[dict[str, Any]]
    defects: dict[str, str]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _price_text(rng: random.Random, currency: str) -> str:
    """A valid price as an editor might type it in ``currency``."""
    if currency == "jpy":
        return str(rng.randrange(300, 30_000, 10))
    amount = Decimal(rng.choice(_PRICE_POINTS))
    plain = f"{amount:.2f}"
    style = rng.random()
    if style < 0.55:
        return plain
    if style < 0.65:
        return f" {plain} "
    if style < 0.72 and amount == amount.to_integral_value():
        return str(int(amount))
    if currency == "eur":
        if style < 0.85:
            return plain.replace(".", ",")
        return rng.choice((f"€ {plain}", f"{plain} EUR", f"{plain.replace('.', ',')} €"))
    if currency == "usd" and style < 0.85:
        return rng.choice((f"${plain}", f"{plain} USD"))
    if amount >= 1000:
        return f"{amount:,.2f}"
    return plain


def _valid_row(rng: random.Random, number: int) -> dict[str, Any]:
    name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_MATERIALS)} {rng.choice(_NOUNS)}"
    currency = rng.choices(
        [c for c, _ in _CURRENCY_WEIGHTS], weights=[w for _, w in _CURRENCY_WEIGHTS]
    )[0]
    slug = name.lower().replace(" ", "-")
    images = [
        f"https://images.example.com/products/{slug}-{number}-{i}.jpg"
        for i in range(rng.randint(0, 4))
    ]
    metadata: dict[str, Any] = {
        "sku": f"SKU-{number:06d}",
        "category": rng.choice(_CATEGORIES),
        "weight_g": rng.randrange(50, 5_000, 10),  # a number: stringified by validation
    }
    if rng.random() < 0.4:
        metadata["color"] = rng.choice(_COLORS)
    if rng.random() < 0.2:
        metadata["featured"] = True
    description = " ".join(rng.sample(_SENTENCES, rng.randint(1, 3))) if rng.random() < 0.9 else ""
    return {
        "id": _uuid(rng),
        "name": name,
        "description": description,
        "price": _price_text(rng, currency),
        "currency": currency,
        "images": images,
        "active": True,
        "metadata": metadata,
    }


def _spoil(rng: random.Random, row: dict[str, Any], kind: str) -> None:
    """Make ``row`` bad in the way ``kind`` names."""
    match kind:
        case "price_unparseable":
            row["currency"] = "eur"
            row["price"] = rng.choice(("12,50,00", "1,299", "12.5.0", "12,50 €€", "twelve"))
        case "price_negative":
            row["currency"] = "usd"
            row["price"] = rng.choice(("-9.99", "-12,50", "$-5.00"))
        case "price_below_minimum":
            row["currency"] = "usd"
            row["price"] = rng.choice(("0.20", "0,30", "0", "0.49"))
        case "name_missing":
            row["name"] = rng.choice((None, "", "   "))
        case "currency_unknown":
            row["currency"] = rng.choice(("xyz", "eur2", "bitcoin", "€", None))
        case "too_many_images":
            row["images"] = [
                f"https://images.example.com/products/extra-{i}.jpg"
                for i in range(rng.randint(9, 12))
            ]
        case "name_too_long":
            # Ends in "." so that trimming whitespace cannot bring it back under the limit.
            row["name"] = ("Very Long Product Name " * 250)[: rng.randint(5_000, 5_200)] + "."
        case "description_too_long":
            row["description"] = ("Lorem ipsum dolor sit amet. " * 1_500)[:40_000] + "."
        case "metadata_nested":
            row["metadata"] = {**row["metadata"], "dimensions": {"w_cm": 10, "h_cm": 12}}
        case _:
            raise ValueError(f"unknown defect kind {kind!r}; known: {', '.join(DEFECT_KINDS)}")


def generate_catalog(
    n: int, seed: int = 0, bad_fraction: float = 0.04, inactive_fraction: float = 0.0
) -> SampleCatalog:
    """Generate ``n`` rows; ``round(n * bad_fraction)`` are bad (kinds taken in turn), and
    ``round(n * inactive_fraction)`` of the good ones are inactive. Same seed, same rows."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= bad_fraction <= 1.0 or not 0.0 <= inactive_fraction <= 1.0:
        raise ValueError("bad_fraction and inactive_fraction must be between 0 and 1")
    rng = random.Random(seed)
    rows = [_valid_row(rng, number) for number in range(n)]
    bad_positions = rng.sample(range(n), round(n * bad_fraction))
    kinds = list(DEFECT_KINDS)
    rng.shuffle(kinds)
    defects: dict[str, str] = {}
    for turn, position in enumerate(bad_positions):
        kind = kinds[turn % len(kinds)]
        _spoil(rng, rows[position], kind)
        defects[rows[position]["id"]] = kind
    good = [i for i in range(n) if rows[i]["id"] not in defects]
    for position in rng.sample(good, min(len(good), round(n * inactive_fraction))):
        rows[position]["active"] = False
    return SampleCatalog(rows=rows, defects=defects)


def generate_products(n: int, seed: int = 0, bad_fraction: float = 0.04) -> list[dict[str, Any]]:
    """Generate ``n`` realistic product rows (``products`` columns), a few percent bad."""
    return generate_catalog(n, seed, bad_fraction).rows


def _copy_row(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The row's values of ``CONTENT_COLUMNS``, in that order, as COPY takes them."""
    return (
        row["id"],
        row.get("name"),
        row.get("description"),
        row.get("price"),
        row.get("currency"),
        Jsonb(list(row.get("images") or [])),
        bool(row.get("active", True)),
        Jsonb(dict(row.get("metadata") or {})),
    )


def insert_products(database_url: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert ``rows`` into ``products`` with one COPY; rows whose id exists are skipped.

    Safe to run twice (the second run inserts nothing). Returns the number of rows inserted.
    """
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in CONTENT_COLUMNS)
    with psycopg.connect(libpq_url(database_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE seed_products (LIKE products INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with cur.copy(sql.SQL("COPY seed_products ({}) FROM STDIN").format(columns)) as copy:
            for row in rows:
                copy.write_row(_copy_row(row))
        cur.execute(
            sql.SQL(
                "INSERT INTO products ({cols}) SELECT {cols} FROM seed_products "
                "ON CONFLICT (id) DO NOTHING"
            ).format(cols=columns)
        )
        inserted = cur.rowcount
    return inserted


def product_ids(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ids of ``rows``, in order (handy for tests and the CLI's summary)."""
    return [str(row["id"]) for row in rows]
