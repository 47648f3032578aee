"""Widgets of the Tasker TUI. None of them does I/O: screens set their state and they draw it."""
