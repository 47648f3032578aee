"""Chat text: controls and text-reordering marks are made visible before anyone's terminal
prints them; sizes are counted as the limit counts them."""

from __future__ import annotations

import unicodedata

import pytest

from backend.services.chat.text import neutralise, utf8_size


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07", "␛]0;pwned␇"),  # set the terminal's title
        ("\x1b[2J\x1b[H", "␛[2J␛[H"),  # clear the screen, home the cursor
        ("\x9b31mred", "<U+009B>31mred"),  # one-byte CSI (C1)
        ("\x1bP+q\x1b\\", "␛P+q␛\\"),  # device control string
        ("abc\u202edcba\u202c", "abc<U+202E>dcba<U+202C>"),  # right-to-left override
        ("\u2066x\u2069 \u200f", "<U+2066>x<U+2069> <U+200F>"),  # isolates, RLM
        ("over\rwrite", "over␍write"),  # a bare CR would overwrite the line
        ("nul\x00 del\x7f", "nul␀ del␡"),
        ("a\r\nb\u2028c", "a\nb\nc"),  # line breaks become plain newlines
        ("tab\there\nnext", "tab\there\nnext"),  # kept: readable
        ("caf\u00e9 😀 Grüße", "caf\u00e9 😀 Grüße"),  # ordinary text is untouched
        ("\ud800x", "\ufffdx"),  # a lone surrogate cannot be stored
    ],
)
def test_neutralise_makes_controls_visible_and_keeps_text(raw, shown):
    out = neutralise(raw)
    assert out == shown
    assert all(c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs") for c in out)


def test_message_size_is_counted_in_utf8_bytes():
    assert utf8_size("a" * 10) == 10
    assert utf8_size("😀") == 4 and utf8_size("é") == 2
    assert utf8_size("\ud800") == 3
