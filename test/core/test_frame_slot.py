"""The newest-frame-wins mailbox between the subscription and the inference worker."""

import threading

from seg_node.core.frame_slot import FrameSlot


def test_newest_frame_wins_and_replaced_frames_are_counted():
    slot: FrameSlot[int] = FrameSlot()
    for frame in range(5):
        slot.put(frame)
    assert slot.take(timeout=0) == 4
    assert (slot.received, slot.dropped) == (5, 4)
    assert slot.take(timeout=0.01) is None


def test_close_wakes_a_waiting_worker():
    slot: FrameSlot[int] = FrameSlot()
    taken = []
    worker = threading.Thread(target=lambda: taken.append(slot.take()))
    worker.start()
    slot.close()
    worker.join(timeout=2)
    assert not worker.is_alive() and taken == [None]
    slot.put(1)
    assert slot.take(timeout=0) is None
