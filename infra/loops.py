"""One object per running event loop, made on first use.

An asyncio network client is bound to the event loop that first uses it, and one process may run several
loops (the chat worker runs one per thread), so clients are kept per loop. The loops are weak keys: a closed
loop that is garbage-collected takes its clients with it. A forked child forgets them all (their sockets
belong to the parent) and makes its own on first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable


class PerLoop[T]:
    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self.forget_all()
        os.register_at_fork(after_in_child=self.forget_all)

    def forget_all(self) -> None:
        """Drop every loop's object (without closing it: it may belong to another thread's loop)."""
        self._items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()  # a new lock: another thread may have held the old one at the fork

    def get(self) -> T:
        """The running loop's object (made now if this loop has none). Call from inside the loop."""
        loop = asyncio.get_running_loop()
        item = self._items.get(loop)
        if item is None:
            with self._lock:
                item = self._items.get(loop)
                if item is None:
                    item = self._items[loop] = self._factory()
        return item

    def pop(self) -> T | None:
        """Forget the running loop's object and return it (None if it had none), e.g. to close it."""
        with self._lock:
            return self._items.pop(asyncio.get_running_loop(), None)

    def __len__(self) -> int:
        return len(self._items)
