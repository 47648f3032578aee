"""The chat seam: the side pane every screen docks, and the app-level state behind it.

Chat itself (issue 6) plugs in here and nowhere else:
- `ChatState` is owned by the app. The live link hands it every websocket frame whose type
  starts with `chat.` (`handle_frame`), and gives it a way to send frames (`attach_sender`).
  Its `unread` count feeds the header badge; `changed` tells the app to repaint.
- `ChatPane` is the docked widget. It renders from the app's `ChatState` and never does I/O;
  user input leaves it as messages (`ChatPane.Send`) that the app turns into frames.
"""

from tasker_tui.chat.pane import ChatPane
from tasker_tui.chat.state import ChatState

__all__ = ["ChatPane", "ChatState"]
