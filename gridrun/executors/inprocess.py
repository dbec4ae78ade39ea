"""Sequential trials in the calling process: no start-up cost at all, and the easiest to debug."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Executor


class _Done:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class InProcessExecutor(Executor):
    name = "inprocess"

    def __init__(self, jobs: int = 1) -> None:
        super().__init__(1)

    def submit(self, fn: Callable[[Any], Any], task: Any) -> _Done:
        try:
            return _Done(fn(task))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - the outcome of one task, reported to the caller
            return _Done(exc)

    def channel(self, handler: Callable[[Any], Any]) -> Any:
        from .channel import DirectChannel

        return DirectChannel(handler)

    def wait(self, handles: list[Any]) -> list[Any]:
        return handles

    def outcome(self, handle: _Done) -> Any:
        return handle.value
