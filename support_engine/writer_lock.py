"""One writer process per SQLite database: an exclusive lock on ``<database>.lock`` while it writes.

Two engines writing one SQLite file would corrupt each other's state (the de-duplication ledger,
the ids they hand out), and SQLite's own locks do not stop that: they serialise the writes, they do
not refuse the second writer. :meth:`WriterLock.take` does: it locks the sidecar file with
``flock``, and a second process gets :class:`DatabaseInUse`, naming the database and the process
that holds it (the lock file keeps the holder's pid). The kernel drops a ``flock`` when the
process ends, however it ends, so a killed engine leaves no stale lock. Readers (the HTTP API,
``mode=ro``) take none.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import ClassVar

from support_engine.errors import StorageError

__all__ = ["DatabaseInUse", "WriterLock"]


class DatabaseInUse(StorageError):
    """Another process writes this database (it holds the lock file): a second engine on one file."""

    def __init__(self, database: str, lock: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"database {database!r} is in use by {holder}, which holds {lock}: one engine per database; "
            "stop that engine, or give this one its own --db"
        )
        self.database, self.lock, self.pid = database, lock, pid


class WriterLock:
    """This process's exclusive ``flock`` on ``<database>.lock``, shared by its writers of that database.

    Writers in one process share the lock (a test restarts an engine within its own process); the
    last one to :meth:`release` it drops it. The file stays behind: a lock file that the holder
    unlinked could be locked by two processes at once (one on the old file, one on a new one).
    """

    _held: ClassVar[dict[str, WriterLock]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._users = 1

    @classmethod
    def take(cls, database: str, shown: str) -> WriterLock:
        """The lock of the database file ``database`` (named ``shown`` in errors).

        :class:`DatabaseInUse` if another process holds it; :class:`OSError` if the lock file
        cannot be made (a directory that is not writable).
        """
        path = f"{Path(database).resolve()}.lock"
        with cls._guard:
            held = cls._held.get(path)
            if held is not None:
                held._users += 1
                return held
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                raise DatabaseInUse(shown, path, int(text) if text.isdigit() else None) from None
            except OSError:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            lock = cls._held[path] = cls(path, fd)
            return lock

    def release(self) -> None:
        """Let go; the last writer of this process to let go drops the lock."""
        with self._guard:
            self._users -= 1
            if self._users > 0:
                return
            del self._held[self.path]
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # the only descriptor of the lock: closing it drops the flock
