"""The queue stage: offered mail goes at once, mail another process queued is found
when the stage is told to look, and nothing is sent twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from app.engines.relay import ClientPool
from app.lab.stages import Stage
from app.world.spool import QueuedMail, Spool


async def _run_until(stage: Stage, spool: Spool, sent: Counter, count: int) -> None:
    async def job(entry: QueuedMail) -> None:
        sent[entry.qid] += 1
        spool.remove(entry.qid)

    async def flush() -> None:
        await stage.each(spool, job)

    worker = asyncio.create_task(stage.run(flush))
    try:
        async with asyncio.timeout(5):
            while sum(sent.values()) < count:
                await asyncio.sleep(0.01)
    finally:
        worker.cancel()


async def test_left_over_and_offered_mail_each_go_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "q")
    spool.put("a@a.example", ["b@b.example"], b"left by a previous run", "OLD")
    stage = Stage(ClientPool())
    entry = QueuedMail("NEW", "a@a.example", ("b@b.example",), b"just queued")
    spool.put(entry.mail_from, list(entry.rcpt_tos), entry.data, entry.qid)
    stage.offer(spool, entry)  # on disk and offered: still sent once
    sent: Counter = Counter()
    await _run_until(stage, spool, sent, 2)
    await asyncio.sleep(0.05)
    assert sent == {"OLD": 1, "NEW": 1}


async def test_mail_another_process_queued_is_found_when_asked(tmp_path: Path) -> None:
    mine, theirs = Spool(tmp_path / "q"), Spool(tmp_path / "q")  # two processes, one queue
    stage = Stage(ClientPool())
    sent: Counter = Counter()
    first = asyncio.create_task(_run_until(stage, mine, sent, 1))
    await asyncio.sleep(0.05)  # the start-up listing found nothing
    theirs.put("a@a.example", ["b@b.example"], b"from port 25", "P25")
    stage.rescan()
    await first
    assert sent == {"P25": 1}
