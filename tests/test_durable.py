"""Group commit: durable writes from an event loop, batched by one thread, on real files."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from app.world.durable import GroupCommit
from app.world.mailstore import MailStore
from app.world.spool import QueuedMail, Spool


async def test_concurrent_writes_land_whole_and_share_commits(tmp_path: Path) -> None:
    commits = GroupCommit()
    data = {f"m{i}": f"message {i}\r\n".encode() * (i + 1) for i in range(60)}
    await asyncio.gather(
        *(commits.write(tmp_path / f".{name}.tmp", tmp_path / name, body)
          for name, body in data.items())
    )  # fmt: skip
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == data  # no .tmp left
    assert commits.jobs == 60
    # Submitted in one loop turn, they cannot have needed a commit each.
    assert commits.batches < 60


async def test_a_failed_write_fails_its_caller_only(tmp_path: Path) -> None:
    commits = GroupCommit()
    missing = tmp_path / "no-such-dir"
    results = await asyncio.gather(
        commits.write(tmp_path / ".a.tmp", tmp_path / "a", b"a"),
        commits.write(missing / ".b.tmp", missing / "b", b"b"),
        commits.write(tmp_path / ".c.tmp", tmp_path / "c", b"c"),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], FileNotFoundError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c"]  # nothing half-written
    # The writer thread lives on after a failure.
    await commits.write(tmp_path / ".d.tmp", tmp_path / "d", b"d")
    assert (tmp_path / "d").read_bytes() == b"d"


async def test_call_runs_in_the_writer_thread_and_reports_errors(tmp_path: Path) -> None:
    commits = GroupCommit()
    seen: list[str] = []
    await commits.call(lambda: seen.append(threading.current_thread().name))
    assert seen == ["group-commit"]
    with pytest.raises(FileNotFoundError):
        await commits.call(lambda: (tmp_path / "missing").unlink())


def test_writers_on_two_event_loops_each_get_their_own_answer(tmp_path: Path) -> None:
    commits = GroupCommit()
    errors: list[BaseException] = []

    def run(tag: str) -> None:
        async def many() -> None:
            await asyncio.gather(
                *(commits.write(tmp_path / f".{tag}{i}.tmp", tmp_path / f"{tag}{i}", tag.encode())
                  for i in range(20))
            )  # fmt: skip

        try:
            asyncio.run(many())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(list(tmp_path.glob("x*"))) == len(list(tmp_path.glob("y*"))) == 20


async def test_spool_put_async_is_read_back_like_put(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "queue")
    await spool.put_async(
        QueuedMail("Q1", "alice@a.example", ("bob@b.example",), b"Subject: hi\r\n\r\nx\r\n")
    )
    spool.put("alice@a.example", ["carol@b.example"], b"Subject: ho\r\n\r\ny\r\n", "Q2")
    entries = {e.qid: e for e in spool.entries()}
    assert entries["Q1"].rcpt_tos == ("bob@b.example",)
    assert entries["Q1"].data == b"Subject: hi\r\n\r\nx\r\n"
    assert set(entries) == {"Q1", "Q2"}
    await spool.remove_async("Q1")
    assert [e.qid for e in spool.entries()] == ["Q2"]


@pytest.mark.parametrize("count", [1, 5])
async def test_maildir_delivery_through_the_group_commit_is_visible_to_readers(
    tmp_path: Path, count: int
) -> None:

    store = MailStore(tmp_path / "mail")
    paths = await asyncio.gather(
        *(store.deliver_async("bob@b.example", f"Subject: {i}\r\n\r\nbody\r\n".encode())
          for i in range(count))
    )  # fmt: skip
    messages = store.folder("bob@b.example", "INBOX").messages()
    assert len(messages) == count
    assert all(p.startswith("new/") for p in paths)
    assert not list((store.account_path("bob@b.example") / "tmp").iterdir())


async def test_a_removed_entry_s_file_is_reused_without_its_old_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "queue")
    await spool.put_async(QueuedMail("Q1", "a@a.example", ("b@b.example",), b"L" * 5000))
    inode = (spool.dir / "Q1.mail").stat().st_ino
    await spool.remove_async("Q1")
    assert spool.qids() == [] and len(spool) == 0  # the free file is not an entry
    await spool.put_async(QueuedMail("Q2", "a@a.example", ("c@b.example",), b"short"))
    assert (spool.dir / "Q2.mail").stat().st_ino == inode  # no new file was made
    [entry] = spool.entries()
    assert (entry.qid, entry.rcpt_tos, entry.data) == ("Q2", ("c@b.example",), b"short")
    assert sorted(p.name for p in spool.dir.iterdir()) == ["Q2.mail"]


def test_two_writers_on_one_queue_never_claim_the_same_free_file(tmp_path: Path) -> None:
    # A lab process still stopping and its successor both write the same queues.
    first, second = Spool(tmp_path / "q"), Spool(tmp_path / "q")
    for i in range(30):
        first.put("a@a.example", ["b@b.example"], b"old", f"OLD{i}")
        first.remove(f"OLD{i}")

    def write(spool: Spool, tag: str) -> None:
        for i in range(40):
            spool.put("a@a.example", ["b@b.example"], f"{tag}{i}".encode(), f"{tag}{i}")

    threads = [
        threading.Thread(target=write, args=(s, t)) for s, t in ((first, "A"), (second, "B"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    entries = {e.qid: e.data for e in Spool(tmp_path / "q").entries()}
    assert entries == {f"{t}{i}": f"{t}{i}".encode() for t in "AB" for i in range(40)}


def test_free_files_beyond_the_limit_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "q")
    count = Spool.KEEP_FREE + 10
    for i in range(count):
        spool.put("a@a.example", ["b@b.example"], b"x", f"Q{i}")
    for i in range(count):
        spool.remove(f"Q{i}")
    free = [p for p in spool.dir.iterdir() if p.name.startswith(Spool.FREE)]
    assert len(free) == Spool.KEEP_FREE
    spool.remove("Q0")  # already removed: no error
