"""A one-frame mailbox between the subscription callback and the inference worker.

The newest frame always wins: putting a frame while another waits replaces it and counts a
drop, so no queue can build up behind a slow network.
"""

import threading
from typing import Generic, TypeVar

Item = TypeVar('Item')


class FrameSlot(Generic[Item]):
    """Holds at most one pending item; thread-safe."""

    def __init__(self) -> None:
        """Create an empty, open slot."""
        self._condition = threading.Condition()
        self._item: Item | None = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: Item) -> None:
        """Offer the newest item, replacing (and counting as dropped) any unprocessed one."""
        with self._condition:
            self.received += 1
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._condition.notify()

    def take(self, timeout: float | None = None) -> Item | None:
        """Wait for an item and remove it; None once closed (or after ``timeout`` seconds)."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        """Wake every waiter; later ``take`` calls return None."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
