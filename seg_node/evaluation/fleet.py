"""eval-fleet: eval-bag over many bags on Ray workers, summed into one score.

Each worker is a Ray actor that loads the model once (load_segmenter) and scores whole bags
with evaluate_bag, the function eval-bag runs: a bag's confusion matrix here is eval-bag's on
that bag, and the fleet's is their sum. The driver hands the next bag to whichever worker is
free, draws one progress bar over the frames of all bags, keeps a bag's failure (unreadable,
missing topic, damaged) as that bag's result, and saves the JSON as bags finish so that a
second run with the same output scores only what is missing. Ray is imported only by the
functions that start or use it.
"""

import hashlib
import json
import logging
import os
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from seg_node.core.classes import classes_beside, ClassList, load_classes
from seg_node.core.errors import ConfigError, ModelLoadError, SegNodeError
from seg_node.core.image_codec import DEBAYER_METHODS
from seg_node.core.pipeline import check_inference_size, load_segmenter
from seg_node.evaluation.bags import (camera_frame_count, evaluate_bag, FRAME_COUNTS,
                                      read_frames, report)
from seg_node.evaluation.metrics import ConfusionMatrix

_LOG = logging.getLogger(__name__)
_SAVE_EVERY_S = 10.0  # The JSON is rewritten at most this often while bags finish.
_READY_TIMEOUT_S = 600.0  # Workers that cannot start by then do not fit the cluster.
_POLL_S = 0.25  # Progress bar refresh while waiting for bags.
# Worst frames closer than this to a worse one of the same bag show the same scene: left out.
SAME_SCENE_NS = 2_000_000_000


@dataclass(frozen=True)
class FleetSettings:
    """What every worker loads and reads: eval-bag's model and topic options.

    Attributes:
        image_topic: camera topic (sensor_msgs/Image or CompressedImage).
        label_topic: ground-truth topic (mono8 Image or PNG CompressedImage).
        model: ONNX model of the seg_node contract, readable by the driver and the workers.
        classes: class YAML; None: classes.yaml beside the model, else the bundled one.
        backend: 'auto' or a backend name (see create_backend).
        inference_size: (H, W) the network sees; None: the model's training size.
        debayer: demosaicing of Bayer frames (image_codec.DEBAYER_METHODS).

    """

    image_topic: str
    label_topic: str
    model: Path
    classes: Path | None = None
    backend: str = 'auto'
    inference_size: tuple[int, int] | None = None
    debayer: str = DEBAYER_METHODS[0]

    def resume_key(self) -> dict[str, Any]:
        """Return the settings (besides the model) a saved bag result must share to be kept."""
        return {'image_topic': self.image_topic, 'label_topic': self.label_topic,
                'inference_size': list(self.inference_size) if self.inference_size else None,
                'debayer': self.debayer}


@dataclass
class WorstFrame:
    """A badly scored frame, read again from its bag for the report.

    Attributes:
        bag: the bag's path as given.
        stamp: header stamp, nanoseconds.
        miou: mIoU of this frame alone.
        rgb: (H, W, 3) uint8 camera frame.
        truth: (H, W) uint8 ground-truth class ids (ids >= K are void).
        prediction: (H, W) uint8 predicted class ids.

    """

    bag: str
    stamp: int
    miou: float
    rgb: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray


@dataclass
class FleetResult:
    """What eval-fleet measured.

    Attributes:
        text: the printed report (class table, counts, bags, throughput, failures).
        payload: the JSON (eval-bag's fields for the fleet, ``bags``, ``run``).
        worst_frames: the lowest-mIoU frames, worst first (empty unless asked for).
        classes: the model's class list.

    """

    text: str
    payload: dict
    worst_frames: list[WorstFrame]
    classes: ClassList


def model_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a model file (what a saved bag result was scored with).

    Raises:
        ModelLoadError: the file cannot be read.

    """
    digest = hashlib.sha256()
    try:
        with open(path, 'rb') as stream:
            for block in iter(lambda: stream.read(1 << 20), b''):
                digest.update(block)
    except OSError as err:
        raise ModelLoadError(f'cannot read model {path} ({err}); pass an existing ONNX '
                             'file as --model') from err
    return digest.hexdigest()


def read_manifest(path: Path) -> list[str]:
    """Return the bag paths of a manifest: one a line, relative to its folder, # comments.

    Raises:
        ConfigError: the manifest cannot be read.

    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise ConfigError(f'cannot read manifest {path} ({err}); pass a text file with one '
                          'bag path a line') from err
    entries = (line.split('#', 1)[0].strip() for line in lines)
    return [str(Path(path).parent / entry) for entry in entries if entry]


class FrameCounter:
    """Ray actor body: the frames the workers have processed, read by the progress bar."""

    def __init__(self) -> None:
        """Start at zero."""
        self.frames = 0

    def advance(self, frames: int = 1) -> None:
        """Count ``frames`` more processed frames."""
        self.frames += frames

    def read(self) -> int:
        """Return the frames processed so far."""
        return self.frames


class BagScorer:
    """Ray actor body: one model, scoring whole bags with evaluate_bag."""

    def __init__(self, settings: FleetSettings, threads: int, sha256: str,
                 counter: Any = None) -> None:
        """Load the model with ``threads`` CPU threads; report frames to ``counter``.

        Raises:
            ModelLoadError, ConfigError: as load_segmenter.

        """
        self.settings = settings
        self.sha256 = sha256
        self.counter = counter
        self.segmenter, self.classes = load_segmenter(
            settings.model, settings.classes, settings.backend, threads,
            settings.inference_size)

    def ready(self) -> int:
        """Return the worker's process id once the model is loaded."""
        return os.getpid()

    def count_frames(self, bags: list[str]) -> list[int]:
        """Return each bag's camera message count (0 for a bag that cannot be read)."""
        counts = []
        for bag in bags:
            try:
                counts.append(camera_frame_count(Path(bag), self.settings.image_topic))
            except SegNodeError:
                counts.append(0)  # The scoring pass reports why.
        return counts

    def score(self, bag: str) -> tuple[dict, int]:
        """Score one bag as eval-bag does.

        Returns:
            (entry, frames): the bag's result and the camera frames it reported to the
            counter. ``entry`` is ``{"bag", eval-bag's JSON fields, "model_sha256",
            "seconds", "frame_miou": [[stamp, mIoU or None], ...], "latency_samples_ms"}``,
            or ``{"bag", "error"}`` when the bag cannot be scored.

        """
        frames = 0

        def on_frame() -> None:
            nonlocal frames
            frames += 1
            if self.counter is not None:
                self.counter.advance.remote()

        settings = self.settings
        started = time.perf_counter()
        try:
            evaluation = evaluate_bag(Path(bag), self.segmenter, self.classes,
                                      settings.image_topic, settings.label_topic,
                                      debayer=settings.debayer, on_frame=on_frame)
        except SegNodeError as err:
            return {'bag': bag, 'error': str(err)}, frames
        _, payload = evaluation.report(self.classes)
        return {'bag': bag, **payload, 'model_sha256': self.sha256,
                'seconds': round(time.perf_counter() - started, 3),
                'frame_miou': [[stamp, _finite(miou)]
                               for stamp, miou in evaluation.pairing.frame_miou],
                'latency_samples_ms': [round(seconds * 1e3, 3)
                                       for seconds in evaluation.latencies_s]}, frames

    def frames(self, bag: str, stamps: list[tuple[int, float]]) -> list[WorstFrame]:
        """Read the frames of (stamp, mIoU) again and segment them; [] if the bag fails now."""
        miou = dict(stamps)
        try:
            found = read_frames(Path(bag), self.settings.image_topic, self.settings.label_topic,
                                set(miou), self.settings.debayer)
        except SegNodeError as err:
            _LOG.warning('cannot show the worst frames of %s: %s', bag, err)
            return []
        return [WorstFrame(bag, stamp, miou[stamp], rgb, truth,
                           self.segmenter.segment(rgb, confidence=False).labels.copy())
                for stamp, (rgb, truth) in found.items()]


def _finite(value: float) -> float | None:
    """Return ``value`` rounded for JSON, None for NaN (a frame with only void pixels)."""
    return round(float(value), 6) if np.isfinite(value) else None


def load_previous(output: Path | None, settings: FleetSettings,
                  sha256: str) -> dict[str, dict]:
    """Return the bag results of an earlier run's JSON that this run can keep, by bag path.

    Kept: bags scored without error by the model of hash ``sha256`` with the same topics,
    inference size and demosaicing.

    Raises:
        ConfigError: ``output`` exists but is not an eval-fleet JSON.

    """
    if output is None or not Path(output).exists():
        return {}
    try:
        previous = json.loads(Path(output).read_text())
        entries = previous['bags']
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f'cannot resume from {output}: not an eval-fleet JSON ({err!r}); '
                          'pass a new --json file or remove it') from err
    if any(previous.get(name) != value for name, value in settings.resume_key().items()):
        _LOG.warning('%s was scored with other topics, inference size or demosaicing; '
                     'scoring every bag again', output)
        return {}
    return {entry['bag']: entry for entry in entries
            if 'error' not in entry and entry.get('model_sha256') == sha256}


def fleet_report(entries: list[dict], classes: ClassList, header: dict) -> tuple[str, dict]:
    """Return the fleet's printed report and JSON from its bags' results.

    The fleet's confusion matrix and frame counts are the sums over the scored bags; its
    latency percentiles are over all their frames.

    Args:
        entries: BagScorer.score results, in bag order.
        classes: the model's class list.
        header: extra top-level JSON fields (model, topics, run).

    Returns:
        (text, payload): payload = eval-bag's fields for the fleet, ``header``, ``bags``.

    """
    scored = [entry for entry in entries if 'error' not in entry]
    matrix = ConfusionMatrix(classes.num_classes)
    for entry in scored:
        matrix.matrix += np.asarray(entry['confusion_matrix'], np.int64)
    counts = {name: sum(entry[name] for entry in scored) for name in FRAME_COUNTS}
    latencies = [ms / 1e3 for entry in scored for ms in entry['latency_samples_ms']]
    text, payload = report(matrix, classes, counts, latencies, 'inference latency')
    lines = [text, f'bags: {len(scored)} scored, {len(entries) - len(scored)} failed']
    lines += [f'failed: {entry["bag"]}: {entry["error"]}' for entry in entries
              if 'error' in entry]
    return '\n'.join(lines), {**payload, **header, 'bags': entries}


def _save(output: Path, payload: dict) -> None:
    """Write the JSON atomically (a reader or an interrupted run never sees half a file)."""
    partial = Path(f'{output}.partial')
    partial.write_text(json.dumps(payload, indent=2) + '\n')
    os.replace(partial, output)


def _start_ray(address: str | None, cpus: int) -> tuple[Any, bool]:
    """Join the Ray cluster at ``address``, else start a local one with ``cpus`` CPUs.

    Returns:
        (ray module, whether this call started Ray); a Ray already running is used as is.

    Raises:
        ConfigError: Ray is not installed or the cluster cannot be reached.

    """
    try:
        import ray
    except ImportError as err:
        raise ConfigError('eval-fleet needs Ray; install the fleet extra: pip install '
                          '"seg_node[fleet]"') from err
    if ray.is_initialized():
        return ray, False
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=cpus, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(f'cannot start or join Ray at {address or "a local instance"} '
                          f'({err}); pass the head node as --address HOST:6379 (where the '
                          "cluster uses Ray's token authentication, give this process its "
                          'token), or leave it out to run locally') from err
    return ray, True


def evaluate_fleet(bags: list[str], settings: FleetSettings, workers: int = 0,
                   threads: int = 0, address: str | None = None, output: Path | None = None,
                   worst_frames: int = 0) -> FleetResult:
    """Score ``settings.model`` on every bag with Ray workers, as eval-bag would one by one.

    Args:
        bags: bag paths, readable from every worker; duplicates are scored once.
        settings: model and topics.
        workers: Ray actors, one model each; 0: one per CPU (the machine's cores locally).
        threads: CPU threads per worker; 0: CPUs / workers.
        address: Ray cluster to join (``ray start --head`` prints it); None: local Ray.
        output: JSON file, saved while bags finish; results in it scored by the same model
            and settings are kept and their bags not scored again.
        worst_frames: also return this many lowest-mIoU frames, read again and segmented.

    Raises:
        ConfigError: no bags, a bad worker count, inference size or Ray address.
        ModelLoadError: the model or class file cannot be loaded.

    """
    bags = list(dict.fromkeys(str(bag) for bag in bags))
    if not bags:
        raise ConfigError('no bags to score; pass bag paths or --manifest FILE')
    if workers < 0 or threads < 0:
        raise ConfigError(f'--workers {workers} and --threads {threads} cannot be negative')
    check_inference_size(settings.inference_size)
    classes = load_classes(settings.classes or classes_beside(settings.model))
    sha256 = model_sha256(settings.model)
    entries = {bag: entry for bag, entry in load_previous(output, settings, sha256).items()
               if bag in bags}
    todo = [bag for bag in bags if bag not in entries]
    if entries:
        print(f'{len(entries)} of {len(bags)} bags already scored by this model in {output}; '
              f'scoring {len(todo)}')
    header = {'model': str(settings.model), 'model_sha256': sha256, **settings.resume_key()}
    run = {'address': address or 'local', 'workers': 0, 'threads_per_worker': 0,
           'bags_resumed': len(entries), 'camera_frames': 0, 'seconds': 0.0,
           'frames_per_second': None}
    worst: list[WorstFrame] = []
    if todo or worst_frames:
        cores = os.cpu_count() or 1
        ray, started = _start_ray(address, max(cores, (workers or cores) * (threads or 1)))
        try:
            cpus = int(ray.cluster_resources().get('CPU', 1))
            workers = workers or cpus
            threads = threads or max(1, cpus // workers)
            run.update(workers=workers, threads_per_worker=threads)
            pool = _WorkerPool(ray, settings, sha256, min(workers, max(len(todo), 1)), threads)
            if todo:
                _score_bags(pool, todo, bags, entries, classes, header, run, output)
            if worst_frames:
                worst = _worst_frames(pool, [entries[bag] for bag in bags], worst_frames)
        finally:
            if started:
                ray.shutdown()
    text, payload = fleet_report([entries[bag] for bag in bags], classes,
                                 {**header, 'run': run})
    if run['frames_per_second'] is not None:
        text += (f'\nthis run: {run["camera_frames"]} frames in {run["seconds"]} s on '
                 f'{run["workers"]} workers x {run["threads_per_worker"]} threads: '
                 f'{run["frames_per_second"]} frames/s')
    if output:
        _save(output, payload)
    return FleetResult(text, payload, worst, classes)


class _WorkerPool:
    """The Ray actors of a run: ``size`` BagScorers and the shared FrameCounter."""

    def __init__(self, ray: Any, settings: FleetSettings, sha256: str, size: int,
                 threads: int) -> None:
        """Start the actors and wait until each has loaded the model.

        Raises:
            ModelLoadError: a worker cannot load the model.
            ConfigError: the workers do not fit the cluster's CPUs in time.

        """
        self.ray = ray
        self.counter = ray.remote(num_cpus=0)(FrameCounter).remote()
        self._scorer = ray.remote(num_cpus=threads)(BagScorer)
        self._arguments = (settings, threads, sha256, self.counter)
        self.actors = [self.new_actor() for _ in range(size)]
        ready = [actor.ready.remote() for actor in self.actors]
        try:
            done, waiting = ray.wait(ready, num_returns=len(ready), timeout=_READY_TIMEOUT_S)
            ray.get(done)
        except ray.exceptions.RayActorError as err:
            raise ModelLoadError(f'a worker cannot load {settings.model}: {err}') from err
        if waiting:
            raise ConfigError(f'only {len(done)} of {size} workers of {threads} CPUs started '
                              f'within {_READY_TIMEOUT_S:.0f} s; pass fewer --workers or '
                              '--threads for the cluster')

    def new_actor(self) -> Any:
        """Start one more BagScorer (e.g. in place of one whose process died)."""
        return self._scorer.remote(*self._arguments)


def _score_bags(pool: _WorkerPool, todo: list[str], bags: list[str], entries: dict[str, dict],
                classes: ClassList, header: dict, run: dict, output: Path | None) -> None:
    """Score ``todo`` on the pool's free workers in turn; add results to ``entries``."""
    ray = pool.ray
    chunks = [todo[index::len(pool.actors)] for index in range(len(pool.actors))]
    counted = ray.get([actor.count_frames.remote(chunk)
                       for actor, chunk in zip(pool.actors, chunks, strict=True)])
    expected = {bag: count for chunk, counts in zip(chunks, counted, strict=True)
                for bag, count in zip(chunk, counts, strict=True)}
    queue, idle = deque(todo), list(pool.actors)
    pending: dict[Any, tuple[Any, str]] = {}
    saved = started = time.perf_counter()
    with tqdm(total=sum(expected.values()), unit='frame', disable=None) as bar:
        while queue or pending:
            while queue and idle:
                actor, bag = idle.pop(), queue.popleft()
                pending[actor.score.remote(bag)] = (actor, bag)
            done, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
            for ref in done:
                actor, bag = pending.pop(ref)
                try:
                    entry, frames = ray.get(ref)
                except ray.exceptions.RayActorError as err:
                    entry, frames = {'bag': bag, 'error': f'the worker died: {err}'}, 0
                    actor = pool.new_actor()
                except ray.exceptions.RayTaskError as err:
                    entry, frames = {'bag': bag, 'error': str(err.cause or err)}, 0
                idle.append(actor)
                entries[bag] = entry
                bar.total += frames - expected[bag]
                run['camera_frames'] += frames
            bar.update(ray.get(pool.counter.read.remote()) - bar.n)
            if output and done and time.perf_counter() - saved > _SAVE_EVERY_S:
                _save(output, fleet_report([entries[bag] for bag in bags if bag in entries],
                                           classes, {**header, 'run': run})[1])
                saved = time.perf_counter()
        bar.update(bar.total - bar.n)  # Counter messages still on their way.
    run['seconds'] = round(time.perf_counter() - started, 3)
    run['frames_per_second'] = round(run['camera_frames'] / max(run['seconds'], 1e-9), 3)


def worst_stamps(entries: list[dict], count: int) -> dict[str, list[tuple[int, float]]]:
    """Pick the ``count`` lowest-mIoU frames of the scored bags, one per scene.

    A frame within SAME_SCENE_NS of a worse frame of its bag is passed over (consecutive
    frames of one bad stretch look alike).

    Returns:
        {bag: [(stamp, frame mIoU), ...]}, worst first.

    """
    candidates = sorted((miou, entry['bag'], stamp) for entry in entries
                        if 'error' not in entry
                        for stamp, miou in entry['frame_miou'] if miou is not None)
    by_bag: dict[str, list[tuple[int, float]]] = defaultdict(list)
    picked = 0
    for miou, bag, stamp in candidates:
        if picked == count:
            break
        if all(abs(stamp - other) >= SAME_SCENE_NS for other, _ in by_bag.get(bag, ())):
            by_bag[bag].append((stamp, miou))
            picked += 1
    return by_bag


def _worst_frames(pool: _WorkerPool, entries: list[dict], count: int) -> list[WorstFrame]:
    """Return the ``count`` lowest-mIoU frames of the scored bags (see worst_stamps)."""
    by_bag = worst_stamps(entries, count)
    refs = [pool.actors[index % len(pool.actors)].frames.remote(bag, stamps)
            for index, (bag, stamps) in enumerate(by_bag.items())]
    frames = [frame for found in pool.ray.get(refs) for frame in found]
    return sorted(frames, key=lambda frame: (frame.miou, frame.bag, frame.stamp))
