"""The newest-frame-wins mailbox between the subscription and the inference worker."""

import threading

from seg_node.core.frame_slot import CameraSlots, FrameSlot


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


def test_camera_slots_batch_one_newest_frame_per_camera_and_count_drops_per_camera():
    slots: CameraSlots[str] = CameraSlots(3)
    for frame in range(4):
        slots.put(0, f'a{frame}')
    slots.put(2, 'c0')
    assert slots.take_batch(8, timeout=0) == [(0, 'a3'), (2, 'c0')]
    assert (slots.received, slots.dropped) == ([4, 0, 1], [3, 0, 0])
    assert slots.take_batch(8, timeout=0.01) == []


def test_camera_slots_serve_every_camera_equally_under_overload():
    slots: CameraSlots[int] = CameraSlots(4)
    served = [0] * 4
    for frame in range(300):
        for camera in range(4):  # every camera always has a frame waiting
            slots.put(camera, frame)
        for camera, _ in slots.take_batch(3, timeout=0):
            served[camera] += 1
    assert served == [225, 225, 225, 225]
    assert slots.dropped == [74, 75, 75, 75]  # camera 0's last frame still waits
    slots.close()
    assert slots.take_batch(3) is None
