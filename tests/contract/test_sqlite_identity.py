"""One SQLite file, one store — by the file's identity, not by the name it is opened by (issue 10, item 3).

A second store on the same database through the same path, a relative spelling,
a symbolic link, a hard link or a symbolic link to its directory is refused while
the first is open, and the first one's writes survive. A file with a second hard
link is refused even when nobody holds it (its committed writes may sit in a
`-wal` file named after the other name).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kos.storage.interface import StoreError
from kos.storage.sqlite import SQLiteStore, StoreInUse


def _same(db: Path) -> str:
    return str(db)


def _relative(db: Path) -> str:
    return os.path.relpath(db)


def _dotted(db: Path) -> str:
    return str(db.parent / "." / ".." / db.parent.name / db.name)


def _symlink(db: Path) -> str:
    link = db.parent / "link.db"
    link.symlink_to(db)
    return str(link)


def _hardlink(db: Path) -> str:
    link = db.parent / "hard.db"
    os.link(db, link)
    return str(link)


def _dir_symlink(db: Path) -> str:
    d = db.parent.parent / "dirlink"
    d.symlink_to(db.parent, target_is_directory=True)
    return str(d / db.name)


SPELLINGS: dict[str, Callable[[Path], str]] = {
    "same path": _same,
    "relative path": _relative,
    "dotted path": _dotted,
    "symbolic link": _symlink,
    "hard link": _hardlink,
    "symbolic link to the directory": _dir_symlink,
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
async def test_second_store_on_the_same_file_is_refused(
    spelling: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    db = data / "state.db"
    first = await SQLiteStore.open(str(db))
    try:
        acked = {f"/k/{i}": await first.create(f"/k/{i}", b"v%d" % i) for i in range(20)}
        other = SPELLINGS[spelling](db)
        with pytest.raises(StoreInUse, match="is in use by another kos apiserver") as exc:
            await SQLiteStore.open(other)
        assert "\n" not in str(exc.value)
        # the refusal changed nothing and the first store keeps working
        acked["/k/after"] = await first.create("/k/after", b"after")
        assert [kv.key for kv in (await first.list("/k/"))[0]] == sorted(acked)
    finally:
        await first.close()
    if spelling == "hard link":
        # two names for one database: refused even when nobody holds it, by either name
        for name in (str(db), other):
            with pytest.raises(StoreError, match="hard links"):
                await SQLiteStore.open(name)
        os.unlink(other)
    again = await SQLiteStore.open(str(db))
    try:
        items, _ = await again.list("/k/")
        assert {kv.key: kv.mod_revision for kv in items} == acked
    finally:
        await again.close()


async def test_the_file_is_free_again_after_close(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    link = tmp_path / "link.db"
    link.symlink_to(db)
    first = await SQLiteStore.open(str(db))
    await first.create("/k/a", b"a")
    await first.close()
    second = await SQLiteStore.open(str(link))  # the same file by another name, once nobody holds it
    try:
        assert (await second.get("/k/a")) is not None
        assert not (tmp_path / "link.db-wal").exists()  # SQLite opened the resolved name
    finally:
        await second.close()


async def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises((StoreError, OSError)):
        await SQLiteStore.open(str(tmp_path))


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    bad = tmp_path / "state.db"
    bad.write_bytes(b"not a database, just some bytes" * 100)
    with pytest.raises(StoreError, match="cannot open it as a kos SQLite database"):
        await SQLiteStore.open(str(bad))
    # and the failed open did not keep the file held
    bad.unlink()
    store = await SQLiteStore.open(str(bad))
    await store.close()


async def test_a_renamed_database_keeps_its_write_ahead_log(tmp_path: Path) -> None:
    """A database renamed while its store runs leaves its -wal and -shm under the old name: a second store on that
    name is refused (and creates nothing) instead of resetting them under the first, which lost every write."""
    db = tmp_path / "state.db"
    first = await SQLiteStore.open(str(db))
    try:
        await first.create("/subnets/d/a1", b"one")
        db.rename(tmp_path / "moved.db")
        with pytest.raises(StoreInUse) as e:
            await SQLiteStore.open(str(db))
        assert "state.db-wal is in use" in str(e.value) and "renamed" in str(e.value)
        assert not db.exists()
        await first.create("/subnets/d/a2", b"two")
    finally:
        await first.close()
    (tmp_path / "moved.db").rename(db)
    again = await SQLiteStore.open(str(db))
    try:
        items, _ = await again.list("/subnets/")
        assert [kv.key for kv in items] == ["/subnets/d/a1", "/subnets/d/a2"]
    finally:
        await again.close()
