"""The headers PostgREST reads (``Prefer``, ``Accept``, ``Range``, profiles) and ``Content-Range``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stripe_migration.sandbox.supabase_gateway import errors

_PREFERENCES = {
    "return": {"representation", "minimal", "headers-only"},
    "count": {"exact", "planned", "estimated"},
    "resolution": {"merge-duplicates", "ignore-duplicates"},
    "missing": {"default", "null"},
    "handling": {"strict", "lenient"},
}
# Accepted and ignored: they change nothing the local gateway does.
_IGNORED = {"tx", "timezone", "params"}


@dataclass
class Preferences:
    """The ``Prefer`` header, parsed."""

    values: dict[str, str] = field(default_factory=dict)
    max_affected: int | None = None
    invalid: list[str] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """The value given for preference ``name``, if any."""
        return self.values.get(name)

    @property
    def count(self) -> bool:
        """Whether a total count was asked for (planned and estimated are answered exactly)."""
        return "count" in self.values

    def applied(self, *names: str) -> dict[str, str]:
        """A ``Preference-Applied`` header listing the given preferences that were sent."""
        applied = [f"{n}={self.values[n]}" for n in names if n in self.values]
        if "max-affected" in names and self.max_affected is not None:
            applied.append(f"max-affected={self.max_affected}")
        return {"Preference-Applied": ", ".join(applied)} if applied else {}


def parse_prefer(headers: list[str]) -> Preferences:
    """Parse every ``Prefer`` header; with ``handling=strict`` an unknown preference is a 400."""
    prefs = Preferences()
    for header in headers:
        for item in header.split(","):
            item = item.strip()
            if not item:
                continue
            name, _, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if name in _PREFERENCES and value in _PREFERENCES[name]:
                prefs.values[name] = value
            elif name == "max-affected" and value.isascii() and value.isdigit():
                prefs.max_affected = int(value)
            elif name not in _IGNORED:
                prefs.invalid.append(item)
    if prefs.get("handling") == "strict" and prefs.invalid:
        raise errors.GatewayError(
            400,
            "PGRST122",
            "Invalid preferences given with handling=strict",
            "Invalid preferences: " + ", ".join(prefs.invalid),
        )
    return prefs


@dataclass(frozen=True)
class MediaChoice:
    """The representation to answer with: a JSON array or object (nulls kept or not), or CSV."""

    singular: bool = False
    strip_nulls: bool = False
    csv: bool = False

    @property
    def content_type(self) -> str:
        """The response ``Content-Type``."""
        if self.csv:
            return "text/csv; charset=utf-8"
        base = "application/vnd.pgrst.object+json" if self.singular else "application/json"
        if self.strip_nulls:
            kind = "object" if self.singular else "array"
            base = f"application/vnd.pgrst.{kind}+json; nulls=stripped"
        return f"{base}; charset=utf-8"


def negotiate(accept: str | None) -> MediaChoice:
    """Pick the first media type of ``Accept`` that the gateway produces; 406 if none."""
    if not accept or not accept.strip():
        return MediaChoice()
    offered = []
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        media = media.lower()
        offered.append(media)
        options = dict(p.partition("=")[::2] for p in params)
        strip = options.get("nulls") == "stripped"
        if media in ("application/json", "*/*", "application/*"):
            return MediaChoice()
        if media == "application/vnd.pgrst.array+json":
            return MediaChoice(strip_nulls=strip)
        if media == "application/vnd.pgrst.object+json":
            return MediaChoice(singular=True, strip_nulls=strip)
        if media == "text/csv":
            return MediaChoice(csv=True)
    raise errors.GatewayError(
        406, "PGRST107", "None of these media types are available: " + ", ".join(offered)
    )


_RANGE = re.compile(r"^([0-9]+)-([0-9]*)$")


def page(
    range_header: str | None, limit: int | None, offset: int | None, max_rows: int | None
) -> tuple[int, int | None]:
    """The ``(offset, limit)`` to read, like PostgREST's top-level range.

    The ``Range`` header and the ``limit``/``offset`` parameters intersect, then ``max_rows``
    caps the limit. A malformed ``Range`` is ignored, as PostgREST ignores it.
    """
    lower, upper = 0, None
    if range_header:
        match = _RANGE.match(range_header.strip())
        if match:
            lower = int(match.group(1))
            if match.group(2):
                upper = int(match.group(2))
                if upper < lower:
                    raise errors.invalid_range(
                        "The lower boundary must be lower than or equal to the upper boundary in "
                        "the Range header."
                    )
    if limit == 0:
        return 0, 0
    if offset is not None:
        lower = max(lower, offset)
    if limit is not None:
        end = (offset or 0) + limit - 1
        upper = end if upper is None else min(upper, end)
    count = None if upper is None else max(upper - lower + 1, 0)
    if max_rows is not None:
        count = max_rows if count is None else min(count, max_rows)
    return lower, count


def content_range(lower: int, upper: int, total: int | None) -> str:
    """``Content-Range`` as PostgREST writes it: ``0-9/500``, ``*/0``, ``0-9/*``."""
    range_part = f"{lower}-{upper}" if total != 0 and lower <= upper else "*"
    return f"{range_part}/{'*' if total is None else total}"
