"""Group commit: durable writes from an event loop, batched by one thread, on real files."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from app.world.durable import GroupCommit, write_durably
from app.world.mailstore import MailStore
from app.world.spool import Spool


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


async def test_unlink_removes_and_a_missing_file_is_no_error(tmp_path: Path) -> None:
    commits = GroupCommit()
    target = tmp_path / "entry"
    write_durably(tmp_path / ".entry.tmp", target, b"x")
    await commits.unlink(target)
    assert not target.exists()
    await commits.unlink(target)  # already gone: fine


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
    await spool.put_async("alice@a.example", ["bob@b.example"], b"Subject: hi\r\n\r\nx\r\n", "Q1")
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
