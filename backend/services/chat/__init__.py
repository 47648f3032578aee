"""Support chat over the websocket: one conversation per sysadmin with the support staff.

- `service`: the `chat.*` frame handlers and the fan-out between api processes
- `access`: who may see and write which conversation, how often, and the checks on frame fields
- `stream`: one connection's messages, in id order and each once
- `presence`: who is online, across api processes
- `text`: what a message's text may contain (controls made visible and inert)
"""

from __future__ import annotations

from backend.services.chat.access import ChatRefused
from backend.services.chat.service import CHAT_CHANNEL, ChatService

__all__ = ["CHAT_CHANNEL", "ChatRefused", "ChatService"]
