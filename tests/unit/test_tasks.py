"""Owned tasks: a stop cannot be hung by a task that ignores its cancellation."""

from __future__ import annotations

import asyncio
import logging

from hft.tasks import OwnedTasks


async def test_cancel_all_waits_for_well_behaved_tasks():
    tasks = OwnedTasks("test")
    ended = []

    async def polite() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            ended.append("polite")

    t = tasks.spawn(polite(), "polite")
    await asyncio.sleep(0)
    assert await tasks.cancel_all(timeout=5) == []
    assert t.cancelled() and ended == ["polite"] and len(tasks) == 0


async def test_a_task_swallowing_its_cancellation_is_left_behind_and_named(caplog):
    tasks = OwnedTasks("test")
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                continue  # the bug this guards against

    t = tasks.spawn(stubborn(), "stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="hft.tasks"):
        left = await tasks.cancel_all(timeout=0.1)
    assert left == [t] and not t.done()
    assert "stubborn ignored its cancellation" in caplog.text and "test_tasks.py" in caplog.text
    release.set()
    t.cancel()
    await asyncio.wait([t], timeout=5)
    assert t.done()
