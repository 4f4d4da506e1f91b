"""The managed node over real rclpy: lifecycle services and the meaning of /diagnostics."""

import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter

from conftest import wait_for
from node_harness import image_msg, Probe, send_until, start

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
# No latency budget, no input timeout: only the condition a test provokes changes the level.
QUIET = {'latency_budget_ms': 0.0, 'input_timeout_s': 0.0}


class Manager(Probe):
    """A probe that also drives /seg_node's lifecycle and records /diagnostics."""

    def __init__(self, context) -> None:
        super().__init__(context)
        self.get_state_client = self.create_client(GetState, '/seg_node/get_state')
        self.change_state_client = self.create_client(ChangeState, '/seg_node/change_state')
        self.diagnostics: list[DiagnosticStatus] = []
        self.discovered: list = []
        self.create_subscription(DiagnosticArray, '/diagnostics',
                                 lambda msg: self.diagnostics.extend(msg.status), 10)

    def _call(self, client, request):
        # Wait for discovery once: the services live as long as the node.
        if client not in self.discovered:
            assert client.wait_for_service(timeout_sec=10)
            self.discovered.append(client)
        future = client.call_async(request)
        assert wait_for(future.done, 30)
        return future.result()

    def state(self) -> str:
        return self._call(self.get_state_client, GetState.Request()).current_state.label

    def change(self, label: str) -> bool:
        request = ChangeState.Request()
        request.transition.label = label
        return self._call(self.change_state_client, request).success

    def status(self, level: int, words: str, timeout: float = 10.0,
               since: int | None = None) -> DiagnosticStatus:
        """Wait for a /diagnostics status at ``level`` whose message contains ``words``.

        Statuses from index ``since`` on count (default: from now on).
        """
        start = len(self.diagnostics) if since is None else since

        def matching():
            return [s for s in self.diagnostics[start:]
                    if s.level == level and words in s.message]
        assert wait_for(lambda: matching(), timeout), [
            (s.level, s.message) for s in self.diagnostics[-3:]]
        return matching()[-1]


@pytest.fixture
def node(ros_context, tiny_model):
    return start(ros_context, tiny_model, **QUIET)


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def silent(manager: Manager, msg, seconds: float = 1.0) -> bool:
    """Publish ``msg`` for ``seconds``; return whether no labels came back for it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        manager.camera.publish(msg)
        time.sleep(0.1)
    return manager.last('/seg_node/labels', msg.header.stamp.sec) is None


def test_deactivate_activate_cleanup_configure_over_services(ros_context, node, camvid_rgb):
    manager = ros_context.add(Manager(ros_context.context))
    manager.listen('/seg_node/labels')
    assert manager.state() == 'active'
    assert send_until(manager, '/seg_node/labels', image_msg(camvid_rgb, 60))
    assert manager.change('deactivate') and manager.state() == 'inactive'
    assert silent(manager, image_msg(camvid_rgb, 61))
    assert node.segmenter is not None and node.camera_subscriptions == [None]  # loaded, idle
    assert manager.status(OK, 'inactive')
    assert manager.change('activate') and manager.state() == 'active'
    assert send_until(manager, '/seg_node/labels', image_msg(camvid_rgb, 62))
    assert manager.change('deactivate') and manager.change('cleanup')
    assert manager.state() == 'unconfigured' and node.segmenter is None
    assert wait_for(lambda: node.count_publishers('/seg_node/labels') == 0)
    assert manager.change('configure') and manager.change('activate')
    assert send_until(manager, '/seg_node/labels', image_msg(camvid_rgb, 63))
    assert values(manager.status(OK, 'serving'))['lifecycle_state'] == 'active'


def test_without_autostart_it_waits_for_a_manager(ros_context, tiny_model, camvid_rgb):
    node = start(ros_context, tiny_model, state='unconfigured', autostart=False, **QUIET)
    manager = ros_context.add(Manager(ros_context.context))
    manager.listen('/seg_node/labels')
    status = manager.status(OK, 'unconfigured')
    assert values(status)['lifecycle_state'] == 'unconfigured' and values(status)['backend'] == ''
    assert manager.state() == 'unconfigured' and node.segmenter is None
    assert node.count_publishers('/seg_node/labels') == 0
    assert manager.change('configure') and manager.state() == 'inactive'
    assert silent(manager, image_msg(camvid_rgb, 70), 0.5)
    assert manager.change('activate')
    assert send_until(manager, '/seg_node/labels', image_msg(camvid_rgb, 71))


def test_no_input_warns_after_the_timeout(ros_context, tiny_model):
    start(ros_context, tiny_model, input_timeout_s=0.5)
    manager = ros_context.add(Manager(ros_context.context))
    status = manager.status(WARN, 'no frame on /camera/image_raw for')
    assert values(status)['frames_in'] == '0'


def serving_manager(ros_context, camvid_rgb, stamp_sec: int) -> Manager:
    """Return a Manager listening to ~/labels once a first frame came back."""
    manager = ros_context.add(Manager(ros_context.context))
    manager.listen('/seg_node/labels')
    assert send_until(manager, '/seg_node/labels', image_msg(camvid_rgb, stamp_sec))
    return manager


def test_dropped_frames_warn_then_clear(ros_context, node, camvid_rgb, monkeypatch):
    manager = serving_manager(ros_context, camvid_rgb, 80)
    segment_batch = node.segmenter.segment_batch

    def slow_segment_batch(*args, **kwargs):
        time.sleep(0.3)
        return segment_batch(*args, **kwargs)
    monkeypatch.setattr(node.segmenter, 'segment_batch', slow_segment_batch)
    since = len(manager.diagnostics)
    for index in range(15):  # 20 Hz into a ~3 Hz worker
        manager.camera.publish(image_msg(camvid_rgb, 81 + index))
        time.sleep(0.05)
    status = manager.status(WARN, 'dropped (camera faster than inference)', since=since)
    assert int(values(status)['frames_dropped']) >= 1
    monkeypatch.undo()
    assert manager.status(OK, 'serving', timeout=5)  # the next quiet period clears it


def test_latency_over_budget_warns(ros_context, node, camvid_rgb):
    manager = serving_manager(ros_context, camvid_rgb, 90)
    assert manager.status(OK, 'serving')
    node.set_parameters([Parameter('latency_budget_ms', value=0.001)])
    status = manager.status(WARN, 'over the 0.001 ms budget')
    assert float(values(status)['latency_p50_ms']) > 0.001
    assert values(status)['latency_budget_ms'] == '0.001'


def test_backend_failure_is_an_error(ros_context, node, camvid_rgb, monkeypatch):
    manager = serving_manager(ros_context, camvid_rgb, 100)

    def failing_segment_batch(*args, **kwargs):
        raise RuntimeError('CUDA error: an illegal memory access was encountered')
    monkeypatch.setattr(node.segmenter, 'segment_batch', failing_segment_batch)
    assert silent(manager, image_msg(camvid_rgb, 101), 0.5)
    status = manager.status(ERROR, 'inference failing')
    assert 'RuntimeError: CUDA error' in status.message
    assert int(values(status)['inference_failures']) >= 1
    monkeypatch.undo()
    assert send_until(manager, '/seg_node/labels', image_msg(camvid_rgb, 102))
    assert manager.status(OK, 'serving')
