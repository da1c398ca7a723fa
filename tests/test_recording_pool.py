"""The recording pool: shared recordings ready before they are asked for, runs in a worker.

Everything here is real: scenarios run in a spawned worker process, pages come from
the real app. Waits are on the pool's own conditions (`wait_ready`), never on time.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.scenarios.recording import Recording
from app.web.app import create_app
from app.web.record_worker import RecordWorker
from app.web.recordings import RecordingPool

KEY = ("basic-pop3", "ja")
ROOT = Path(__file__).resolve().parent.parent


def message_id(recording: Recording) -> str:
    for event in recording.events:
        found = re.search(r"(?im)^message-id:\s*(\S+)", event.text)
        if found:
            return found.group(1)
    raise AssertionError("no Message-ID in the recording")


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[RecordWorker]:
    w = RecordWorker(tmp_path / "tls", tmp_path / "runs")
    yield w
    await w.close()


async def test_runs_happen_in_another_process_and_learners_share_one_recording(
    worker: RecordWorker,
) -> None:
    pool = RecordingPool(worker, [KEY], per_key=1)
    first = await pool.get(*KEY)  # empty pool: this one waits for the run
    second = await pool.get(*KEY)
    assert first.pid != os.getpid() and first.slug == "basic-pop3" and len(first) > 40
    assert first.events[0].text.startswith("220 mail.a.example")  # a real greeting
    assert second is first  # the same object: a reference each, not a copy
    assert pool.runs == 1 and pool.pooled_runs[KEY] == 1


async def test_the_pool_fills_in_the_background_and_refills_after_use(
    worker: RecordWorker,
) -> None:
    pool = RecordingPool(worker, [KEY], per_key=1, max_uses=2)
    pool.start()
    try:
        await pool.wait_ready(*KEY)
        assert pool.pooled_runs[KEY] == 1
        used = await pool.get(*KEY)
        assert await pool.get(*KEY) is used  # used up now (max_uses=2)
        assert pool.fresh_count(KEY) == 0
        # While its replacement is recorded the used-up one keeps serving: nobody waits.
        await pool.wait_ready(*KEY)
        replacement = await pool.get(*KEY)
        assert replacement is not used and pool.pooled_runs[KEY] == 2
        assert message_id(replacement) != message_id(used)
        assert pool.stats()["held"] == 1  # the pool let go of the old one
    finally:
        await pool.close()


async def test_a_learner_who_leaves_does_not_cancel_the_run_others_wait_for(
    worker: RecordWorker,
) -> None:
    pool = RecordingPool(worker, [KEY], per_key=1)
    leaver = asyncio.create_task(pool.get(*KEY))
    await asyncio.sleep(0)  # one turn of the loop: the leaver has asked for the run
    stayer = asyncio.create_task(pool.get(*KEY))
    await asyncio.sleep(0)
    leaver.cancel()  # the first learner closes the tab
    recording = await stayer
    assert leaver.cancelled() and pool.waits == 2
    assert pool.pooled_runs[KEY] == 1 and await pool.get(*KEY) is recording


async def test_fresh_is_a_private_new_run(worker: RecordWorker) -> None:
    pool = RecordingPool(worker, [KEY], per_key=1)
    shared = await pool.get(*KEY)
    private = await pool.fresh(*KEY)
    assert private is not shared and message_id(private) != message_id(shared)
    assert await pool.get(*KEY) is shared  # the private run never enters the pool
    assert pool.pooled_runs[KEY] == 1 and pool.runs == 2


async def test_an_idle_worker_is_let_go_and_started_again_when_needed(tmp_path: Path) -> None:
    from app.scenarios import worker as in_worker

    w = RecordWorker(tmp_path / "tls", tmp_path / "runs", idle_stop=0.05)
    try:
        first = await w.call(0, in_worker.pid)
        await w.stopped_idle.wait()  # set when the idle timer let the process go
        assert not w.running
        second = await w.call(0, in_worker.pid)
        assert second != first and w.starts == 2 and w.running
    finally:
        await w.close()


def _session_and_stamp(html: str) -> tuple[str, str]:
    session = re.search(r'data-session="([^"]+)"', html).group(1)
    stamp = re.search(r'data-recorded="([^"]+)"', html).group(1)
    return session, stamp


def test_pages_share_the_ready_recording_and_record_afresh_is_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, lab=False, record_pool=1)
    with TestClient(create_app(settings)) as client:
        flow = client.app.state.flow  # type: ignore[attr-defined]
        pool: RecordingPool = flow.recordings
        client.portal.call(pool.wait_ready, *KEY)  # basic-pop3 in Japanese is filled first
        assert pool.pooled_runs[KEY] == 1
        one, two = client.get("/flow/basic-pop3"), client.get("/flow/basic-pop3")
        assert one.status_code == two.status_code == 200
        (s1, stamp1), (s2, stamp2) = _session_and_stamp(one.text), _session_and_stamp(two.text)
        # No run for these page loads: both learners got the pool's recording.
        assert pool.pooled_runs[KEY] == 1
        assert s1 != s2 and stamp1 == stamp2
        shared = flow.sessions.get(s1).recording
        assert flow.sessions.get(s2).recording is shared and shared.pid != os.getpid()
        assert "本物のサーバで記録" in one.text and "新しく記録し直す" in one.text

        r = client.post("/flow/basic-pop3/afresh?lang=ja", follow_redirects=False)
        assert r.status_code == 303
        page = client.get(r.headers["location"])
        s3, _ = _session_and_stamp(page.text)
        private = flow.sessions.get(s3).recording
        assert private is not shared and message_id(private) != message_id(shared)
        assert "この記録はあなた専用です" in page.text
        assert pool.pooled_runs[KEY] == 1  # the private run did not go into the pool


def test_an_empty_pool_makes_the_first_page_wait_then_keeps_that_run(tmp_path: Path) -> None:
    # record_pool=0: nothing is recorded ahead, as right after a cold start.
    settings = Settings(data_dir=tmp_path, lab=False, record_pool=0)
    with TestClient(create_app(settings)) as client:
        pool: RecordingPool = client.app.state.flow.recordings  # type: ignore[attr-defined]
        assert pool.runs == 0
        first = client.get("/flow/basic-pop3?step=3")
        assert first.status_code == 200 and first.text.count('<li class="ev') == 3
        assert pool.pooled_runs[KEY] == 1
        second = client.get("/flow/basic-pop3")
        assert _session_and_stamp(second.text)[1] == _session_and_stamp(first.text)[1]
        assert pool.pooled_runs[KEY] == 1


WEB_STAND_IN = """
import asyncio, sys
from pathlib import Path
from app.scenarios import worker
from app.web.record_worker import RecordWorker

async def main():
    w = RecordWorker(Path(sys.argv[1]) / "tls", Path(sys.argv[1]) / "runs")
    print(await w.call(0, worker.pid), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_the_worker_exits_when_the_web_process_is_killed(tmp_path: Path) -> None:
    web = subprocess.Popen(
        [sys.executable, "-c", WEB_STAND_IN, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        worker_pid = int(web.stdout.readline())  # type: ignore[union-attr]
        assert worker_pid != web.pid
        exited = os.pidfd_open(worker_pid)  # readable once that process has ended
    finally:
        web.kill()  # no shutdown, no cleanup: as after a crash or `kill -9`
        web.wait()
    try:
        readable, _, _ = select.select([exited], [], [], 60)  # a failsafe, not a pace
        assert readable, "the worker outlived the web process"
    finally:
        os.close(exited)


def test_the_worker_is_the_web_process_only_child_process(tmp_path: Path) -> None:
    """No multiprocessing resource tracker (13 MB RSS, guarding shared memory this app
    never uses) beside the worker: the web's only child is the worker itself."""
    web = subprocess.Popen(
        [sys.executable, "-c", WEB_STAND_IN, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        worker_pid = int(web.stdout.readline())  # type: ignore[union-attr]
        children = Path(f"/proc/{web.pid}/task/{web.pid}/children").read_text().split()
        assert children == [str(worker_pid)]
        cmdline = Path(f"/proc/{worker_pid}/cmdline").read_bytes().split(b"\0")
        assert b"app.scenarios.worker" in cmdline
    finally:
        web.kill()
        web.wait()


def test_worker_and_pool_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import ConfigError

    monkeypatch.setenv("MAILFLOW_RECORD_WORKERS", "2")
    monkeypatch.setenv("MAILFLOW_RECORD_POOL", "0")
    monkeypatch.setenv("MAILFLOW_RECORD_IDLE", "0")
    settings = Settings.from_env()
    assert (settings.record_workers, settings.record_pool, settings.record_idle_stop) == (2, 0, 0)
    for bad, name in (({"record_workers": 0}, "MAILFLOW_RECORD_WORKERS"),
                      ({"record_pool": -1}, "MAILFLOW_RECORD_POOL")):  # fmt: skip
        with pytest.raises(ConfigError, match=name):
            Settings(**bad).check()  # type: ignore[arg-type]


async def test_an_error_that_does_not_unpickle_reaches_the_caller_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker pickles PickyError fine; the web cannot rebuild it (its __init__ wants
    two arguments, its args hold one). The caller gets a RuntimeError saying so, not a
    TypeError out of pickle."""
    import worker_jobs

    tests_dir = str(Path(worker_jobs.__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]))
    w = RecordWorker(tmp_path / "tls", tmp_path / "runs")
    try:
        with pytest.raises(RuntimeError, match="does not unpickle"):
            await w.call(0, worker_jobs.fail_picky)
        assert w.running  # the worker lives on for the next job
    finally:
        await w.close()


HANGING_WEB = """
import asyncio, sys
from pathlib import Path
import worker_jobs
from app.scenarios import worker
from app.web.record_worker import RecordWorker

async def main():
    w = RecordWorker(Path(sys.argv[1]) / "tls", Path(sys.argv[1]) / "runs")
    print(await w.call(0, worker.pid), flush=True)
    await w.call(0, worker_jobs.hang, sys.argv[2])  # never returns

asyncio.run(main())
"""


def test_a_worker_in_a_hanging_job_exits_when_the_web_process_is_killed(
    tmp_path: Path,
) -> None:
    """Stdin EOF is read only between jobs; a job that hangs when the web is killed must
    not leave the worker behind as an orphan."""
    import worker_jobs
    from waiting import wait_until

    tests_dir = str(Path(worker_jobs.__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests_dir, str(ROOT)])}
    started = tmp_path / "hang-started"
    web = subprocess.Popen(
        [sys.executable, "-c", HANGING_WEB, str(tmp_path), str(started)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        worker_pid = int(web.stdout.readline())  # type: ignore[union-attr]
        exited = os.pidfd_open(worker_pid)  # readable once that process has ended
        wait_until(started.exists, "the worker to begin the hanging job")
    finally:
        web.kill()  # `kill -9`: no shutdown, the worker's stdin is not read again
        web.wait()
    try:
        wait_until(
            lambda: select.select([exited], [], [], 0)[0], "the worker to end with the web"
        )
    finally:
        if not select.select([exited], [], [], 0)[0]:
            os.kill(worker_pid, signal.SIGKILL)  # a failing run leaves no orphan behind
        os.close(exited)


async def test_a_worker_that_loaded_cryptography_for_s_mime_is_not_kept(tmp_path: Path) -> None:
    """S/MIME imports `cryptography` (about 20 MiB the worker would keep for the rest of
    its life): the run is answered, that worker exits, the next job gets a new one. A
    scenario without it leaves the worker running."""
    from app.engines.tls import LabTLS
    from app.scenarios import worker as in_worker

    LabTLS.load(tmp_path / "tls")  # made here, as the web's start makes them
    w = RecordWorker(tmp_path / "tls", tmp_path / "runs")
    try:
        plain = await w.call(0, in_worker.record, *KEY)
        assert w.running and await w.call(0, in_worker.pid) == plain.pid
        sealed = await w.call(0, in_worker.record, "smime", "en")
        assert sealed.pid == plain.pid
        assert {e.key for e in sealed.events if e.protocol == "S/MIME"} >= {"smime.decrypt"}
        assert not w.running  # let go at once, not after an idle time
        after = await w.call(0, in_worker.pid)
        assert after != sealed.pid and w.starts == 2
        with pytest.raises(ProcessLookupError):  # gone before its successor started
            os.kill(sealed.pid, 0)
    finally:
        await w.close()


async def test_a_job_marked_alone_starts_in_a_worker_that_ran_nothing_else(
    tmp_path: Path,
) -> None:
    """A worker that has run other scenarios carries their libraries; S/MIME's run in it
    was the app's largest moment. A job marked `alone` lets such a worker go first (gone
    before the new one starts) and runs in a new one; a worker that ran nothing yet is
    used as it is."""
    from app.scenarios import worker as in_worker

    w = RecordWorker(tmp_path / "tls", tmp_path / "runs")
    try:
        used = await w.call(0, in_worker.pid)
        assert await w.call(0, in_worker.pid) == used  # unmarked jobs share it
        alone = await w.call(0, in_worker.pid, alone=True)
        assert alone != used and w.starts == 2
        with pytest.raises(ProcessLookupError):
            os.kill(used, 0)
        await w.close()
        w = RecordWorker(tmp_path / "tls", tmp_path / "runs")
        first = await w.call(0, in_worker.pid, alone=True)  # a new worker: nothing to let go
        assert await w.call(0, in_worker.pid) == first and w.starts == 1
    finally:
        await w.close()


async def test_the_pool_runs_the_s_mime_scenario_alone(tmp_path: Path) -> None:
    """The web's pool marks the scenarios that use S/MIME, and only those."""
    from app.engines.tls import LabTLS
    from app.scenarios.model import load_all

    LabTLS.load(tmp_path / "tls")
    scenarios = load_all()
    assert [s for s, sc in scenarios.items() if sc.uses_smime] == ["smime"]
    w = RecordWorker(tmp_path / "tls", tmp_path / "runs")
    pool = RecordingPool(w, [KEY, ("smime", "ja")], per_key=1, alone=["smime"])
    try:
        plain = await pool.fresh(*KEY)
        sealed = await pool.fresh("smime", "ja")
        assert sealed.pid != plain.pid and w.starts == 2
    finally:
        await pool.close()
        await w.close()


async def test_a_retiring_worker_is_let_go_even_when_its_answer_does_not_unpickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """"Retire" travels outside the pickled answer: the web lets the worker go even when
    it cannot rebuild that answer, and the next job runs in a new worker."""
    import worker_jobs

    from app.scenarios import worker as in_worker

    tests_dir = str(Path(worker_jobs.__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]))
    w = RecordWorker(tmp_path / "tls", tmp_path / "runs")
    try:
        first = await w.call(0, in_worker.pid)
        with pytest.raises(RuntimeError, match="does not unpickle"):
            await w.call(0, worker_jobs.fail_picky_after_loading_cryptography)
        assert not w.running
        assert await w.call(0, in_worker.pid) != first and w.starts == 2
    finally:
        await w.close()
