"""The screens of the Tasker TUI: login, fleet, server detail, server form, raw readings, help."""
