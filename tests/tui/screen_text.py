"""Plain text of what a Pilot-driven app shows right now, for assertions and debugging."""

from __future__ import annotations

from textual.app import App


def screen_text(app: App) -> str:
    """The visible screen (modal screens included) as lines of text."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text.rstrip() for strip in strips)


def screen_words(app: App) -> str:
    """The visible screen with all whitespace (line breaks included) collapsed to single spaces,
    so a message that wraps still matches."""
    return " ".join(screen_text(app).split())


def widget_text(app: App, selector: str) -> str:
    """What one widget of the current screen renders, as plain text."""
    return str(app.screen.query_one(selector).render())
