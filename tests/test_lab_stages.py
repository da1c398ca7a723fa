"""The queue stage: offered mail goes at once, mail another process queued is found
when the stage is told to look, and nothing is sent twice."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from loop_watch import stop_watching, watch_loop
from waiting import HANG_GUARD, wait_until_async

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
        stage.rescan()  # as LabWorld does at start: list what a previous run left, now
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


async def test_a_listing_of_the_queue_touches_no_file_on_the_loop(tmp_path: Path) -> None:
    """The retry timer lists and reads a deferred queue, which may hold thousands of
    mails: that is disk work, done in a thread while the loop serves every listener."""
    spool = Spool(tmp_path / "q")
    for i in range(50):
        spool.put("a@a.example", ["b@b.example"], b"deferred earlier", f"Q{i}")
    stage = Stage(ClientPool())
    sent: Counter = Counter()
    all_sent = asyncio.Event()

    async def job(entry: QueuedMail) -> None:  # no disk work of its own
        sent[entry.qid] += 1
        if len(sent) == 50:
            all_sent.set()

    watch_loop()
    try:
        stage.rescan()  # as LabWorld does at start
        task = asyncio.create_task(stage.run(lambda: stage.each(spool, job)))
        async with asyncio.timeout(HANG_GUARD):  # a hang guard, not a guess
            await all_sent.wait()
    finally:
        on_loop = stop_watching()
        task.cancel()
    assert on_loop == [] and set(sent.values()) == {1}


class HeldListing(Spool):
    """A queue whose listing waits until the test lets it go (in the scan's thread)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.listing, self.go = threading.Event(), threading.Event()

    def qids(self) -> list[str]:
        self.listing.set()
        self.go.wait()
        return super().qids()


async def test_mail_offered_while_the_queue_is_listed_goes_once(tmp_path: Path) -> None:
    spool = HeldListing(tmp_path / "q")
    spool.put("a@a.example", ["b@b.example"], b"left by a previous run", "OLD")
    stage = Stage(ClientPool())
    worker = Worker(stage, spool)
    try:
        await wait_until_async(spool.listing.is_set, "the start-up listing")
        # Queued and offered while the listing runs: the listing may find its file too.
        entry = QueuedMail("NEW", "a@a.example", ("b@b.example",), b"just queued")
        spool.put(entry.mail_from, list(entry.rcpt_tos), entry.data, entry.qid)
        stage.offer(spool, entry)
        spool.go.set()
        await worker.until(lambda: worker.sent.keys() >= {"OLD", "NEW"})
        # A later run (a later listing): by the time LAST has gone, a kept offer of NEW
        # would have gone a second time.
        spool.put("a@a.example", ["b@b.example"], b"queued after", "LAST")
        stage.rescan()
        await worker.until(lambda: worker.sent["LAST"] > 0)
    finally:
        spool.go.set()
        worker.task.cancel()
    assert worker.sent == {"OLD": 1, "NEW": 1, "LAST": 1}
