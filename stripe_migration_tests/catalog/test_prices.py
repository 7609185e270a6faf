"""Price parsing: what CMS editors type, read exactly or refused with a reason."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stripe_migration.catalog.prices import (
    CURRENCIES,
    SUPPORTED_CURRENCIES,
    PriceError,
    format_minor_units,
    parse_price_to_cents,
)


@pytest.mark.parametrize(
    ("raw", "currency", "expected"),
    [
        ("19.99", "usd", 1999),
        ("19", "usd", 1900),
        (" 19.99 ", "usd", 1999),
        ("\u00a019.99\t", "usd", 1999),
        ("19.", "usd", 1900),
        (".99", "usd", 99),
        ("19.9900", "usd", 1999),
        ("0.50", "usd", 50),
        ("12,50", "eur", 1250),
        ("12,5", "eur", 1250),
        ("1,234.56", "usd", 123456),
        ("1.234,56", "eur", 123456),
        ("1 234,56", "eur", 123456),
        ("1\u202f234,56", "eur", 123456),
        ("1'234.56", "chf", 123456),
        ("1,234,567", "usd", 123456700),
        ("1.234.567", "eur", 123456700),
        ("1 234", "eur", 123400),
        ("€ 12.50", "eur", 1250),
        ("€\u00a012.50", "eur", 1250),
        ("€12.50", "eur", 1250),
        ("12.50 EUR", "eur", 1250),
        ("12,50 €", "eur", 1250),
        ("eur12.50", "eur", 1250),
        ("$12.50", "usd", 1250),
        ("US$ 12.50", "usd", 1250),
        ("$12.50", "cad", 1250),
        ("£5", "gbp", 500),
        ("12.50", "USD", 1250),
        ("1500", "jpy", 1500),
        ("¥1500", "jpy", 1500),
        ("1,500,000", "krw", 1500000),
        ("5.12", "kwd", 5120),
        ("5.120", "kwd", 5120),
        ("1200", "isk", 120000),
        ("kr 100", "sek", 10000),
        ("-0", "usd", 0),
    ],
)
def test_accepted_text(raw: str, currency: str, expected: int) -> None:
    assert parse_price_to_cents(raw, currency) == expected


@pytest.mark.parametrize(
    ("raw", "currency", "message"),
    [
        ("12.5.0", "usd", '"12.5.0" is not a number'),
        ("1,234", "usd", "ambiguous"),
        ("12,345", "eur", "ambiguous"),
        ("1,234,56", "usd", "is not a number"),
        ("1.234.56", "eur", "is not a number"),
        ("12,50,00", "eur", "is not a number"),
        ("12,500", "eur", "ambiguous"),
        ("$12.50", "eur", "does not match the row's currency eur"),
        ("12.50 USD", "eur", "does not match the row's currency eur"),
        ("€12.50", "gbp", "does not match"),
        ("12.50 abc", "usd", "is not a number"),
        ("-5", "usd", "is negative"),
        ("\u22125", "usd", "is negative"),
        ("$-5", "usd", "is negative"),
        ("-$5", "usd", "is negative"),
        ("-12,50", "eur", "is negative"),
        ("NaN", "usd", "not a finite number"),
        ("Infinity", "usd", "not a finite number"),
        ("-inf", "usd", "not a finite number"),
        ("19.9999", "usd", "more decimals than usd allows (at most 2 decimals)"),
        ("0.999", "usd", "more decimals than usd allows (at most 2 decimals)"),
        ("15.5", "jpy", "more decimals than jpy allows (no decimals)"),
        ("12,50", "jpy", "more decimals than jpy allows"),
        ("5.125", "kwd", "third decimal"),
        ("1200.50", "isk", "whole"),
        ("", "usd", "is empty"),
        ("   ", "usd", "is empty"),
        ("+5", "usd", "is not a number"),
        ("(5.00)", "usd", "is not a number"),
        ("twelve", "usd", "is not a number"),
        ("\uff11\uff12", "usd", "is not a number"),  # full-width digits
        ("1" * 80, "usd", "too long"),
        ("12.50", "xyz", 'currency "xyz" is not supported'),
    ],
)
def test_refused_text(raw: str, currency: str, message: str) -> None:
    with pytest.raises(PriceError) as caught:
        parse_price_to_cents(raw, currency)
    assert message in str(caught.value)


AMBIGUOUS_DOT = "is ambiguous: the dot may be a thousands separator or a decimal point"


@pytest.mark.parametrize(
    ("raw", "currency"),
    [
        ("1.000", "usd"),
        ("2.500", "eur"),
        ("19.990", "usd"),
        ("19.999", "usd"),
        ("999.999", "gbp"),
        ("€ 2.500", "eur"),
        ("2.500 EUR", "eur"),
        ("100.000", "jpy"),
        ("1.500", "isk"),
    ],
)
def test_a_dot_before_three_digits_is_refused_as_ambiguous(raw: str, currency: str) -> None:
    # Read as a decimal point, 1.000 was 1.00 and 2.500 was 2.50: a thousand times less than
    # the 1000 and 2500 an editor writing a thousands separator meant.
    with pytest.raises(PriceError) as caught:
        parse_price_to_cents(raw, currency)
    assert str(caught.value).startswith(f'"{raw}" {AMBIGUOUS_DOT}; ')


@pytest.mark.parametrize(
    ("raw", "currency", "advice"),
    [
        ("1.000", "usd", "without the dot if it is thousands (1234), or with at most 2 decimals"),
        ("100.000", "jpy", "jpy prices are whole units: write it without the dot (1234)"),
        ("1.500", "isk", "isk prices are whole units"),
    ],
)
def test_the_ambiguity_reason_says_what_to_write(raw: str, currency: str, advice: str) -> None:
    with pytest.raises(PriceError, match=re.escape(advice)):
        parse_price_to_cents(raw, currency)


@pytest.mark.parametrize(
    ("raw", "currency", "expected"),
    [
        # Three-decimal currencies: three digits after the dot are plainly their decimals.
        ("1.000", "kwd", 1000),
        ("1.000", "bhd", 1000),
        ("2.500", "jod", 2500),
        ("12.340", "omr", 12340),
        ("KWD 1.000", "kwd", 1000),
        # The dot can only be a thousands separator: several groups, or a decimal comma after.
        ("1.000.000", "usd", 100000000),
        ("12.500,00", "eur", 1250000),
        ("1.000,50", "eur", 100050),
        # The dot can only be a decimal point: no integer part, a 0 before it, or more or fewer
        # than three digits after it, or more than three before it.
        ("0.500", "usd", 50),
        (".500", "usd", 50),
        ("19.9900", "usd", 1999),
        ("19.90", "usd", 1990),
        ("1234.500", "usd", 123450),
    ],
)
def test_an_unambiguous_dot_keeps_its_reading(raw: str, currency: str, expected: int) -> None:
    assert parse_price_to_cents(raw, currency) == expected


@pytest.mark.parametrize(
    ("raw", "currency"),
    [
        ("1e8", "usd"),
        ("1E3", "usd"),
        ("2.5e2", "usd"),
        ("1e-2", "usd"),
        ("1E+3", "usd"),
        ("1,5e2", "eur"),
        ("€ 1e3", "eur"),
        ("1e3 EUR", "eur"),
        ("1e3", "jpy"),
    ],
)
def test_scientific_notation_is_refused_with_its_reason(raw: str, currency: str) -> None:
    with pytest.raises(PriceError) as caught:
        parse_price_to_cents(raw, currency)
    assert str(caught.value) == (
        f'"{raw}" is in scientific notation; write the amount in plain digits'
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(19.99, 1999), (0.1, 10), (19, 1900), (Decimal("19.99"), 1999), (Decimal("1E+2"), 10000)],
)
def test_numbers(raw: object, expected: int) -> None:
    assert parse_price_to_cents(raw, "usd") == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (Decimal("NaN"), "not a finite number"),
        (Decimal("-1"), "is negative"),
        (-1, "is negative"),
        (0.1 + 0.2, "more decimals"),  # 0.30000000000000004: refused, never rounded
        (True, "boolean"),
        (None, "is missing"),
        ([19.99], "unsupported type list"),
        (Decimal("1E+30"), "too large"),
    ],
)
def test_refused_numbers(raw: object, message: str) -> None:
    with pytest.raises(PriceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_price_to_cents(raw, "usd")


def test_price_error_is_a_value_error() -> None:
    assert issubclass(PriceError, ValueError)


def test_currency_table_is_consistent() -> None:
    assert frozenset(CURRENCIES) == SUPPORTED_CURRENCIES
    assert all(code == code.lower() and len(code) == 3 for code in CURRENCIES)
    assert CURRENCIES["jpy"].decimals == 0
    assert CURRENCIES["usd"].decimals == 2
    assert CURRENCIES["kwd"].decimals == 3


@pytest.mark.parametrize(
    ("units", "currency", "text"),
    [(1999, "usd", "19.99"), (1500, "jpy", "1500"), (100, "usd", "1.00")],
)
def test_format_minor_units(units: int, currency: str, text: str) -> None:
    assert format_minor_units(units, currency) == text
    assert parse_price_to_cents(text, currency) == units


@given(st.integers(min_value=0, max_value=10**12))
def test_decimal_text_round_trips(cents: int) -> None:
    assert parse_price_to_cents(str(Decimal(cents) / 100), "usd") == cents


@given(st.integers(min_value=0, max_value=10**12))
def test_float_round_trips(cents: int) -> None:
    # Any decimal of at most 15 significant digits survives float -> repr exactly.
    assert parse_price_to_cents(cents / 100, "usd") == cents


@given(st.integers(min_value=0, max_value=10**12))
def test_zero_decimal_round_trips(units: int) -> None:
    assert parse_price_to_cents(str(units), "jpy") == units


@given(st.text(max_size=30), st.sampled_from(sorted(SUPPORTED_CURRENCIES)))
def test_arbitrary_text_only_raises_price_error(raw: str, currency: str) -> None:
    try:
        result = parse_price_to_cents(raw, currency)
    except PriceError:
        return
    assert isinstance(result, int)
    assert result >= 0
