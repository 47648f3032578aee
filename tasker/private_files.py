"""Folders and files only their owner can read: Tasker's data holds every chat, session and
reading, and it runs on shared SSH hosts.

Modes are set with chmod, so they hold whatever the umask. Only folders Tasker creates are
made private; one that exists already (a home, /tmp) is the user's and keeps its mode.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> None:
    """Create `path` and its missing parents, each 0700; raise OSError as mkdir does."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # created meanwhile by another process: theirs to set
        os.chmod(folder, PRIVATE_DIR)
    if not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory")


def private_file(path: Path) -> None:
    """Create `path` empty as 0600 if it is missing (so SQLite's -wal and -shm files, which take
    the database file's mode, are private too), or make an existing file 0600."""
    private_dir(path.parent)
    if path.exists():
        # chmod by name: closing a descriptor of a database this process has open would drop
        # SQLite's POSIX locks on it.
        os.chmod(path, PRIVATE_FILE)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:  # created meanwhile
        os.chmod(path, PRIVATE_FILE)
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
