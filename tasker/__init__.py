"""Tasker: a terminal console for a fleet of servers and the energy they burn."""
