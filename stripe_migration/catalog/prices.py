"""Prices as CMS editors type them, parsed exactly into Stripe's integer minor units.

The ``products.price`` column is free text in major units ("19.99"). Stripe wants an integer in the
currency's smallest unit (``unit_amount``). :func:`parse_price_to_cents` does that conversion with
:class:`~decimal.Decimal` only (never binary floats) and refuses, with a :class:`PriceError` that names
the problem, anything it cannot read exactly. A refused price never becomes a guess.

Currencies are those of :data:`CURRENCIES`, the one list of currencies the migration supports: a
subset of Stripe's presentment currencies, each with its number of decimals in Stripe's API and the
step its minor-unit amounts must be a multiple of (Stripe's "special cases").

.. list-table:: What the price parser accepts (the table for the README)
   :header-rows: 1

   * - CMS text (row currency)
     - Result
     - Why
   * - ``19.99`` (usd)
     - 1999
     - plain decimal with a dot
   * - ``19`` / ``19.`` / ``.99`` (usd)
     - 1900 / 1900 / 99
     - missing decimals or integer part are unambiguous
   * - ``" 19.99 "`` (usd)
     - 1999
     - surrounding whitespace (including no-break spaces) is trimmed
   * - ``19.9900`` / ``0.500`` / ``.500`` (usd)
     - 1999 / 50 / 50
     - trailing zeros do not add precision; four digits after the dot, or nothing but 0 before
       it, cannot be a thousands group
   * - ``12,50`` / ``12,5`` (eur)
     - 1250
     - decimal comma: exactly one comma, 1 or 2 digits after it, no dot
   * - ``1,234`` (usd)
     - refused
     - ambiguous: thousands separator or decimal comma?
   * - ``1.000`` / ``2.500`` (usd, eur), ``100.000`` (jpy), ``19.990`` (usd)
     - refused
     - ambiguous: a dot before exactly three digits may be a thousands separator (1000, 2500)
   * - ``1.000`` / ``5.120`` (kwd)
     - 1000 / 5120
     - three-decimal currency (bhd, jod, kwd, omr, tnd): three digits after the dot are its decimals
   * - ``1,234.56`` / ``1.234,56`` / ``1 234,56`` / ``1'234.56``
     - 123456
     - thousands groups of exactly 3 digits, then a decimal part with the *other* separator
   * - ``1,234,567`` / ``1.234.567`` / ``1 234 567``
     - 123456700
     - several groups (or spaces) can only be thousands separators
   * - ``12.500,00`` / ``1.000,50`` (eur)
     - 1250000 / 100050
     - dot groups, then a decimal comma: the dot can only be a thousands separator
   * - ``€ 12.50`` / ``12.50 EUR`` / ``eur12.50`` (eur)
     - 1250
     - a symbol or ISO code, before or after, that matches the row's currency
   * - ``$12.50`` (eur) / ``12.50 USD`` (eur)
     - refused
     - the marker names another currency than the row's
   * - ``1500`` (jpy)
     - 1500
     - zero-decimal currency: the amount is already in minor units
   * - ``15.5`` (jpy)
     - refused
     - more decimals than the currency has
   * - ``19.9999`` / ``0.999`` (usd)
     - refused
     - fractional cents
   * - ``5.125`` (kwd)
     - refused
     - three-decimal currencies must end in 0 (Stripe)
   * - ``1200.50`` (isk)
     - refused
     - ISK is two-decimal in the API but only whole krónur are allowed (Stripe)
   * - ``1e8`` / ``1E3`` / ``2.5e2``
     - refused
     - scientific notation: an exponent is never a way editors type a price
   * - ``-5``, ``$-5``, ``NaN``, ``Infinity``, ``12.5.0``, ``""``, ``+5``
     - refused
     - negative, not finite, not a number, empty
   * - ``19.99`` as a Python float / ``Decimal("19.99")`` / ``19`` as an int
     - 1999 / 1999 / 1900
     - floats go through ``repr`` (shortest round-trip), so 19.99 is read as written

Range limits (the 50 minimum, the 99,999,999 maximum) are not the parser's business: the validation
in :mod:`stripe_migration.catalog.schema` applies them from the settings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation, localcontext


class PriceError(ValueError):
    """A CMS price that cannot be turned into an exact Stripe amount; the message says why."""


@dataclass(frozen=True)
class CurrencyRule:
    """How Stripe counts one currency: decimals in the API, and the step amounts must respect."""

    decimals: int
    step: int = 1


_TWO = CurrencyRule(2)
_ZERO = CurrencyRule(0)
# Stripe: three-decimal currencies must have 0 as their last digit.
_THREE = CurrencyRule(3, step=10)

#: The currencies the migration supports, keyed by lower-case ISO code: a subset of Stripe's
#: presentment currencies (https://docs.stripe.com/currencies). UGX is left out on purpose: Stripe
#: lists it as zero-decimal but keeps a two-decimal compatibility rule for it; add it once that is
#: settled. HUF and TWD are two-decimal in the API (their whole-unit rule applies to payouts only).
CURRENCIES: Mapping[str, CurrencyRule] = {
    **{
        code: _TWO
        for code in [
            "aed",
            "aud",
            "brl",
            "cad",
            "chf",
            "cny",
            "cop",
            "czk",
            "dkk",
            "egp",
            "eur",
            "gbp",
            "hkd",
            "huf",
            "idr",
            "ils",
            "inr",
            "kes",
            "mad",
            "mxn",
            "myr",
            "ngn",
            "nok",
            "nzd",
            "pen",
            "php",
            "pln",
            "ron",
            "sar",
            "sek",
            "sgd",
            "thb",
            "try",
            "twd",
            "usd",
            "zar",
        ]
    },
    # Stripe: ISK stays two-decimal in the API, but amounts must be whole krónur (multiples of 100).
    "isk": CurrencyRule(2, step=100),
    **{
        code: _ZERO
        for code in [
            "bif",
            "clp",
            "djf",
            "gnf",
            "jpy",
            "kmf",
            "krw",
            "mga",
            "pyg",
            "rwf",
            "vnd",
            "vuv",
            "xaf",
            "xof",
            "xpf",
        ]
    },
    **{code: _THREE for code in ["bhd", "jod", "kwd", "omr", "tnd"]},
}

#: Lower-case ISO codes of :data:`CURRENCIES`.
SUPPORTED_CURRENCIES: frozenset[str] = frozenset(CURRENCIES)

#: Currency symbols editors type, and the currencies each may stand for.
CURRENCY_SYMBOLS: Mapping[str, frozenset[str]] = {
    "€": frozenset({"eur"}),
    "£": frozenset({"gbp"}),
    "US$": frozenset({"usd"}),
    "$": frozenset({"usd", "cad", "aud", "nzd", "sgd", "hkd", "mxn"}),
    "R$": frozenset({"brl"}),
    "¥": frozenset({"jpy", "cny"}),
    "￥": frozenset({"jpy", "cny"}),
    "₩": frozenset({"krw"}),
    "₹": frozenset({"inr"}),
    "₫": frozenset({"vnd"}),
    "₺": frozenset({"try"}),
    "₪": frozenset({"ils"}),
    "฿": frozenset({"thb"}),
    "₱": frozenset({"php"}),
    "zł": frozenset({"pln"}),
    "Kč": frozenset({"czk"}),
    "Ft": frozenset({"huf"}),
    "kr": frozenset({"sek", "nok", "dkk", "isk"}),
}

_MAX_TEXT_CHARS = 64
_MAX_DIGITS = 40
_MAX_MAJOR_UNITS = Decimal(10) ** 18  # far above any Stripe maximum; stops absurd exponents early
_MINUS_SIGNS = ("-", "\u2212")  # ASCII hyphen-minus and the Unicode minus sign
_NOT_FINITE = {"nan", "snan", "inf", "infinity", "+inf", "+infinity", "+nan"}

_SYMBOL_ALTERNATIVES = "|".join(
    re.escape(s) for s in sorted(CURRENCY_SYMBOLS, key=len, reverse=True)
)
_MARKER = rf"(?P<marker>[A-Za-z]{{3}}|{_SYMBOL_ALTERNATIVES})"
_PREFIX = re.compile(rf"^{_MARKER}\s*(?P<rest>.*)$", re.DOTALL)
_SUFFIX = re.compile(rf"^(?P<rest>.*?)\s*{_MARKER}$", re.DOTALL)

# re.ASCII: only 0-9 are digits here (Decimal would also read Arabic-Indic or full-width digits).
_DOT_DECIMAL = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$", re.ASCII)
_COMMA_DECIMAL = re.compile(r"^(?P<int>\d+),(?P<frac>\d{1,2})$", re.ASCII)
_AMBIGUOUS_COMMA = re.compile(r"^\d{1,3},\d{3}$", re.ASCII)
# A dot before exactly three digits, after 1-3 digits not starting with 0 ("1.000", "19.990"):
# a thousands separator as often as a decimal point. "0.500" and ".500" cannot be thousands.
_AMBIGUOUS_DOT = re.compile(r"^[1-9]\d{0,2}\.\d{3}$", re.ASCII)
# A mantissa (with a dot or a comma) and an exponent: "1e8", "1E3", "2.5e2", "1,5e-2".
_SCIENTIFIC = re.compile(r"^(?=[.,]?\d)\d*(?:[.,]\d*)?[eE][+-]?\d+$", re.ASCII)
# Thousands groups: 1-3 digits, then groups of exactly 3 with one separator, then an optional
# decimal part introduced by a different separator (checked in code).
_GROUPED = re.compile(
    r"^(?P<head>\d{1,3})(?P<groups>(?:(?P<sep>[,. '\u2019\u00a0\u202f])\d{3})"
    r"(?:(?P=sep)\d{3})*)(?:(?P<dec>[.,])(?P<frac>\d+))?$",
    re.ASCII,
)


def _show(raw: object) -> str:
    """Quote a raw value for an error message, shortened so a huge cell cannot flood a log."""
    text = str(raw)
    if len(text) > 40:
        text = text[:37] + "..."
    return '"' + text.replace('"', '\\"') + '"'


def currency_rule(currency: str) -> CurrencyRule:
    """Return the rule of a supported ``currency`` (any case), or raise :class:`PriceError`."""
    code = currency.strip().lower() if isinstance(currency, str) else currency
    if not isinstance(code, str) or code not in CURRENCIES:
        raise PriceError(f"currency {_show(currency)} is not supported")
    return CURRENCIES[code]


def _marker_currencies(marker: str) -> frozenset[str] | None:
    if marker in CURRENCY_SYMBOLS:
        return CURRENCY_SYMBOLS[marker]
    code = marker.lower()
    if len(code) == 3 and code.isalpha():
        return frozenset({code})
    return None


def _strip_markers(raw: str, text: str, currency: str) -> tuple[str, bool]:
    """Remove one leading and one trailing currency marker; return (number text, negative)."""
    negative = False
    if text.startswith(_MINUS_SIGNS):
        negative, text = True, text[1:].lstrip()
    for pattern in (_PREFIX, _SUFFIX):
        match = pattern.match(text)
        if not match:
            continue
        marker = match.group("marker")
        allowed = _marker_currencies(marker)
        if allowed is None:  # pragma: no cover - the regex only matches known markers
            continue
        if currency not in allowed:
            if marker.lower() in CURRENCIES or marker in CURRENCY_SYMBOLS:
                raise PriceError(
                    f"{_show(raw)} is marked {marker!r}, which does not match the row's "
                    f"currency {currency}"
                )
            raise PriceError(f"{_show(raw)} is not a number")
        text = match.group("rest")
        if pattern is _PREFIX and text.startswith(_MINUS_SIGNS):
            negative, text = True, text[1:].lstrip()
    return text, negative


def _number_text_to_decimal(raw: str, text: str, currency: str) -> Decimal:
    """Read the bare number (markers and sign removed) as a Decimal, refusing ambiguity."""
    if _SCIENTIFIC.match(text):
        raise PriceError(
            f"{_show(raw)} is in scientific notation; write the amount in plain digits"
        )
    rule = CURRENCIES[currency]
    # Three decimals settle it for a three-decimal currency: 1.000 KWD is one dinar.
    if rule.decimals != 3 and _AMBIGUOUS_DOT.match(text):
        if rule.step == 10**rule.decimals:  # jpy and the other zero-decimal ones, isk
            advice = f"{currency} prices are whole units: write it without the dot (1234)"
        else:
            advice = (
                f"write it without the dot if it is thousands (1234), or with at most "
                f"{rule.decimals} decimals if it is not (1.23)"
            )
        raise PriceError(
            f"{_show(raw)} is ambiguous: the dot may be a thousands separator or a decimal "
            f"point; {advice}"
        )
    if _DOT_DECIMAL.match(text):
        return Decimal(text)
    if match := _COMMA_DECIMAL.match(text):
        return Decimal(f"{match.group('int')}.{match.group('frac')}")
    if _AMBIGUOUS_COMMA.match(text):
        raise PriceError(
            f"{_show(raw)} is ambiguous: the comma may be a thousands separator or a decimal "
            f"comma; write it without the comma, or with a decimal part (1,234.00)"
        )
    if match := _GROUPED.match(text):
        sep, dec = match.group("sep"), match.group("dec")
        if dec is not None and dec == sep:
            raise PriceError(f"{_show(raw)} is not a number")
        digits = match.group("head") + match.group("groups").replace(sep, "")
        frac = match.group("frac")
        return Decimal(f"{digits}.{frac}" if frac is not None else digits)
    raise PriceError(f"{_show(raw)} is not a number")


def _to_decimal(raw: object, currency: str) -> Decimal:
    if raw is None:
        raise PriceError("is missing")
    if isinstance(raw, bool):
        raise PriceError(f"{_show(raw)} is a boolean, not a price")
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise PriceError(f"{_show(raw)} is not a finite number")
        # repr() is the shortest text that round-trips, so 19.99 reads as "19.99", not 19.989999...
        value = Decimal(repr(raw))
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            raise PriceError("is empty")
        if len(text) > _MAX_TEXT_CHARS:
            raise PriceError(f"{_show(raw)} is too long to be a price")
        if text.lower().lstrip("-\u2212") in _NOT_FINITE:
            raise PriceError(f"{_show(raw)} is not a finite number")
        number, negative = _strip_markers(raw, text, currency)
        value = _number_text_to_decimal(raw, number, currency)
        if negative and value != 0:
            raise PriceError(f"{_show(raw)} is negative")
        return value
    else:
        raise PriceError(f"has unsupported type {type(raw).__name__}")
    if not value.is_finite():
        raise PriceError(f"{_show(raw)} is not a finite number")
    if len(value.as_tuple().digits) > _MAX_DIGITS:
        raise PriceError(f"{_show(raw)} has too many digits")
    if value < 0:
        raise PriceError(f"{_show(raw)} is negative")
    return value


def parse_price_to_cents(raw: object, currency: str) -> int:
    """Return ``raw`` (major units, as a CMS stores it) in ``currency``'s minor units, exactly.

    ``raw`` may be text as typed by editors or an int, float or Decimal; see the module docstring
    for what is accepted. ``currency`` is an ISO code of :data:`CURRENCIES` (any case).
    Raises :class:`PriceError` naming the problem; never rounds.
    """
    code = currency.strip().lower() if isinstance(currency, str) else currency
    rule = currency_rule(code)
    value = _to_decimal(raw, code)
    if value >= _MAX_MAJOR_UNITS:
        raise PriceError(f"{_show(raw)} is too large")
    with localcontext(Context(prec=_MAX_DIGITS + 25)):
        scaled = value.scaleb(rule.decimals)
        try:
            units = int(scaled.to_integral_exact())
        except InvalidOperation as exc:  # pragma: no cover - guarded by the checks above
            raise PriceError(f"{_show(raw)} is not a number") from exc
    if scaled != units:
        allowed = "no decimals" if rule.decimals == 0 else f"at most {rule.decimals} decimals"
        raise PriceError(f"{_show(raw)} has more decimals than {code} allows ({allowed})")
    if units % rule.step:
        if code == "isk":
            raise PriceError(f"{_show(raw)} is not whole krónur: Stripe accepts only whole ISK")
        raise PriceError(
            f"{_show(raw)} has a non-zero third decimal: Stripe needs the last of {code}'s "
            f"three decimals to be 0"
        )
    return units


def format_minor_units(units: int, currency: str) -> str:
    """Return ``units`` of ``currency`` as major-unit text ("1999", "usd" → "19.99")."""
    rule = currency_rule(currency)
    return str(Decimal(units).scaleb(-rule.decimals))
