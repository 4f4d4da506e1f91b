"""The per-camera newest-frame-wins mailboxes between the subscriptions and the worker."""

import threading

from seg_node.core.frame_slot import CameraSlots


def test_close_wakes_a_waiting_worker():
    slots: CameraSlots[int] = CameraSlots(2)
    taken = []
    worker = threading.Thread(target=lambda: taken.append(slots.take_batch(4)))
    worker.start()
    slots.close()
    worker.join(timeout=2)
    assert not worker.is_alive() and taken == [None]
    slots.put(1, 7)
    assert slots.take_batch(4, timeout=0) is None


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
