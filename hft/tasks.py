"""Owned background tasks: nothing is fire-and-forget.

Every task is kept until it ends; a failure is logged with its traceback; the
owner cancels and awaits whatever is left when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any

log = logging.getLogger(__name__)


class OwnedTasks:
    """The set of tasks one component (engine, adapter, server) started."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: task %s failed", self.owner, task.get_name(), exc_info=task.exception())

    def __iter__(self) -> Iterator[asyncio.Task]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self, timeout: float = 10.0) -> list[asyncio.Task]:
        """Cancel every task still running and wait up to ``timeout`` s for them to finish.

        Returns the tasks that did not finish in time (each logged with where it is stuck), so a
        task that swallows its cancellation cannot hang a shutdown.
        """
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return []
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            where = "; ".join(f"{f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}" for f in task.get_stack())
            log.error("%s: task %s ignored its cancellation for %.0fs, left behind (at %s)",
                      self.owner, task.get_name(), timeout, where or "?")
        return list(pending)
