"""Keys typed ahead go where the user meant them: one at a time, each after the last one's effect.

Textual forwards every key the terminal sent to whatever has the focus at that moment, then lets
the focused widget, the screen and the app handle it later. A burst of keys in one write (a paste
without bracketed paste, or keys bunched by a laggy SSH link) is thus forwarded whole before the
first key's action has run: after `/` opens the filter, `dyn` still reached the fleet table and
`d` deleted. Here the app hands a key on only when the previous one has been handled everywhere
and the screen has caught up (focus moved, a pushed screen mounted and drawn). A screen that must
not be answered by type-ahead (`refuses_type_ahead`, the yes/no question) drops keys typed before
it was drawn.
"""

from __future__ import annotations

import time
from collections import deque

from textual import events
from textual.app import App
from textual.message import Message
from textual.timer import Timer

# A screen gets this long to be ready for keys; after that keys flow again (a screen that never
# became ready must not leave the keyboard dead).
READY_WAIT_S = 2.0
# A key's delivery notice can be lost when its widget goes away meanwhile; the next key then
# waits at most this long.
IN_FLIGHT_WAIT_S = 1.0
POLL_S = 0.02


class KeyDelivered(Message):
    """Follows a key up the same chain of widgets; reaching the app means the key was handled."""

    def __init__(self, serial: int) -> None:
        super().__init__()
        self.serial = serial


class OrderedKeys(App):
    """App mixin: keys (and pastes) are delivered in order, each once the app is ready for it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._backlog: deque[events.Key | events.Paste] = deque()
        self._in_flight: events.Key | events.Paste | None = None
        self._in_flight_serial = 0
        # Whether the key in flight ran an action (a binding): only then may focus or screens move.
        self._key_acted = False
        self._waiting_since: float | None = None
        self._key_timer: Timer | None = None

    def typed_before(self, moment: float | None) -> bool:
        """Whether the key being handled now was typed before `moment` (a `time.monotonic()`), or
        `moment` has not come yet. False when no key is being handled (a mouse click)."""
        key = self._in_flight
        if key is None:
            return False
        return moment is None or key.time < moment

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.Paste)) and not event.is_forwarded:
            self._backlog.append(event)
            if self._in_flight is None:
                await self._deliver()
            return
        await super().on_event(event)

    def _screen_ready(self) -> bool:
        screen = self.screen
        ready = getattr(screen, "ready", None)
        return bool(ready) if ready is not None else screen.is_mounted

    async def _deliver(self) -> None:
        """Hand on the next waiting key, if the screen is ready for it."""
        if self._key_timer is not None:
            self._key_timer.stop()
            self._key_timer = None
        while self._backlog and self._in_flight is None:
            if not self._screen_ready():
                now = time.monotonic()
                self._waiting_since = self._waiting_since or now
                if now - self._waiting_since < READY_WAIT_S:
                    self._key_timer = self.set_timer(POLL_S, self._deliver)
                    return
            self._waiting_since = None
            event = self._backlog.popleft()
            shown_at = getattr(self.screen, "shown_at", None)
            if getattr(self.screen, "refuses_type_ahead", False) and (shown_at is None or event.time < shown_at):
                self.log.debug("dropped a key typed before the question was shown", key=event)
                continue
            target = self.focused or self.screen
            self._in_flight = event
            self._key_acted = False
            await super().on_event(event)
            self._in_flight_serial += 1
            # Not forwarded: a priority binding took it, so it is handled already.
            if not event.is_forwarded or not target.post_message(KeyDelivered(self._in_flight_serial)):
                self.call_after_refresh(self._key_settled)
                return
            self._key_timer = self.set_timer(IN_FLIGHT_WAIT_S, self._given_up_waiting)

    async def run_action(self, action, default_namespace=None, namespaces=None) -> bool:
        if self._in_flight is not None:
            self._key_acted = True
        return await super().run_action(action, default_namespace, namespaces)

    def on_key_delivered(self, message: KeyDelivered) -> None:
        message.stop()
        if message.serial == self._in_flight_serial and self._in_flight is not None:
            if self._key_acted:
                # After the refresh: what the key's action asked for later (a focus move, a
                # screen to mount) comes first.
                self.call_after_refresh(self._key_settled)
            else:  # typed into a field: nothing moved, the next key may follow at once
                self.call_later(self._key_settled)

    async def _key_settled(self) -> None:
        self._in_flight = None
        await self._deliver()

    async def _given_up_waiting(self) -> None:
        self._key_timer = None
        if self._in_flight is not None:
            self._in_flight = None
            await self._deliver()
