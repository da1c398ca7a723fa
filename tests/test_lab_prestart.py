"""The lab process `python -m app` starts before it imports the web stack
(`control.prestart()`): the web's first `LabProcess.start()` adopts that very process,
configures it over its stdin, and restarts it like any other when it dies."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from test_lab_process import free_offset

from app.engines.tls import LabTLS
from app.events import Event
from app.lab import control
from app.lab.control import LabProcess
from app.topology import lab_ports
from app.world.accounts import Accounts


async def test_the_prestarted_lab_process_is_adopted_serves_and_is_restarted(
    tmp_path: Path, lab_tls: LabTLS
) -> None:
    control.prestart()
    assert control._prestarted is not None
    early = control._prestarted.pid
    offset, _ = free_offset()
    events: list[Event] = []
    lab = LabProcess(
        tmp_path / "lab",
        lab_tls,
        Accounts(),
        events.append,
        host="127.0.0.1",
        ports=lab_ports(offset),
    )
    try:
        await lab.start()
        assert lab.pid == early and control._prestarted is None
        assert lab.ready.is_set() and lab.ports == lab_ports(offset)
        probe = await lab.request("probe")
        assert set(probe) == {"submission", "mx-b", "lmtp-b", "pop3-b", "imap-b"}
        assert set(probe.values()) == {"ok"}

        reader = lab._reader
        assert reader is not None
        os.kill(early, signal.SIGKILL)  # the adopted process dies: a new one replaces it
        await reader  # it has seen the end of the dead process's output
        assert lab._restarter is not None
        await lab._restarter  # done once the new process serves
        assert lab.pid != early and lab.ready.is_set() and lab.runs == 2
        assert await lab.request("probe") == probe
    finally:
        await lab.close()
    with pytest.raises(ProcessLookupError):
        os.kill(early, 0)


async def test_a_prestarted_lab_process_that_died_is_reaped_and_replaced(
    tmp_path: Path, lab_tls: LabTLS
) -> None:
    from waiting import wait_until

    control.prestart()
    dead = control._prestarted
    assert dead is not None
    dead.kill()
    wait_until(lambda: dead.poll() is not None, "the pre-started process to die")
    offset, _ = free_offset()
    lab = LabProcess(
        tmp_path / "lab",
        lab_tls,
        Accounts(),
        lambda event: None,
        host="127.0.0.1",
        ports=lab_ports(offset),
    )
    try:
        await lab.start()
        assert control._prestarted is None  # no dead Popen kept for the life of the web
        assert dead.stdin is not None and dead.stdin.closed
        assert dead.stdout is not None and dead.stdout.closed
        assert lab.pid != dead.pid and lab.ready.is_set()
    finally:
        await lab.close()
