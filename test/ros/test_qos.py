"""Input reliability choice and the profiles it produces."""

from rclpy.qos import HistoryPolicy, ReliabilityPolicy

from seg_node.ros.qos import choose_reliability, input_qos, output_qos

RELIABLE, BEST_EFFORT = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT


def test_reliable_only_when_every_publisher_is_reliable():
    assert choose_reliability([RELIABLE, RELIABLE]) == 'reliable'
    assert choose_reliability([RELIABLE, BEST_EFFORT]) == 'best_effort'
    assert choose_reliability([BEST_EFFORT]) == 'best_effort'
    assert choose_reliability([]) == 'best_effort'


def test_profiles():
    profile = input_qos('reliable', 3)
    assert (profile.reliability, profile.depth, profile.history) == (
        RELIABLE, 3, HistoryPolicy.KEEP_LAST)
    assert input_qos('best_effort', 1).reliability == BEST_EFFORT
    assert output_qos(1).reliability == RELIABLE and output_qos(1).depth == 1
