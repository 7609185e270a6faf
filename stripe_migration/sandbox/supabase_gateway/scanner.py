"""The lexical layer of PostgREST's query grammar: a cursor over one parameter, quoting and splitting."""

from __future__ import annotations

import re

# Unquoted identifiers: letters, digits, underscore, dollar and spaces; '-' unless it starts '->'.
_IDENT_CHAR = re.compile(r"[\w$ ]", re.UNICODE)


class QueryError(ValueError):
    """A part of the query string that does not fit the grammar (message = details)."""


class Scanner:
    """A cursor over one parameter value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        """Whether the whole text was consumed."""
        return self.pos >= len(self.text)

    def rest(self) -> str:
        """The text not consumed yet."""
        return self.text[self.pos :]

    def peek(self, token: str) -> bool:
        """Whether the text at the cursor starts with ``token``."""
        return self.text.startswith(token, self.pos)

    def take(self, token: str) -> bool:
        """Consume ``token`` if it is next."""
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str, what: str) -> None:
        """Consume ``token`` or fail naming ``what`` was expected."""
        if not self.take(token):
            raise QueryError(f"expected {what} at position {self.pos + 1}{self.found()}")

    def found(self) -> str:
        """``, found "x"`` for the character at the cursor (for error details)."""
        return f', found "{self.text[self.pos]}"' if not self.done() else ", found end of input"

    def quoted(self) -> str:
        """A double-quoted string with backslash escapes (the opening quote is current)."""
        self.expect('"', "'\"'")
        out = []
        while not self.done():
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and not self.done():
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        raise QueryError("unterminated double quote")

    def identifier(self, what: str = "identifier") -> str:
        """A double-quoted or bare identifier (bare ones are stripped of surrounding spaces)."""
        if self.peek('"'):
            return self.quoted()
        start = self.pos
        while not self.done():
            char = self.text[self.pos]
            if _IDENT_CHAR.match(char) or (char == "-" and not self.peek("->")):
                self.pos += 1
            else:
                break
        name = self.text[start : self.pos].strip()
        if not name:
            raise QueryError(f"expected {what} at position {start + 1}{self.found()}")
        return name


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` outside double quotes and parentheses/braces."""
    parts, current, depth, quoted, escaped = [], [], 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "({":
            depth += 1
        elif not quoted and char in ")}":
            depth -= 1
        elif not quoted and depth == 0 and char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise QueryError("unterminated double quote")
    if depth != 0:
        raise QueryError("unbalanced parentheses")
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    """``"a,b"`` → ``a,b``: a value of a list or logic tree written in double quotes."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return Scanner(value).quoted()
    return value


def whole_identifier(text: str, what: str) -> str:
    """``text`` as one identifier, nothing after it."""
    scanner = Scanner(text.strip())
    name = scanner.identifier(what)
    if not scanner.done():
        raise QueryError(f'unexpected "{scanner.text[scanner.pos]}" in "{text}"')
    return name
