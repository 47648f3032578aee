"""Filtering and sorting Tasker's tables: the `/` filter syntax and one-key column sorts.

A filter is words separated by spaces, and a row is shown when every word matches it:

- `coal` occurs in any field of the row (case-insensitive);
- `source:coal` occurs in that field; a field's name may be shortened while it stays
  unambiguous (`sou:coal`);
- `*` and `?` are wildcards over a whole value: `region:eu-*`, `name:web-?-1`;
- `field:=value` is that whole value and no other: `server:=web-1` (not `web-10`);
- `!word` or `!field:value` is a row that does not match it.

A field the table does not have is an error said in words (`no field "colour"; fields: ...`),
and such a filter shows nothing rather than everything. Sorting is by one column at a time,
chosen with shift and the column's letter; the same key again reverses the order. Rows with no
value in the sorted column come last either way. Pure; no Textual, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, TypeVar

WILDCARDS = frozenset("*?[")
NEGATIONS = ("!",)

Fields = Mapping[str, Sequence[str]]
"""A row as a filter sees it: each field's values (a server has several tags)."""


@dataclass(frozen=True, slots=True)
class Term:
    """One word of a filter."""

    field: str | None  # None: any field
    pattern: str  # casefolded
    negated: bool = False
    exact: bool = False

    def matches(self, row: Fields) -> bool:
        values = row.get(self.field, ()) if self.field else [v for vs in row.values() for v in vs]
        if self.exact:
            hit = any(v.casefold() == self.pattern for v in values)
        elif WILDCARDS & set(self.pattern):
            hit = any(fnmatchcase(v.casefold(), self.pattern) for v in values)
        else:
            hit = any(self.pattern in v.casefold() for v in values)
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed filter; `error` says in words why it cannot be applied (it then matches nothing)."""

    text: str = ""
    terms: tuple[Term, ...] = ()
    error: str | None = None

    def matches(self, row: Fields) -> bool:
        if self.error:
            return False
        return all(term.matches(row) for term in self.terms)

    @property
    def active(self) -> bool:
        return bool(self.text.strip())


def parse_filter(text: str, fields: Sequence[str]) -> Filter:
    """`text` as typed into a table's filter box, over a table with these `fields`."""
    terms = []
    for word in text.split():
        negated = word.startswith(NEGATIONS) and len(word) > 1
        body = word[1:] if negated else word
        field: str | None = None
        name, colon, value = body.partition(":")
        if colon and name:
            field = _field(name.casefold(), fields)
            if field is None:
                return Filter(text, (), _unknown(name, fields))
            body = value
        exact = field is not None and body.startswith("=") and len(body) > 1
        terms.append(Term(field, (body[1:] if exact else body).casefold(), negated, exact))
    return Filter(text, tuple(terms))


def _field(name: str, fields: Sequence[str]) -> str | None:
    if name in fields:
        return name
    candidates = [f for f in fields if f.startswith(name)]
    return candidates[0] if len(candidates) == 1 else None


def _unknown(name: str, fields: Sequence[str]) -> str:
    candidates = [f for f in fields if f.startswith(name.casefold())]
    if len(candidates) > 1:
        return f'"{name}:" could be {" or ".join(candidates)}'
    return f'no field "{name}"; fields: {", ".join(fields)}'


@dataclass(frozen=True, slots=True)
class SortColumn:
    """A column a table can sort by: `letter` is its key (shift+letter), `descending_first` for
    figures, where the largest is what one looks for first."""

    key: str
    label: str
    letter: str
    descending_first: bool = False


@dataclass(frozen=True, slots=True)
class SortOrder:
    key: str
    reverse: bool = False

    def pressed(self, column: SortColumn) -> SortOrder:
        """The order after the column's key is pressed: that column, or the same reversed."""
        if column.key == self.key:
            return SortOrder(self.key, not self.reverse)
        return SortOrder(column.key, column.descending_first)

    @property
    def arrow(self) -> str:
        return "▼" if self.reverse else "▲"


Row = TypeVar("Row")


def ordered(
    rows: Iterable[Row],
    value: Callable[[Row], Any],
    tiebreak: Callable[[Row], Any],
    reverse: bool,
) -> list[Row]:
    """`rows` sorted by `value` (None for no value: those last, in `tiebreak` order), equal values
    in `tiebreak` order whichever the direction."""
    known: list[tuple[Any, Row]] = []
    unknown: list[Row] = []
    for row in rows:
        v = value(row)
        if v is None:
            unknown.append(row)
        else:
            known.append((v, row))
    known.sort(key=lambda pair: tiebreak(pair[1]))
    known.sort(key=lambda pair: pair[0], reverse=reverse)  # stable: ties keep the tiebreak order
    unknown.sort(key=tiebreak)
    return [row for _, row in known] + unknown


def letter_position(label: str, letter: str) -> int | None:
    """Where `letter` first occurs in `label` (any case), to underline it in a header."""
    index = label.casefold().find(letter.casefold())
    return index if index >= 0 else None
