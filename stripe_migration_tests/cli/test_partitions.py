"""``--partition`` values as contiguous partition ranges (pure, no servers)."""

from __future__ import annotations

import pytest

from stripe_migration.cli.partitions import parse_partitions


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), [("00", "15")]),
        (("all",), [("00", "15")]),
        (("7",), [("07", "07")]),
        (("03..05", "6"), [("03", "06")]),
        (("3-4", "9", "10", "15"), [("03", "04"), ("09", "10"), ("15", "15")]),
    ],
)
def test_parse_partitions(values: tuple[str, ...], expected: list[tuple[str, str]]) -> None:
    assert parse_partitions(values, 16) == expected


@pytest.mark.parametrize("value", ["16", "5..3", "x", "1,2"])
def test_parse_partitions_refuses_with_the_value(value: str) -> None:
    import click

    with pytest.raises(click.BadParameter, match=value.replace(".", r"\.")):
        parse_partitions((value,), 16)
