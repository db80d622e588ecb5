"""One database file, one owner — by the file's identity (its inode), not by the name it was opened by.

A lock file named after the path (`<path>.lock`, what kos did before) is only as
good as the spelling: a hard link or a symbolic link to the same database has
another name, so a second server took another lock file and ran on the same
data. With a hard link this loses acknowledged writes: SQLite names its `-wal`
and `-shm` companions after the name it was opened by, so each server keeps its
own write-ahead log for the same database file and one overwrites the other's
checkpoints (SQLite's "How To Corrupt An SQLite Database File", §2.5 "Multiple
links to the same file").

So the lock is taken on the database file itself:

- `flock(2)` on a file descriptor of the resolved database file. A lock on an
  open file follows the inode, whatever name (hard link, symbolic link, relative
  spelling, a symlinked directory) reached it.
- Why `flock` and not `fcntl` (POSIX) locks: SQLite itself takes POSIX byte-range
  locks on the database file. POSIX locks belong to the *process*, so our own
  `fcntl` lock would never conflict with SQLite's locks in the same process and,
  worse, closing *any* descriptor of the file drops every POSIX lock the process
  holds on it — SQLite's included. Open-file-description (OFD) locks would
  conflict with SQLite's byte ranges. On Linux `flock` locks are a separate kind
  that neither interferes with nor is released by POSIX locks, and they belong to
  the open file description, so a second open in the same process conflicts too.
  (On NFS Linux emulates `flock` with POSIX locks; SQLite on NFS is unsupported
  anyway.)
- The descriptor stays open until after SQLite has closed the database: closing
  it earlier would drop SQLite's POSIX locks (see above). For the same reason a
  refusal inside the same process is decided from a registry of held inodes,
  before anything is opened: opening and closing a second descriptor of a file
  this process's SQLite holds would drop SQLite's locks on it.
- A database file with more than one hard link is refused even when nobody holds
  it: after a crash its committed writes may sit in a `-wal` file named after the
  *other* name, and opening it by this name would silently lose them.
- The companions are held too (`hold_companions`, once SQLite has made them): a
  database file renamed while its server runs leaves its `-wal` and `-shm` under
  the old name, and a second server started on that name would find them, take
  them for its own and reset them under the running server — losing every write
  it had acknowledged. `hold` refuses when a companion of the name it opens is
  held by someone else.

The holder's pid for the error message comes from `/proc/locks` (Linux), matched
by device and inode.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading

from kos.storage.interface import StoreError


class StoreInUse(StoreError):
    """Another server (or another store in this process) holds the database file."""


_held: dict[tuple[int, int], str] = {}
"""(st_dev, st_ino) of every database file this process holds → the path it was opened by."""
_held_lock = threading.Lock()


class HeldFile:
    """An exclusive hold on one database file; `path` is its resolved name (what SQLite must open)."""

    def __init__(self, fd: int, path: str, ident: tuple[int, int]) -> None:
        self.fd: int | None = fd
        self.path = path
        self.ident = ident
        self._companions: list[int] = []

    def hold_companions(self) -> None:
        """Hold the `-wal` and `-shm` files SQLite made for this database (call once it has opened it)."""
        for suffix in COMPANIONS:
            try:
                fd = os.open(self.path + suffix, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            self._companions.append(fd)  # kept open until release: closing it would drop SQLite's POSIX locks
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreInUse(_companion_in_use(self.path, suffix)) from None
            st = os.fstat(fd)
            with _held_lock:
                _held_companions.add((st.st_dev, st.st_ino))

    def release(self) -> None:
        """Drop the hold. Call only after every other descriptor of the file (SQLite's) is closed."""
        with _held_lock:
            for fd in self._companions:
                st = os.fstat(fd)
                _held_companions.discard((st.st_dev, st.st_ino))
                os.close(fd)
            self._companions = []
            if self.fd is None:
                return
            os.close(self.fd)
            self.fd = None
            _held.pop(self.ident, None)


COMPANIONS = ("-wal", "-shm")
"""SQLite's write-ahead log and its shared-memory index, named after the database's name."""


def _companion_in_use(real: str, suffix: str) -> str:
    return (
        f"{real}{suffix} is in use by another kos apiserver: it belongs to a database that server holds under"
        f" another name (was {real} renamed while it ran?); stop that server, or use another name"
    )


_held_companions: set[tuple[int, int]] = set()
"""(st_dev, st_ino) of the companions this process holds: judged without opening them (see the module doc)."""


def _check_companions(real: str) -> None:
    """Refuse if a companion of `real` exists and someone holds it (a running server's database, renamed)."""
    for suffix in COMPANIONS:
        try:
            st = os.stat(real + suffix)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) in _held_companions:
            raise StoreInUse(_companion_in_use(real, suffix))
        try:
            fd = os.open(real + suffix, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:  # no SQLite of this process has it open (checked by the caller): closing it drops no lock of ours
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreInUse(_companion_in_use(real, suffix)) from None
        finally:
            os.close(fd)


def hold(path: str) -> HeldFile:
    """Create the file if missing and take it exclusively; StoreInUse (or OSError) if that is not possible."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    real = os.path.realpath(path)
    os.makedirs(os.path.dirname(real), exist_ok=True)
    with _held_lock:
        try:
            st = os.stat(real)
        except FileNotFoundError:
            pass
        else:
            holder = _held.get((st.st_dev, st.st_ino))
            if holder is not None:
                raise StoreInUse(_in_use(path, real, f"this process, as {holder}"))
        existed = os.path.exists(real)
        if not existed:  # refuse before creating anything
            _check_companions(real)
        fd = os.open(real, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StoreError(
                    f"{path} is not a regular file; name a database file, e.g. sqlite:///var/lib/kos/state.db"
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _flock_holder(st.st_dev, st.st_ino)
                raise StoreInUse(_in_use(path, real, f"pid {pid}" if pid else "another process")) from None
            if st.st_nlink > 1:
                raise StoreError(
                    f"{path} has {st.st_nlink} hard links (other names for the same file); SQLite names its -wal"
                    " and -shm files after the name it opens, so a second name can lose committed writes: remove"
                    f" the other links (find / -xdev -samefile {real}) and start again"
                )
        except BaseException:
            os.close(fd)  # no SQLite of this process has this inode open (checked above): no POSIX lock is lost
            raise
        if existed:
            try:
                _check_companions(real)
            except BaseException:
                os.close(fd)
                raise
        ident = (st.st_dev, st.st_ino)
        _held[ident] = path
        return HeldFile(fd, real, ident)


def _in_use(path: str, real: str, holder: str) -> str:
    same = "" if os.path.abspath(path) == real else f" (the file {real})"
    return f"{path}{same} is in use by another kos apiserver ({holder}); only one server may use a database file"


def _flock_holder(dev: int, ino: int) -> int | None:
    """The pid holding a `flock` on (dev, ino), from /proc/locks; None if it cannot be told."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 7829 fe:00:2146976 0 EOF"; waiters are "1: -> FLOCK ..."
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == want and parts[4].isdigit():
            return int(parts[4])
    return None
