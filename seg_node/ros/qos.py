"""QoS for the node's topics: adaptive input reliability and reliable outputs."""

from collections.abc import Iterable

from rclpy.qos import (HistoryPolicy, QoSProfile, ReliabilityPolicy)

RELIABILITY_CHOICES = ('auto', 'reliable', 'best_effort')


def choose_reliability(publisher_reliabilities: Iterable[ReliabilityPolicy]) -> str:
    """Pick the input reliability for the publishers currently on the image topic.

    Reliable only when there is at least one publisher and every one is reliable (a reliable
    subscription never connects to a best-effort camera; a best-effort one connects to all
    but may lose large frames of a reliable camera).

    Returns:
        'reliable' or 'best_effort'.

    """
    reliabilities = list(publisher_reliabilities)
    if reliabilities and all(r == ReliabilityPolicy.RELIABLE for r in reliabilities):
        return 'reliable'
    return 'best_effort'


def input_qos(reliability: str, depth: int) -> QoSProfile:
    """Return the camera subscription profile: keep-last ``depth``, 'reliable'/'best_effort'."""
    policy = (ReliabilityPolicy.RELIABLE if reliability == 'reliable'
              else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy)


def output_qos(depth: int) -> QoSProfile:
    """Return the output profile: reliable keep-last ``depth`` (RViz and best effort match)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE)
