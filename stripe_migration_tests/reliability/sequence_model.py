"""The reference model of :mod:`.test_catalog_sequences`: the CMS as editors left it, in plain
Python, and what Stripe and the sync columns must say about it.

The model knows nothing of the pipeline's bookkeeping. It holds the editor-owned columns of every
row exactly as the test wrote them, the rows editors deleted, and, from the values it generated,
what validation must make of each row: the amount in minor units, or the fields a refusal must
name. Comparisons return readable problems (``"<cms id>: name: 'A' in Stripe, 'B' in the CMS"``)
instead of asserting, so a failing step lists every problem it found.

Values are drawn from a small domain whose verdicts are certain (no value here is a matter of
taste for the price parser), so a disagreement between the model and the pipeline is a finding,
not a guess.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: Row ids are derived from a counter, so a sequence replays with the same ids (and the same order).
_NAMESPACE = uuid.UUID("5e9a0c1e-7d43-4d6a-9a55-3c1f0d1e2a12")

#: The editor-owned columns, the ones the tool must never change.
EDITOR_COLUMNS = ("name", "description", "price", "currency", "images", "active", "metadata")

#: Currencies of the generated prices and their decimals in Stripe's API.
DECIMALS = {"usd": 2, "eur": 2, "gbp": 2, "jpy": 0}
SYMBOLS = {"usd": "$", "eur": "€ ", "gbp": "£"}
METADATA_KEYS = ("color", "size", "material", "season")
METADATA_VALUES = ("red", "navy", "sand", "large", "small", "oak", "wool", "summer")

#: Ways an editor breaks a row: the columns written and the field the refusal must name.
#: ``price_dot_thousands`` ("1.000" read as 1.00 although "1.000" is a thousand in most of Europe)
#: is issue 12's known parser bug.
BREAKAGES: dict[str, tuple[str, dict[str, Any]]] = {
    "price_not_a_number": ("price", {"price": "12.5.0"}),
    "price_ambiguous_comma": ("price", {"price": "1,234"}),
    "price_fraction_of_a_cent": ("price", {"price": "19.999"}),
    "price_dot_thousands": ("price", {"price": "1.000"}),
    "name_missing": ("name", {"name": "   "}),
    "currency_unknown": ("currency", {"currency": "xxx"}),
    "image_not_http": ("images", {"images": ["ftp://example.com/a.png"]}),
    "metadata_nested": ("metadata", {}),  # adds {"spec": {"w": 1}} to the row's metadata
}
BAD_METADATA_KEY = "spec"


def candidate_ids(count: int) -> list[str]:
    """Deterministic CMS ids (the test keeps those of the catalogue buckets it runs)."""
    return [str(uuid.uuid5(_NAMESPACE, f"row-{n}")) for n in range(count)]


@dataclass(frozen=True)
class PriceSpec:
    """A price as an editor types it, and the amount it must become."""

    amount: int  # minor units
    currency: str  # lower-case ISO code
    style: str = "plain"  # plain, padded, symbol, code, comma (eur), grouped (>= 1,000), upper

    def texts(self) -> tuple[str, str]:
        """The CMS ``price`` and ``currency`` texts."""
        currency, style = self.currency, self.style
        if DECIMALS[currency] == 0:
            number = str(self.amount)
            return (f" {number} " if style == "padded" else number), currency
        major, minor = divmod(self.amount, 100)
        number = f"{major}.{minor:02d}"
        if style == "padded":
            return f" {number} ", currency
        if style == "symbol":
            return f"{SYMBOLS[currency]}{number}", currency
        if style == "code":
            return f"{number} {currency.upper()}", currency
        if style == "comma" and currency == "eur":
            return f"{major},{minor:02d}", currency
        if style == "grouped" and major >= 1000:
            return f"{major:,}.{minor:02d}", currency
        if style == "upper":
            return number, currency.upper()
        return number, currency


@dataclass(frozen=True)
class CmsRow:
    """One ``products`` row as the editors left it (the editor-owned columns only)."""

    id: str
    name: str
    description: str | None
    price: str
    currency: str
    images: tuple[str, ...]
    active: bool
    metadata: Mapping[str, Any]
    #: What validation must make of ``price``: minor units, or None when the text is refused.
    amount: int | None

    def columns(self) -> dict[str, Any]:
        """The editor-owned columns as PostgreSQL returns them (jsonb as lists and dicts)."""
        return {
            "name": self.name,
            "description": self.description,
            "price": self.price,
            "currency": self.currency,
            "images": list(self.images),
            "active": self.active,
            "metadata": dict(self.metadata),
        }

    def with_price(self, spec: PriceSpec) -> CmsRow:
        price, currency = spec.texts()
        return replace(self, price=price, currency=currency, amount=spec.amount)

    @property
    def currency_code(self) -> str:
        return self.currency.strip().lower()

    def problems(self) -> set[str]:
        """The fields validation must refuse (empty: the row is valid)."""
        out = set()
        if not self.name.strip():
            out.add("name")
        if self.currency_code not in DECIMALS:
            out.add("currency")
        elif self.amount is None:
            out.add("price")
        if any(not url.startswith("https://") for url in self.images):
            out.add("images")
        if any(not isinstance(v, str) for v in self.metadata.values()):
            out.add("metadata")
        return out

    @property
    def valid(self) -> bool:
        return not self.problems()

    def stripe_content(self) -> dict[str, Any]:
        """The Stripe product fields a valid row must have (Stripe's own normal forms)."""
        metadata = {k: v for k, v in self.metadata.items() if v != ""}
        metadata["cms_id"] = self.id
        return {
            "name": self.name.strip(),
            "description": (self.description or "").strip() or None,
            "images": [url.strip() for url in self.images],
            "metadata": metadata,
            "active": self.active,
        }


@dataclass
class CatalogueModel:
    """The CMS as the editors left it: live rows, and deleted rows (kept to restore them)."""

    #: The ids new rows take, in order (a sequence replays with the same ids).
    ids: list[str]
    rows: dict[str, CmsRow] = field(default_factory=dict)
    deleted: dict[str, CmsRow] = field(default_factory=dict)
    created: int = 0

    def new_id(self) -> str:
        cms_id = self.ids[self.created]
        self.created += 1
        return cms_id

    def pick(self, index: int) -> CmsRow | None:
        """A live row chosen by ``index`` (stable order: by id), None when there is none."""
        if not self.rows:
            return None
        return self.rows[sorted(self.rows)[index % len(self.rows)]]

    def pick_deleted(self, index: int) -> CmsRow | None:
        if not self.deleted:
            return None
        return self.deleted[sorted(self.deleted)[index % len(self.deleted)]]


# -- comparisons ----------------------------------------------------------------------------------


def editor_column_problems(
    model: CatalogueModel, db_rows: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Where the database's editor-owned columns differ from what the editors wrote (a row lost,
    a deleted row back, a column changed by the tool)."""
    problems = []
    for cms_id in sorted(set(model.rows) - set(db_rows)):
        problems.append(f"{cms_id}: row lost (the editors never deleted it)")
    for cms_id in sorted(set(db_rows) - set(model.rows)):
        why = "a deleted row is back" if cms_id in model.deleted else "a row nobody created"
        problems.append(f"{cms_id}: {why}")
    for cms_id in sorted(set(model.rows) & set(db_rows)):
        want = model.rows[cms_id].columns()
        have = {c: db_rows[cms_id][c] for c in EDITOR_COLUMNS}
        for column in EDITOR_COLUMNS:
            if have[column] != want[column]:
                problems.append(
                    f"{cms_id}: {column} changed by the tool: {have[column]!r}, "
                    f"the editors wrote {want[column]!r}"
                )
    return problems


@dataclass(frozen=True)
class StripeView:
    """The emulator's products and prices, indexed."""

    products: dict[str, dict[str, Any]]
    prices: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, control: Any) -> StripeView:
        return cls(
            {p["id"]: p for p in control.objects("product")},
            {p["id"]: p for p in control.objects("price")},
        )

    def by_cms_id(self) -> dict[str, list[dict[str, Any]]]:
        owners: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for product in self.products.values():
            cms_id = (product.get("metadata") or {}).get("cms_id")
            if cms_id:
                owners[cms_id].append(product)
        return owners

    def active_prices(self, product: Mapping[str, Any], *, ours_only: bool = False) -> list[str]:
        """The active prices of a product (``ours_only``: the default and those carrying a
        ``cms_id``, leaving out prices made in the dashboard)."""
        return sorted(
            p["id"]
            for p in self.prices.values()
            if p["product"] == product["id"]
            and p["active"]
            and not (
                ours_only
                and p["id"] != product.get("default_price")
                and not (p.get("metadata") or {}).get("cms_id")
            )
        )


def structural_problems(view: StripeView, ever_seen: Iterable[str]) -> list[str]:
    """What must hold at every moment: no two products per CMS id, and no product ever deleted
    (archiving is the only way out)."""
    problems = [
        f"{cms_id}: {len(products)} Stripe products ({', '.join(p['id'] for p in products)})"
        for cms_id, products in sorted(view.by_cms_id().items())
        if len(products) > 1
    ]
    problems += [
        f"Stripe product {pid} was deleted" for pid in sorted(set(ever_seen) - set(view.products))
    ]
    return problems


def stripe_problems(
    model: CatalogueModel,
    view: StripeView,
    *,
    skip: Iterable[str] = (),
    only: Iterable[str] | None = None,
    foreign_prices_count: bool = True,
) -> list[str]:
    """Where Stripe differs from what a completed run must leave (rows in ``skip`` aside).

    - every valid active row: one product with the row's content, active, whose default price has
      the row's amount and currency, is its only active price and holds the lookup key
      ``cms_<id>`` if any price does (the first price, made with the product, holds none);
    - every valid inactive row: no product (never synced), or an archived one with the row's
      content (its price is left alone until it is reactivated, as the README says);
    - every deleted row: no product, or an archived one;
    - the product of every valid or deleted row: exactly one active price, its default. (A row
      validation refuses is left alone, strays of an interrupted run included, until it is fixed.)

    ``only`` restricts the comparison to those CMS ids; ``foreign_prices_count=False`` leaves
    out active prices without a ``cms_id`` (made in the dashboard) from "one active price".
    """
    owners = view.by_cms_id()
    skipped = set(skip)
    if only is not None:
        skipped |= (set(model.rows) | set(model.deleted) | set(owners)) - set(only)
    problems = []
    for cms_id, row in sorted(model.rows.items()):
        if cms_id in skipped:
            continue
        products = owners.get(cms_id, [])
        if not row.valid:
            continue
        if not products:
            if row.active:
                problems.append(f"{cms_id}: no Stripe product for a valid active row")
            continue
        product = products[0]
        want = row.stripe_content()
        for name, value in want.items():
            have = product.get(name)
            if name == "description":
                have = have or None
            if have != value:
                problems.append(f"{cms_id}: {name}: {have!r} in Stripe, {value!r} in the CMS")
        if row.active:
            price = view.prices.get(product.get("default_price") or "")
            have_price = (price["unit_amount"], price["currency"]) if price else None
            if have_price != (row.amount, row.currency_code):
                problems.append(
                    f"{cms_id}: default price {have_price} in Stripe, "
                    f"{(row.amount, row.currency_code)} in the CMS ({row.price!r} {row.currency!r})"
                )
            keyed = [
                p["id"] for p in view.prices.values() if p.get("lookup_key") == f"cms_{cms_id}"
            ]
            if keyed and keyed != [product.get("default_price")]:
                problems.append(
                    f"{cms_id}: lookup key cms_{cms_id} on {keyed}, not on the default price "
                    f"{product.get('default_price')}"
                )
    for cms_id in sorted(model.deleted):
        if cms_id in skipped:
            continue
        for product in owners.get(cms_id, []):
            if product["active"]:
                problems.append(f"{cms_id}: deleted in the CMS, product {product['id']} active")
    for cms_id, products in sorted(owners.items()):
        row = model.rows.get(cms_id)
        if cms_id in skipped or (row is not None and not row.valid):
            continue
        for product in products:
            active = view.active_prices(product, ours_only=not foreign_prices_count)
            if active != [product.get("default_price")]:
                problems.append(
                    f"{cms_id}: active prices {active}, default {product.get('default_price')}"
                )
    return problems


def sync_state_problems(
    model: CatalogueModel,
    db_rows: Mapping[str, Mapping[str, Any]],
    view: StripeView,
    *,
    skip: Iterable[str] = (),
) -> list[str]:
    """What the sync columns must say after a successful run: valid rows synced (archived when
    inactive, pending when inactive and never in Stripe) with the Stripe ids and out of scope;
    invalid rows failed with a reason naming each refused field."""
    skipped = set(skip)
    owners = view.by_cms_id()
    problems = []
    for cms_id, row in sorted(model.rows.items()):
        db = db_rows.get(cms_id)
        if cms_id in skipped or db is None:
            continue
        status, error = db["sync_status"], db["sync_error"] or ""
        if not row.valid:
            if status != "failed":
                problems.append(f"{cms_id}: invalid ({sorted(row.problems())}) but {status!r}")
            for name in sorted(row.problems()):
                if name not in error:
                    problems.append(f"{cms_id}: refused without naming {name}: {error!r}")
            continue
        products = owners.get(cms_id, [])
        if not row.active and not products:
            if status not in ("pending", "archived"):
                problems.append(f"{cms_id}: inactive, never in Stripe, but {status!r}")
            continue
        expected = "synced" if row.active else "archived"
        if status != expected:
            problems.append(f"{cms_id}: {status!r} ({error!r}), expected {expected!r}")
        if products and db["stripe_product_id"] != products[0]["id"]:
            problems.append(
                f"{cms_id}: records product {db['stripe_product_id']}, Stripe has "
                f"{products[0]['id']}"
            )
        if row.active and products and db["stripe_price_id"] != products[0].get("default_price"):
            problems.append(
                f"{cms_id}: records price {db['stripe_price_id']}, the default is "
                f"{products[0].get('default_price')}"
            )
        if db["needs_sync"]:
            problems.append(f"{cms_id}: still in scope after a successful run")
    return problems
