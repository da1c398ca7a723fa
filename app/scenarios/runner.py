"""Run a scenario for real and keep what was said, so a learner can step through it.

A run builds a fresh Sandbox, lets the actors act, waits until every connection has
closed (so the servers' last lines are in), and returns the recorded events. Back
and Next move through that recording; they never run anything again.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from app.engines.tls import LabTLS
from app.events import Recorder
from app.sandbox import Sandbox
from app.scenarios.actions import ACTIONS, RunContext
from app.scenarios.model import Scenario, ScenarioError
from app.scenarios.recording import Recording
from app.world.world import WorldOptions

SETTLE_TIMEOUT = 5.0


async def _settle(world: Sandbox, held: dict[str, int] | None = None) -> None:
    """Wait until no connection is open on any listener of the world, except those a
    client keeps open on purpose (`held`, e.g. a device waiting in IMAP IDLE)."""
    held = held or {}
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while any(ep.active > held.get(name, 0) for name, ep in world.endpoints.items()):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.005)


async def run_scenario(
    scenario: Scenario, tls: LabTLS, runs_dir: Path, lang: str = "ja"
) -> Recording:
    for action in scenario.actions:
        if action.do not in ACTIONS:
            raise ScenarioError(f"{scenario.slug}: unknown action '{action.do}'")
    runs_dir.mkdir(parents=True, exist_ok=True)
    recorder = Recorder()
    world = Sandbox(
        root=Path(tempfile.mkdtemp(prefix=f"{scenario.slug}-", dir=runs_dir)),
        tls=tls,
        sink=recorder.emit,
        options=WorldOptions.from_table(scenario.world),
    )
    started = time.time()
    t0 = time.perf_counter()
    await world.start()
    try:
        run = RunContext(scenario.mail, lang, mails=scenario.mails)
        try:
            for action in scenario.actions:
                await ACTIONS[action.do](world, action.params, run)
                await _settle(world, run.held)
        finally:
            # A client still waiting in the background is ended with its world.
            for future in run.background.values():
                future.cancel()
    finally:
        await world.close()
        world.discard()
    return Recording(scenario.slug, lang, tuple(recorder.events), started, time.perf_counter() - t0)
