"""Plain text of what a Pilot-driven app shows right now, for assertions and debugging."""

from __future__ import annotations

from textual.app import App


def screen_text(app: App) -> str:
    """The visible screen (modal screens included) as lines of text."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text.rstrip() for strip in strips)
