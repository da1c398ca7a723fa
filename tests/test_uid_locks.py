"""The per-folder UID locks: shared while in use, gone when no one uses them."""

from __future__ import annotations

from pathlib import Path

from app.world import mailstore
from app.world.mailstore import MailStore

MESSAGE = b"From: a@a.example\r\nTo: b@b.example\r\nSubject: hi\r\n\r\nhello\r\n"


def test_locks_of_folders_no_longer_in_use_are_not_kept(tmp_path: Path) -> None:
    """Each scenario run has its own temporary store; a long-lived worker must not keep a
    lock for every folder it ever saw."""
    paths = []
    for run in range(20):
        store = MailStore(tmp_path / f"run{run}")
        store.deliver("b@b.example", MESSAGE)
        folder = store.folder("b@b.example")
        assert [m.uid for m in folder.messages()] == [1]
        assert folder.uidvalidity > 0
        paths.append(folder.path)
    assert not set(paths) & set(mailstore._uid_locks.keys())


def test_a_lock_in_use_is_the_one_every_other_user_gets(tmp_path: Path) -> None:
    folder = tmp_path / "INBOX"
    held = mailstore._uid_lock(folder)
    with held:
        assert mailstore._uid_lock(folder) is held  # a waiter would wait on this very lock
    assert mailstore._uid_lock(folder) is held  # still referenced here: still the same
    del held
    assert folder not in mailstore._uid_locks
