"""One-frame mailboxes, one per camera, between the subscriptions and the inference worker.

The newest frame always wins: putting a frame while another of that camera waits replaces
it and counts a drop, so no queue can build up behind a slow network.
"""

import threading
from typing import Generic, TypeVar

Item = TypeVar('Item')


class CameraSlots(Generic[Item]):
    """One newest-frame-wins slot per camera, taken in round-robin batches; thread-safe.

    ``take_batch`` starts where the previous batch stopped, so when more cameras wait than
    one batch holds, every camera is served in turn and none starves; frames replaced
    before they were taken are counted per camera in ``dropped``.
    """

    def __init__(self, cameras: int) -> None:
        """Create ``cameras`` empty, open slots."""
        self._condition = threading.Condition()
        self._items: list[Item | None] = [None] * cameras
        self._waiting = 0
        self._next = 0
        self._closed = False
        self.received = [0] * cameras
        self.dropped = [0] * cameras

    def put(self, camera: int, item: Item) -> None:
        """Offer camera ``camera``'s newest item, replacing (a drop) any unprocessed one."""
        with self._condition:
            self.received[camera] += 1
            if self._items[camera] is None:
                self._waiting += 1
            else:
                self.dropped[camera] += 1
            self._items[camera] = item
            self._condition.notify()

    def take_batch(self, max_batch: int,
                   timeout: float | None = None) -> list[tuple[int, Item]] | None:
        """Wait for items and remove up to ``max_batch`` of them, one per camera.

        Returns:
            (camera index, item) pairs in round-robin order; [] after ``timeout`` seconds
            without an item; None once closed.

        """
        with self._condition:
            self._condition.wait_for(lambda: self._waiting or self._closed, timeout)
            if self._closed:
                return None
            batch = []
            count, start = len(self._items), self._next
            for offset in range(count):
                if len(batch) == max_batch:
                    break
                camera = (start + offset) % count
                item = self._items[camera]
                if item is not None:
                    batch.append((camera, item))
                    self._items[camera] = None
                    self._next = (camera + 1) % count
            self._waiting -= len(batch)
            return batch

    def close(self) -> None:
        """Wake every waiter; later ``take_batch`` calls return None."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
