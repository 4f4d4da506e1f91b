"""Rolling per-frame cost of each serving stage, shared by the Segmenter and the node.

Stages: ``receive`` (CDR read and pixel conversion), ``resize`` (to the inference size),
``backend`` (the network call), ``resize_back`` (outputs to the camera size) and
``publish``. A batched stage's time is shared by the frames of its batch.
"""

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ('receive', 'resize', 'backend', 'resize_back', 'publish')


class StageTimes:
    """Keeps the last ``window`` timings of each stage."""

    def __init__(self, window: int = 300) -> None:
        """Start with no timings."""
        self._samples: dict[str, deque[tuple[float, int]]] = {
            stage: deque(maxlen=window) for stage in STAGES}

    def add(self, stage: str, seconds: float, frames: int = 1) -> None:
        """Record that ``stage`` took ``seconds`` for ``frames`` frames."""
        self._samples[stage].append((seconds, frames))

    @contextmanager
    def time(self, stage: str, frames: int = 1) -> Iterator[None]:
        """Time the body of a ``with`` block as ``stage`` for ``frames`` frames."""
        started = time.perf_counter()
        yield
        self.add(stage, time.perf_counter() - started, frames)

    def per_frame_ms(self) -> dict[str, float]:
        """Return each stage's mean milliseconds per frame over the window (nan: none yet)."""
        means = {}
        for stage, samples in self._samples.items():
            recent = list(samples)
            frames = sum(count for _, count in recent)
            means[stage] = (round(1e3 * sum(s for s, _ in recent) / frames, 4) if frames
                            else float('nan'))
        return means


def diagnostic_key(stage: str) -> str:
    """Return the /diagnostics key under which the node reports ``stage``'s mean cost."""
    return f'stage_{stage}_ms_per_frame'
