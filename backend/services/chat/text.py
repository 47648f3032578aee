"""What a chat message's text may contain, decided once at the backend's edge.

Chat text ends up printed in other people's terminals, so anything a terminal would act on
instead of print is turned into visible, harmless text before it is stored or sent:

- C0 controls and DEL become their Unicode "control pictures": ESC -> "␛", BEL -> "␇",
  CR -> "␍", so `\\x1b]0;pwned\\x07` (set the window title) reads as "␛]0;pwned␇";
- C1 controls (U+0080..U+009F, e.g. the one-byte CSI U+009B) and the invisible characters that
  reorder or hide text (bidi embeddings, overrides and isolates, U+061C, U+200E/F) become
  "<U+202E>"-style tags;
- lone surrogates (which JSON can carry but UTF-8 cannot) become U+FFFD.

Newlines and tabs stay (CRLF and U+2028/U+2029 become "\\n"), so pasted output stays readable.
"""

from __future__ import annotations

import re

MAX_MESSAGE_BYTES = 4096
"""Largest chat message, counted in UTF-8 bytes of the text as the client sent it."""

_KEEP = frozenset("\n\t")
_BIDI_AND_INVISIBLE = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_LINE_BREAKS = re.compile("\r\n|\u2028|\u2029")


def _visible(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ .. ␟
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"<U+{code:04X}>"


def neutralise(text: str) -> str:
    """`text` with every control character and text-reordering mark made visible and inert."""
    text = _LINE_BREAKS.sub("\n", text)
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char in _KEEP:
            out.append(char)
        elif code < 0x20 or 0x7F <= code <= 0x9F or code in _BIDI_AND_INVISIBLE:
            out.append(_visible(code))
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def utf8_size(text: str) -> int:
    """Bytes of `text` in UTF-8, counting a lone surrogate as the 3 bytes it would take."""
    return len(text.encode("utf-8", "surrogatepass"))
