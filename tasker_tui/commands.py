"""Command palette entries that are not key bindings: "go to server <name>" for every server."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tasker_tui.fleet_state import location_text


class ServerCommands(Provider):
    """Every registered server, found by name (or location, source) in the command palette."""

    def _servers(self) -> list[dict]:
        fleet = getattr(self.app, "fleet", None)
        if fleet is None or not getattr(self.app, "user", None):
            return []
        return sorted(fleet.servers.values(), key=lambda s: s["name"].casefold())

    def _open(self, server_id: str) -> None:
        self.app.open_server(server_id)  # type: ignore[attr-defined]

    @staticmethod
    def _help(server: dict) -> str:
        return f"{location_text(server, with_site=True)} · {server.get('energy_source', '')}"

    async def discover(self) -> Hits:
        for server in self._servers()[:50]:
            yield DiscoveryHit(
                f"Go to server {server['name']}", partial(self._open, server["id"]), help=self._help(server)
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for server in self._servers():
            title = f"Go to server {server['name']}"
            score = max(matcher.match(title), matcher.match(server["name"]))
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._open, server["id"]), text=title,
                          help=self._help(server))
