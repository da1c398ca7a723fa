"""The queue stage: offered mail goes at once, mail another process queued is found
when the stage is told to look, and nothing is sent twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from waiting import HANG_GUARD

from app.engines.relay import ClientPool
from app.lab.stages import Stage
from app.world.spool import QueuedMail, Spool


class Worker:
    """A stage whose job counts what it sent; every sent mail and every finished run
    (one flush) sets `changed`, so a test waits on those events, not on time."""

    def __init__(self, stage: Stage, spool: Spool) -> None:
        self.stage, self.spool = stage, spool
        self.sent: Counter = Counter()
        self.runs = 0
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(stage.run(self.flush))

    async def job(self, entry: QueuedMail) -> None:
        self.sent[entry.qid] += 1
        self.spool.remove(entry.qid)
        self.changed.set()

    async def flush(self) -> None:
        await self.stage.each(self.spool, self.job)
        self.runs += 1
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(HANG_GUARD):  # a hang guard, not a guess
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def test_left_over_and_offered_mail_each_go_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "q")
    spool.put("a@a.example", ["b@b.example"], b"left by a previous run", "OLD")
    stage = Stage(ClientPool())
    entry = QueuedMail("NEW", "a@a.example", ("b@b.example",), b"just queued")
    spool.put(entry.mail_from, list(entry.rcpt_tos), entry.data, entry.qid)
    stage.offer(spool, entry)  # on disk and offered: still sent once
    worker = Worker(stage, spool)
    try:
        await worker.until(lambda: worker.sent.keys() >= {"OLD", "NEW"})
        # A later mail, found by a later listing: by the time it has gone, a second copy
        # of either earlier one (an offer kept, a file listed again) would have gone too.
        spool.put("a@a.example", ["b@b.example"], b"queued after", "LAST")
        stage.rescan()
        await worker.until(lambda: worker.sent["LAST"] > 0)
    finally:
        worker.task.cancel()
    assert worker.sent == {"OLD": 1, "NEW": 1, "LAST": 1}


async def test_mail_another_process_queued_is_found_when_asked(tmp_path: Path) -> None:
    mine, theirs = Spool(tmp_path / "q"), Spool(tmp_path / "q")  # two processes, one queue
    stage = Stage(ClientPool())
    worker = Worker(stage, mine)
    try:
        await worker.until(lambda: worker.runs >= 1)  # the start-up listing found nothing
        theirs.put("a@a.example", ["b@b.example"], b"from port 25", "P25")
        stage.rescan()
        await worker.until(lambda: worker.sent["P25"] > 0)
    finally:
        worker.task.cancel()
    assert worker.sent == {"P25": 1}
