"""Command palette entries that are not key bindings: "go to server <name>" for every server."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Matcher, Provider
from textual.content import Content

from tasker.models import Server
from tasker_tui.literal import literal_content, one_line


def highlighted(matcher: Matcher, title: str) -> Content:
    """`title` with the query's matched characters styled, built as Content (never markup: the
    palette's own `Matcher.highlight` parses its argument, and a server name is not markup)."""
    content = literal_content(title)
    _score, offsets = matcher.fuzzy_search.match(matcher.query, content.plain)
    for offset in offsets:
        if not content.plain[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class ServerCommands(Provider):
    """Every registered server, found by name (or location, source) in the command palette."""

    def _servers(self) -> list[Server]:
        fleet = getattr(self.app, "fleet", None)
        if fleet is None or not getattr(self.app, "user", None):
            return []
        return sorted(fleet.servers.values(), key=lambda s: s.name.casefold())

    def _open(self, server_id: str) -> None:
        self.app.open_server(server_id)  # type: ignore[attr-defined]

    @staticmethod
    def _help(server: Server) -> Content:
        # Content, not str: the palette parses a str help as markup (Content passes through).
        return literal_content(one_line(f"{server.location.text(with_site=True)} · {server.energy_source}"))

    @staticmethod
    def _title(server: Server) -> str:
        return f"Go to server {one_line(server.name)}"

    async def discover(self) -> Hits:
        for server in self._servers()[:50]:
            title = self._title(server)
            yield DiscoveryHit(
                literal_content(title),
                partial(self._open, server.id),
                text=title,
                help=self._help(server),  # type: ignore[arg-type]  # Content: shown as typed, no markup
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for server in self._servers():
            title = self._title(server)
            score = max(matcher.match(title), matcher.match(one_line(server.name)))
            if score > 0:
                yield Hit(
                    score,
                    highlighted(matcher, title),
                    partial(self._open, server.id),
                    text=title,
                    help=self._help(server),  # type: ignore[arg-type]  # Content, as above
                )
