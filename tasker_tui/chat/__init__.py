"""Support chat in the TUI: the side pane every screen docks, and the app-level state behind it.

- `ChatState` is owned by the app. The live link hands it every websocket frame whose type
  starts with `chat.` (`handle_frame`) and the websocket's send (`attach_sender`, None while
  disconnected); on each connect it joins with the last ids it holds and sends its outbox.
  Its `unread` total feeds the header badge; `version` tells the app to repaint.
- `ChatPane` is the docked widget. It draws from the app's `ChatState` and never does I/O: what
  the user types is queued in the state's outbox, which the live link's connection sends.
- `model` (conversations, outbox entries) and `render` (Rich text of the log and lists) are
  plain code without Textual.
"""

from tasker_tui.chat.pane import ChatPane
from tasker_tui.chat.state import ChatState

__all__ = ["ChatPane", "ChatState"]
