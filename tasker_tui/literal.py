"""Text from the backend, drawn as it is: never parsed as markup, never a terminal control code.

Server names, sites, tags, task names, chat, error messages: all of it is data someone else
typed. Textual parses a `str` handed to `Static`, `notify`, a palette hit or a Rich table as
markup, so `[/]` would crash a screen and `[@click=app.quit]` would run an action. What the
backend sent therefore reaches a widget only as the `Text` or `Content` built here, styled
by spans. (Escaping is no substitute: `textual.markup.escape` leaves `[$x]` and `[B]` as tags.)
"""

from __future__ import annotations

import unicodedata

from rich.text import Text
from textual.content import Content

# Unicode categories never drawn as they are: control characters (ESC would start a terminal
# sequence), format characters (bidi overrides reorder what follows) and lone surrogates.
_HIDDEN = frozenset(("Cc", "Cf", "Cs"))
_KEPT = frozenset("\n\t")


def printable(value: object) -> str:
    """`value` as a string safe to draw: control and format characters become U+FFFD (newlines
    and tabs stay). The backend neutralises them too; this is the TUI's own line of defence."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text  # the common case, checked in C
    return "".join(c if c in _KEPT or unicodedata.category(c) not in _HIDDEN else "\ufffd" for c in text)


def literal(value: object, style: str = "") -> Text:
    """Backend text as a Rich `Text` shown character for character, in `style`."""
    return Text(printable(value), style=style, end="")


def literal_content(value: object, style: str = "") -> Content:
    """Backend text as Textual `Content` (for APIs that take Content, e.g. palette hits)."""
    return Content.styled(printable(value), style) if style else Content(printable(value))


def one_line(value: object) -> str:
    """`printable(value)` with line breaks and tabs as spaces, for a table cell or a title."""
    text = printable(value)
    return text if text.isprintable() else text.replace("\n", " ").replace("\t", " ")
