"""The seg_node ROS 2 node: a managed (lifecycle) node around Segmenter.

Conversion, inference and rendering live in plain modules; this file only wires them to
topics. configure loads the model, activate subscribes the cameras and starts the inference
worker, deactivate stops serving, cleanup frees the backend. Cameras are subscribed raw
(serialized CDR, read in place by core.image_cdr); each has a one-frame slot (newest frame
wins), and the worker takes the waiting frames of up to ``max_batch`` cameras, round-robin,
into one backend call. Transitions run on their own executor thread, so parameter services,
lifecycle state queries and /diagnostics answer while a model loads or a TensorRT engine
builds.
"""

import os
import signal
import sys

if __name__ == '__main__' or os.path.basename(sys.argv[0]) == 'seg_node':
    # Started as seg_node: a Ctrl-C or SIGTERM during the slow imports below (about 0.5 s)
    # ends the process quietly with status 0; main() takes the signals over afterwards.
    for _signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signal, lambda *_: os._exit(0))

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image

from seg_node.core import image_codec
from seg_node.core.errors import ConfigError, SegNodeError
from seg_node.core.frame_slot import CameraSlots
from seg_node.core.heap import keep_freed_memory
from seg_node.core.image_cdr import read_compressed_image, read_image
from seg_node.core.inference.base import DEPLOY_BACKENDS
from seg_node.core.inference.engine_cache import PRECISIONS
from seg_node.core.pipeline import check_inference_size, load_segmenter, MAX_INFERENCE_PIXELS
from seg_node.core.render import Renderer
from seg_node.core.stage_times import diagnostic_key
from seg_node.evaluation.scoring import latency_percentiles
from seg_node.models import DEFAULT_MODEL_PATH
from seg_node.ros.cameras import CameraOutputs, check_cameras, image_name
from seg_node.ros.qos import choose_reliability, input_qos, output_qos, RELIABILITY_CHOICES

TRANSPORTS = ('raw', 'compressed')
DIAGNOSTICS_PERIOD_S = 1.0
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


@dataclass(frozen=True)
class NodeSettings:
    """Validated start-up parameters (latency_budget_ms and input_timeout_s stay live)."""

    model: Path
    classes: Path | None
    backend: str
    precision: str
    build_engine: bool
    image_transport: str
    debayer: str
    overlay_alpha: float
    inference_size: tuple[int, int] | None
    input_reliability: str
    input_depth: int
    output_depth: int
    num_threads: int
    inference_spinning: bool
    max_image_pixels: int
    engine_cache_dir: str
    tensorrt_module: str
    autostart: bool
    cameras: tuple[str, ...]
    max_batch: int


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f'parameter {name}={value!r} is invalid; choose one of '
                          + ', '.join(choices))
    return value


def _check_inference_size(value: list[int]) -> tuple[int, int] | None:
    """Return (H, W), or None for [0, 0] (the model's training size).

    Raises:
        ConfigError: not two sides, a side below 16, or more pixels than the pipeline's cap.

    """
    size = tuple(value)
    if size == (0, 0):
        return None
    try:
        check_inference_size(size)
    except ConfigError as err:
        raise ConfigError(f'parameter inference_size={list(size)} is invalid ({err}); give '
                          "[height, width], or [0, 0] for the model's training size") from err
    return size


def _check_model(value: str) -> Path:
    """Return the model path ('' = the bundled model).

    Raises:
        ConfigError: the path is a folder or does not exist.

    """
    model = Path(value).expanduser() if value else DEFAULT_MODEL_PATH
    problem = ('is a folder, not a model file' if model.is_dir()
               else None if model.exists() else f'is invalid: {model} does not exist')
    if problem:
        raise ConfigError(f'parameter model={value!r} {problem}; give the path of an .onnx '
                          'model, or "" for the bundled one')
    return model


class SegNode(LifecycleNodeMixin, Node):
    """Subscribes camera images and publishes labels, confidences and colour images.

    Lifecycle: configure loads the model, activate serves, deactivate pauses, cleanup unloads.
    With the ``autostart`` parameter (default) it walks itself to active once spinning.
    """

    def __init__(self, **kwargs: object) -> None:
        """Declare and validate parameters; create /diagnostics; schedule autostart.

        Raises:
            ConfigError: a parameter is invalid (one line naming it and what is accepted).

        """
        Node.__init__(self, 'seg_node', **kwargs)
        # Transitions (a model load may take minutes) run beside the default group's
        # parameter services and diagnostics; get_state answers during them.
        LifecycleNodeMixin.__init__(self, callback_group=ReentrantCallbackGroup())
        self.settings = self._declare_parameters()
        self.segmenter = None
        self.renderer: Renderer | None = None
        self.class_names: list[str] = []
        self.outputs: list[CameraOutputs] = []  # one per camera, while configured
        count = len(self.settings.cameras)
        self.camera_subscriptions: list = [None] * count
        self.input_reliability = [''] * count
        self.slots: CameraSlots[bytes] = CameraSlots(count)
        self.worker: threading.Thread | None = None
        self._qos_timer = None
        self._subscription_lock = threading.Lock()
        # Per-camera counters over the node's life (the slots are replaced at each activation).
        self.received, self.dropped = [0] * count, [0] * count
        self.served, self.rejected = [0] * count, [0] * count
        self.inference_failures = 0
        self.last_failure = ''  # set while the backend fails, cleared by the next success
        self.configure_error: SegNodeError | None = None
        self._autostarting = False
        # Done with the configure error when autostart fails: main() stops spinning and exits.
        self.start_failed: Future = Future()
        self.latencies_s: deque[float] = deque(maxlen=300)
        self.activated_at = 0.0
        self.last_input_at = 0.0
        self._window: dict[str, int] = {}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        if self.settings.autostart:
            self._autostart_timer = self.create_timer(
                0.0, self._autostart, callback_group=MutuallyExclusiveCallbackGroup())

    # --- parameters -------------------------------------------------------------------

    def _declare(self, name: str, default: object, description: str, accepted: str,
                 **descriptor: object) -> object:
        """Declare a parameter and return its value.

        Raises:
            ConfigError: the given value has the wrong type or is out of range; names the
                parameter, the value and ``accepted``.

        """
        try:
            return self.declare_parameter(name, default, ParameterDescriptor(
                description=description, **descriptor)).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as err:
            given = self._parameter_overrides[name].value
            raise ConfigError(f'parameter {name}={given!r} is invalid; {accepted}') from err

    def _declare_parameters(self) -> NodeSettings:
        read_only = {'read_only': True}
        string = {'type': Parameter.Type.STRING.value, **read_only}
        text = 'give a string'
        value = {
            'model': self._declare(
                'model', '', 'ONNX model of the seg_node contract; empty: the bundled CamVid '
                'model', 'give the path of an .onnx file', **string),
            'classes': self._declare(
                'classes', '', 'class YAML (names, palette); empty: classes.yaml next to the '
                'model, else the bundled CamVid file', 'give the path of a YAML file',
                **string),
            'backend': self._declare('backend', 'auto', 'auto | onnxruntime | tensorrt',
                                     text, **string),
            'precision': self._declare(
                'precision', 'fp16', 'TensorRT engine precision: fp32 | fp16 | int8 (int8 '
                'needs a QDQ model)', text, **string),
            'build_engine_if_missing': self._declare_bool(
                'build_engine_if_missing', False, 'TensorRT: build the engine at configure '
                'when the cache has none'),
            'image_transport': self._declare(
                'image_transport', 'raw', 'raw (image) | compressed (resolved image topic + '
                '/compressed)', text, **string),
            'debayer': self._declare(
                'debayer', image_codec.DEBAYER_METHODS[0], 'demosaicing of Bayer frames: '
                + ' | '.join(image_codec.DEBAYER_METHODS), text, **string),
            'overlay_alpha': self._declare(
                'overlay_alpha', 0.5, 'weight of the class colours in ~/overlay',
                'give a number from 0.0 to 1.0', floating_point_range=[
                    FloatingPointRange(from_value=0.0, to_value=1.0)]),
            'inference_size': self._declare(
                'inference_size', [0, 0], "[H, W] the network sees; [0, 0]: the model's "
                'training size', f'give [height, width] of at least 16 each and at most '
                f"{MAX_INFERENCE_PIXELS} pixels, or [0, 0] for the model's training size",
                type=Parameter.Type.INTEGER_ARRAY.value, **read_only),
            'input_reliability': self._declare(
                'input_reliability', 'auto', 'auto (match the camera publishers) | reliable '
                '| best_effort', text, **string),
            'input_depth': self._declare_integer('input_depth', 1, 100, 1,
                                                 'camera subscription queue depth'),
            'output_depth': self._declare_integer('output_depth', 1, 100, 1,
                                                  'output publishers queue depth'),
            'num_threads': self._declare_integer('num_threads', 0, 256, 0,
                                                 'CPU inference threads; 0: all cores'),
            'inference_spinning': self._declare_bool(
                'inference_spinning', True, 'ONNX Runtime threads spin while idle: lowest '
                'latency; false: less CPU per frame, slower inference'),
            'max_image_pixels': self._declare_integer(
                'max_image_pixels', 1, 2**40, image_codec.DEFAULT_MAX_IMAGE_PIXELS,
                'frames of more pixels are rejected before decoding'),
            'engine_cache_dir': self._declare(
                'engine_cache_dir', '', 'TensorRT engine folder; empty: $ROS_HOME/seg_node/'
                'engines, else $XDG_CACHE_HOME/seg_node/engines, else ~/.ros/seg_node/engines',
                text, **string),
            'tensorrt_module': self._declare(
                'tensorrt_module', '', 'TensorRT module: tensorrt | tensorrt_rtx; empty: '
                'whichever is installed (tensorrt first)', text, **string),
            'autostart': self._declare_bool(
                'autostart', True, 'configure and activate by itself once spinning; false: '
                'wait for a lifecycle manager'),
            'cameras': self._declare(
                'cameras', [''], "camera names: [''] reads image and publishes ~/labels, ...; "
                '[front, left] reads front/image, left/image and publishes ~/front/labels, '
                '~/left/labels, ...', 'give a list of names such as [front, left]',
                type=Parameter.Type.STRING_ARRAY.value, **read_only),
            'max_batch': self._declare_integer('max_batch', 1, 64, 8,
                                               'most camera frames in one inference call'),
        }
        self._declare('latency_budget_ms', 100.0, '/diagnostics warns when the inference '
                      'latency p50 exceeds it; 0: no budget',
                      'give a number of milliseconds from 0.0 to 60000.0',
                      floating_point_range=[FloatingPointRange(from_value=0.0,
                                                               to_value=60000.0)])
        self._declare('input_timeout_s', 2.0, '/diagnostics warns when no camera frame '
                      'arrived for this long while active; 0: never',
                      'give a number of seconds from 0.0 to 3600.0',
                      floating_point_range=[FloatingPointRange(from_value=0.0,
                                                               to_value=3600.0)])
        return NodeSettings(
            model=_check_model(value['model']),
            classes=Path(value['classes']).expanduser() if value['classes'] else None,
            backend=_choice('backend', value['backend'], DEPLOY_BACKENDS),
            precision=_choice('precision', value['precision'], PRECISIONS),
            build_engine=value['build_engine_if_missing'],
            image_transport=_choice('image_transport', value['image_transport'], TRANSPORTS),
            debayer=_choice('debayer', value['debayer'], image_codec.DEBAYER_METHODS),
            overlay_alpha=float(value['overlay_alpha']),
            inference_size=_check_inference_size(value['inference_size']),
            input_reliability=_choice('input_reliability', value['input_reliability'],
                                      RELIABILITY_CHOICES),
            input_depth=value['input_depth'], output_depth=value['output_depth'],
            num_threads=value['num_threads'], inference_spinning=value['inference_spinning'],
            max_image_pixels=value['max_image_pixels'],
            engine_cache_dir=value['engine_cache_dir'],
            tensorrt_module=value['tensorrt_module'], autostart=value['autostart'],
            cameras=check_cameras(value['cameras']), max_batch=value['max_batch'])

    def _declare_bool(self, name: str, default: bool, description: str) -> bool:
        return self._declare(name, default, description, 'give true or false',
                             type=Parameter.Type.BOOL.value, read_only=True)

    def _declare_integer(self, name: str, low: int, high: int, default: int,
                         description: str) -> int:
        return self._declare(name, default, description, f'give an integer from {low} to '
                             f'{high}', type=Parameter.Type.INTEGER.value, read_only=True,
                             integer_range=[IntegerRange(from_value=low, to_value=high)])

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == 'overlay_alpha' and self.renderer is not None:
                self.renderer.alpha = float(parameter.value)
        return SetParametersResult(successful=True)

    # --- lifecycle ----------------------------------------------------------------------

    def lifecycle_state(self) -> str:
        """Return the current lifecycle state label, e.g. 'configuring' or 'active'."""
        return self._state_machine.current_state[1]

    def _autostart(self) -> None:
        """Walk to active once; a failed configure completes ``start_failed``."""
        self._autostart_timer.cancel()
        self._autostarting = True
        configured = self.trigger_configure()
        self._autostarting = False
        if configured != SUCCESS:
            self.start_failed.set_result(self.configure_error)
            return
        self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model (or TensorRT engine) and create the publishers."""
        settings = self.settings
        log = self.get_logger().info
        log(f'configuring: loading {settings.model} with backend {settings.backend}')
        started = time.monotonic()
        try:
            segmenter, classes = load_segmenter(
                settings.model, settings.classes, settings.backend, settings.num_threads,
                settings.inference_size,
                {'tensorrt': {'precision': settings.precision,
                              'build_engine_if_missing': settings.build_engine,
                              'engine_cache_dir': settings.engine_cache_dir,
                              'tensorrt_module': settings.tensorrt_module},
                 'onnxruntime': {'allow_spinning': settings.inference_spinning}},
                log=log)
        except SegNodeError as err:
            self.configure_error = err
            if not self._autostarting:  # else main() reports it as the one fatal line
                self.get_logger().error(f'configure failed: {err}')
            return FAILURE
        self.configure_error = None
        self.segmenter, self.class_names = segmenter, list(classes.names)
        self.renderer = Renderer(classes, self.get_parameter('overlay_alpha').value)
        qos = output_qos(settings.output_depth)
        self.outputs = [CameraOutputs(self.create_lifecycle_publisher, camera,
                                      self.class_names, qos) for camera in settings.cameras]
        info = segmenter.backend.info
        log(f'configured in {time.monotonic() - started:.1f} s: {settings.model.name} '
            f'({info.arch}, {info.num_classes} classes) with {segmenter.backend.name} at '
            f'{segmenter.inference_size or "camera size"}')
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, subscribe the cameras and start the inference worker."""
        result = super().on_activate(state)
        self.slots = CameraSlots(len(self.settings.cameras))
        self.worker = threading.Thread(target=self._work, args=(self.slots,),
                                       name='seg_node_inference', daemon=True)
        self.worker.start()
        reliability = self.settings.input_reliability
        with self._subscription_lock:
            for camera in range(len(self.settings.cameras)):
                self._subscribe(camera, 'best_effort' if reliability == 'auto'
                                else reliability)
        if reliability == 'auto':
            self._adapt_input_qos()
            self._qos_timer = self.create_timer(1.0, self._adapt_input_qos)
        self.activated_at = self.last_input_at = time.monotonic()
        self.get_logger().info(
            f'serving: input {self.settings.image_transport} on '
            + ', '.join(subscription.topic_name for subscription in self.camera_subscriptions))
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop serving (unsubscribe, stop the worker); the model stays loaded."""
        self._stop_serving()
        self.get_logger().info('deactivated: model loaded, not serving')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the publishers and free the backend."""
        self._unload()
        self.get_logger().info('cleaned up: model unloaded')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop serving and free everything, from whichever state."""
        self._stop_serving()
        self._unload()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Recover to unconfigured after a transition raised."""
        self._stop_serving()
        self._unload()
        return SUCCESS

    def _stop_serving(self) -> None:
        with self._subscription_lock:
            if self._qos_timer is not None:
                self.destroy_timer(self._qos_timer)
                self._qos_timer = None
            for camera, subscription in enumerate(self.camera_subscriptions):
                if subscription is not None:
                    self.destroy_subscription(subscription)
                    self.camera_subscriptions[camera] = None
        self.slots.close()
        if self.worker is not None:
            self.worker.join(timeout=10.0)
            self.worker = None
        for camera in range(len(self.settings.cameras)):
            self.received[camera] += self.slots.received[camera]
            self.dropped[camera] += self.slots.dropped[camera]
        self.slots = CameraSlots(len(self.settings.cameras))

    def _unload(self) -> None:
        for outputs in self.outputs:
            for publisher in outputs.publishers():
                self.destroy_lifecycle_publisher(publisher)
        self.outputs = []
        self.segmenter = self.renderer = None

    # --- input --------------------------------------------------------------------------

    def camera_topic(self, camera: int = 0) -> str:
        """Return camera ``camera``'s resolved input topic, + '/compressed' if so set.

        image_transport's convention: ``-r image:=/cam`` with compressed transport subscribes
        /cam/compressed (likewise ``<camera>/image`` for named cameras).
        """
        topic = self.resolve_topic_name(image_name(self.settings.cameras[camera]))
        return topic + '/compressed' if self.settings.image_transport == 'compressed' else topic

    def _subscribe(self, camera: int, reliability: str) -> None:
        """(Re-)subscribe a camera; the new subscription exists before the old one goes."""
        previous = self.camera_subscriptions[camera]
        message_type = CompressedImage if self.settings.image_transport == 'compressed' else Image
        self.camera_subscriptions[camera] = self.create_subscription(
            message_type, self.camera_topic(camera), partial(self.slots.put, camera),
            input_qos(reliability, self.settings.input_depth), raw=True)
        self.input_reliability[camera] = reliability
        if previous is not None:
            self.destroy_subscription(previous)

    def _adapt_input_qos(self) -> None:
        with self._subscription_lock:
            for camera, subscription in enumerate(self.camera_subscriptions):
                if subscription is None:
                    return
                publishers = self.get_publishers_info_by_topic(subscription.topic_name)
                reliability = choose_reliability(info.qos_profile.reliability
                                                 for info in publishers)
                if reliability != self.input_reliability[camera]:
                    topic = subscription.topic_name
                    self._subscribe(camera, reliability)
                    self.get_logger().info(f'input QoS {reliability} for {len(publishers)} '
                                           f'publisher(s) on {topic}')

    # --- serving ------------------------------------------------------------------------

    def _work(self, slots: CameraSlots) -> None:
        while (batch := slots.take_batch(self.settings.max_batch)) is not None:
            started = time.perf_counter()
            frames = []
            for camera, buffer in batch:
                try:
                    frames.append((camera, *self._receive(buffer)))
                except SegNodeError as err:
                    self._reject(camera, self.get_logger().warning, str(err))
                except Exception as err:  # a decoder's own failure: still only this frame
                    self._reject(camera, self.get_logger().error,
                                 f'{type(err).__name__}: {err}')
            if frames and self._serve(frames):
                elapsed = time.perf_counter() - started
                for camera, _, _ in frames:
                    self.served[camera] += 1
                    self.latencies_s.append(elapsed)

    def _receive(self, buffer: bytes) -> tuple[object, np.ndarray]:
        """Read one serialized camera message; return its header and (H, W, 3) uint8 RGB."""
        with self.segmenter.times.time('receive'):
            if self.settings.image_transport == 'compressed':
                msg = read_compressed_image(buffer)
                return msg.header, image_codec.decode_compressed(
                    msg, self.settings.max_image_pixels, self._decoder_warning)
            msg = read_image(buffer)
            return msg.header, image_codec.decode_image(msg, self.settings.debayer,
                                                        self.settings.max_image_pixels)

    def _decoder_warning(self, text: str) -> None:
        self.get_logger().warning(f'served a frame its decoder warned about: {text}',
                                  throttle_duration_sec=1.0)

    def _reject(self, camera: int, log: Callable[..., object], reason: str) -> None:
        self.rejected[camera] += 1
        log(f'dropped frame: {reason}', throttle_duration_sec=1.0)

    def _serve(self, frames: list[tuple[int, object, np.ndarray]]) -> bool:
        """Segment one frame per camera in one batch and publish each camera's outputs.

        Returns:
            Whether the batch was published (a failure is logged and counted).

        """
        outputs = [self.outputs[camera] for camera, _, _ in frames]
        confidence = any(output.wants_confidence() for output in outputs)
        probabilities = any(output.wanted_classes() for output in outputs)
        into = [output.destination(header, *rgb.shape[:2])
                for output, (_, header, rgb) in zip(outputs, frames, strict=True)]
        try:
            results = self.segmenter.segment_batch([rgb for _, _, rgb in frames], confidence,
                                                   probabilities, into)
        except Exception as err:  # the backend failed: report ERROR, keep serving
            self.inference_failures += len(frames)
            self.last_failure = f'{type(err).__name__}: {err}'
            self.get_logger().error(f'inference failed: {self.last_failure}',
                                    throttle_duration_sec=1.0)
            return False
        self.last_failure = ''
        try:
            for output, result, (_, header, rgb) in zip(outputs, results, frames,
                                                        strict=True):
                output.publish(result, rgb, header, self.renderer, self.segmenter.times)
        except Exception as err:  # keep serving whatever one batch does
            for camera, _, _ in frames:
                self._reject(camera, self.get_logger().error, f'{type(err).__name__}: {err}')
            return False
        return True

    # --- diagnostics --------------------------------------------------------------------

    def diagnostic_status(self) -> DiagnosticStatus:
        """Return the node's status; counts in the message cover the last period.

        ERROR: configure failed, or inference raised on the last frame it ran. WARN (while
        active): frames dropped or rejected, latency p50 over ``latency_budget_ms``, or no
        frame for ``input_timeout_s``. OK otherwise; the message names the lifecycle state.
        """
        state = self.lifecycle_state()
        now = time.monotonic()
        slots = self.slots
        received = [a + b for a, b in zip(self.received, slots.received, strict=True)]
        dropped = [a + b for a, b in zip(self.dropped, slots.dropped, strict=True)]
        counts = {'received': sum(received), 'dropped': sum(dropped),
                  'rejected': sum(self.rejected), 'failures': self.inference_failures}
        new = {key: value - self._window.get(key, 0) for key, value in counts.items()}
        self._window = counts
        if new['received']:
            self.last_input_at = now
        latency = latency_percentiles(list(self.latencies_s))
        budget_ms = self.get_parameter('latency_budget_ms').value
        timeout_s = self.get_parameter('input_timeout_s').value
        errors, warnings = [], []
        if self.configure_error is not None:
            errors.append(f'configure failed: {self.configure_error}')
        if self.last_failure:
            errors.append(f'inference failing ({new["failures"]} frame(s) in the last '
                          f'{DIAGNOSTICS_PERIOD_S:g} s): {self.last_failure}')
        if state == 'active':
            if new['dropped']:
                warnings.append(f'{new["dropped"]} frame(s) dropped (camera faster than '
                                'inference)')
            if new['rejected']:
                warnings.append(f'{new["rejected"]} frame(s) rejected (undecodable)')
            if budget_ms and self.latencies_s and latency['p50'] > budget_ms:
                warnings.append(f'latency p50 {latency["p50"]:.1f} ms over the '
                                f'{budget_ms:g} ms budget')
            silent_s = now - self.last_input_at
            if timeout_s and silent_s > timeout_s:
                topics = ', '.join(map(self.camera_topic, range(len(self.settings.cameras))))
                warnings.append(f'no frame on {topics} for {silent_s:.1f} s')
        level = (DiagnosticStatus.ERROR if errors else DiagnosticStatus.WARN if warnings
                 else DiagnosticStatus.OK)
        if errors or warnings:
            message = '; '.join(errors + warnings)
        elif state == 'active':
            message = 'serving' if sum(self.served) else 'active, waiting for frames'
        else:
            message = state
        backend = self.segmenter.backend.name if self.segmenter is not None else ''
        cameras = self.settings.cameras
        values = {
            'lifecycle_state': state,
            'frames_in': sum(received), 'frames_served': sum(self.served),
            'frames_dropped': sum(dropped), 'frames_rejected': sum(self.rejected),
            'inference_failures': self.inference_failures,
            'latency_p50_ms': latency['p50'], 'latency_p99_ms': latency['p99'],
            'latency_budget_ms': budget_ms, 'backend': backend,
            'model': str(self.settings.model),
            'input_topic': ','.join(map(self.camera_topic, range(len(cameras)))),
            'input_reliability': ','.join(self.input_reliability),
        }
        if cameras != ('',):  # per camera: name/frames_in, ...
            for index, camera in enumerate(cameras):
                values |= {f'{camera}/frames_in': received[index],
                           f'{camera}/frames_served': self.served[index],
                           f'{camera}/frames_dropped': dropped[index],
                           f'{camera}/frames_rejected': self.rejected[index]}
        if self.segmenter is not None:
            values |= {diagnostic_key(stage): ms
                       for stage, ms in self.segmenter.times.per_frame_ms().items()}
        return DiagnosticStatus(
            level=level, name=f'{self.get_name()}: semantic segmentation', message=message,
            hardware_id=backend, values=[KeyValue(key=k, value=str(v))
                                         for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        diagnostics = DiagnosticArray(status=[self.diagnostic_status()])
        diagnostics.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(diagnostics)

    def close(self) -> None:
        """Stop the worker and release the node."""
        self._stop_serving()
        self.destroy_node()


class _Signals:
    """SIGINT / SIGTERM after the imports: the first one stops the node, later ones wait."""

    def __init__(self) -> None:
        self.received = False
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, *_: object) -> None:
        if not self.received:
            self.received = True
            raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown.

    Exit 0 on Ctrl-C or SIGTERM at any moment (rclpy's handlers shut the context down,
    then ours interrupts the main thread); 1 with one line on a start-up error.
    """
    signals = _Signals()
    keep_freed_memory()  # frame-sized buffers reused, not page-faulted in per frame
    cv2.setNumThreads(1)
    node = executor = None
    status = 0
    try:
        rclpy.init(args=args)
        # Three threads: a transition (model load), the default group (camera, parameter
        # services, diagnostics) and a lifecycle query each get one.
        executor = MultiThreadedExecutor(num_threads=3)
        node = SegNode()
        executor.add_node(node)
        executor.spin_until_future_complete(node.start_failed)
        if node.start_failed.done():
            raise node.start_failed.result()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SegNodeError as err:
        rclpy.logging.get_logger('seg_node').fatal(str(err))
        status = 1
    except Exception:
        if not signals.received:
            raise  # a bug, not an interrupted start-up: keep its traceback
    _close(node, executor)
    return status


def _close(node: SegNode | None, executor: MultiThreadedExecutor | None) -> None:
    """Release the node, the executor and rclpy; leave at once if a transition still runs.

    A model load or TensorRT build cannot be interrupted; waiting for it would hold a
    Ctrl-C for up to minutes, so the process exits without it.
    """
    busy = node is not None and node.lifecycle_state() in (
        'configuring', 'activating', 'deactivating', 'cleaningup', 'shuttingdown')
    if busy:
        rclpy.try_shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if executor is not None:
        executor.shutdown()
    if node is not None:
        node.close()
    rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
