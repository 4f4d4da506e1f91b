"""The seg_node ROS 2 node: parameters, QoS, subscriptions and publishers around Segmenter.

Conversion, inference and rendering live in plain modules; this file only wires them to
topics. Inference runs on a worker thread fed by a one-frame slot (newest frame wins).
"""

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from seg_node.core import image_codec
from seg_node.core.errors import ConfigError, SegNodeError
from seg_node.evaluation.scoring import latency_percentiles
from seg_node.core.frame_slot import FrameSlot
from seg_node.core.inference.base import DEPLOY_BACKENDS
from seg_node.core.inference.engine_cache import PRECISIONS
from seg_node.models import DEFAULT_MODEL_PATH
from seg_node.core.pipeline import load_segmenter
from seg_node.ros.qos import choose_reliability, input_qos, output_qos, RELIABILITY_CHOICES
from seg_node.core.render import Renderer
from seg_node.ros.messages import OutputImage

TRANSPORTS = ('raw', 'compressed')


@dataclass(frozen=True)
class NodeSettings:
    """Validated node parameters."""

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
    max_image_pixels: int


def _descriptor(description: str, **kwargs: object) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, **kwargs)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f'parameter {name}={value!r} is invalid; choose one of '
                          + ', '.join(choices))
    return value


class SegNode(Node):
    """Subscribes camera images and publishes labels, confidences and colour images."""

    def __init__(self, **kwargs: object) -> None:
        """Declare and validate parameters, load the model, create topics and the worker."""
        super().__init__('seg_node', **kwargs)
        self.settings = self._declare_parameters()
        settings = self.settings
        self.segmenter, self.classes = load_segmenter(
            settings.model, settings.classes, settings.backend, settings.num_threads,
            settings.inference_size, {'precision': settings.precision,
                                      'build_engine_if_missing': settings.build_engine},
            log=self.get_logger().info)
        backend = self.segmenter.backend
        info = backend.info
        inference_size = self.segmenter.inference_size
        self.renderer = Renderer(self.classes, settings.overlay_alpha)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        qos = output_qos(settings.output_depth)
        self.labels_out = OutputImage('mono8', 1, np.uint8)
        self.confidence_out = OutputImage('32FC1', 1, np.float32)
        self.color_out = OutputImage('rgb8', 3, np.uint8)
        self.overlay_out = OutputImage('rgb8', 3, np.uint8)
        self.class_outs = [OutputImage('32FC1', 1, np.float32) for _ in self.classes.names]
        self.labels_pub = self.create_publisher(Image, '~/labels', qos)
        self.confidence_pub = self.create_publisher(Image, '~/confidence', qos)
        self.color_pub = self.create_publisher(Image, '~/color', qos)
        self.overlay_pub = self.create_publisher(Image, '~/overlay', qos)
        self.compressed_pub = self.create_publisher(CompressedImage, '~/labels/compressed', qos)
        self.class_pubs = [self.create_publisher(Image, f'~/class_confidence/{name}', qos)
                           for name in self.classes.names]
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.slot: FrameSlot = FrameSlot()
        self.served = self.rejected = 0
        self.latencies_s: deque[float] = deque(maxlen=300)
        self.input_reliability = ''
        self.subscription = None
        self._subscribe(settings.input_reliability if settings.input_reliability != 'auto'
                        else 'best_effort')
        if settings.input_reliability == 'auto':
            self._adapt_input_qos()
            self.create_timer(1.0, self._adapt_input_qos)
        self.create_timer(1.0, self._publish_diagnostics)
        self.worker = threading.Thread(target=self._work, name='seg_node_inference',
                                       daemon=True)
        self.worker.start()
        self.get_logger().info(
            f'serving {settings.model.name} ({info.arch}, {info.num_classes} classes) with '
            f'{backend.name} at {inference_size or "camera size"}; input '
            f'{settings.image_transport} on {self.subscription.topic_name}')

    def _declare_parameters(self) -> NodeSettings:
        read_only = {'read_only': True}
        string = Parameter.Type.STRING.value
        integer = Parameter.Type.INTEGER.value
        self.declare_parameter('model', '', _descriptor(
            'ONNX model of the seg_node contract; empty: the bundled CamVid model',
            type=string, **read_only))
        self.declare_parameter('classes', '', _descriptor(
            'class YAML (names, palette); empty: classes.yaml next to the model, else the '
            'bundled CamVid file', type=string, **read_only))
        self.declare_parameter('backend', 'auto', _descriptor(
            'auto | onnxruntime | tensorrt', type=string, **read_only))
        self.declare_parameter('precision', 'fp16', _descriptor(
            'TensorRT engine precision: fp32 | fp16 | int8 (int8 needs a QDQ model)',
            type=string, **read_only))
        self.declare_parameter('build_engine_if_missing', False, _descriptor(
            'TensorRT: build the engine at start when the cache has none',
            type=Parameter.Type.BOOL.value, **read_only))
        self.declare_parameter('image_transport', 'raw', _descriptor(
            'raw (image) | compressed (image/compressed)', type=string, **read_only))
        self.declare_parameter('debayer', image_codec.DEBAYER_METHODS[0], _descriptor(
            'demosaicing of Bayer frames: ' + ' | '.join(image_codec.DEBAYER_METHODS),
            type=string, **read_only))
        self.declare_parameter('overlay_alpha', 0.5, _descriptor(
            'weight of the class colours in ~/overlay', floating_point_range=[
                FloatingPointRange(from_value=0.0, to_value=1.0)]))
        self.declare_parameter('inference_size', [0, 0], _descriptor(
            "[H, W] the network sees; [0, 0]: the model's training size",
            type=Parameter.Type.INTEGER_ARRAY.value, **read_only))
        self.declare_parameter('input_reliability', 'auto', _descriptor(
            'auto (match the camera publishers) | reliable | best_effort', type=string,
            **read_only))
        self.declare_parameter('input_depth', 1, _descriptor(
            'camera subscription queue depth', type=integer, integer_range=[
                IntegerRange(from_value=1, to_value=100)], **read_only))
        self.declare_parameter('output_depth', 1, _descriptor(
            'output publishers queue depth', type=integer, integer_range=[
                IntegerRange(from_value=1, to_value=100)], **read_only))
        self.declare_parameter('num_threads', 0, _descriptor(
            'CPU inference threads; 0: all cores', type=integer, integer_range=[
                IntegerRange(from_value=0, to_value=256)], **read_only))
        self.declare_parameter('max_image_pixels', image_codec.DEFAULT_MAX_IMAGE_PIXELS,
                               _descriptor('frames of more pixels are rejected before decoding',
                                           type=integer, **read_only))
        value = {name: self.get_parameter(name).value for name in (
            'model', 'classes', 'backend', 'precision', 'build_engine_if_missing',
            'image_transport', 'debayer', 'overlay_alpha',
            'inference_size', 'input_reliability', 'input_depth', 'output_depth',
            'num_threads', 'max_image_pixels')}
        model = Path(value['model']).expanduser() if value['model'] else DEFAULT_MODEL_PATH
        classes = Path(value['classes']).expanduser() if value['classes'] else None
        size = tuple(value['inference_size'])
        if len(size) != 2:
            raise ConfigError(f'parameter inference_size={list(size)} is invalid; give '
                              "[height, width], or [0, 0] for the model's training size")
        if value['max_image_pixels'] < 1:
            raise ConfigError(f'parameter max_image_pixels={value["max_image_pixels"]} is '
                              'invalid; give a positive number of pixels')
        return NodeSettings(
            model=model, classes=classes,
            backend=_choice('backend', value['backend'], DEPLOY_BACKENDS),
            precision=_choice('precision', value['precision'], PRECISIONS),
            build_engine=value['build_engine_if_missing'],
            image_transport=_choice('image_transport', value['image_transport'], TRANSPORTS),
            debayer=_choice('debayer', value['debayer'], image_codec.DEBAYER_METHODS),
            overlay_alpha=float(value['overlay_alpha']),
            inference_size=None if size == (0, 0) else size,
            input_reliability=_choice('input_reliability', value['input_reliability'],
                                      RELIABILITY_CHOICES),
            input_depth=value['input_depth'], output_depth=value['output_depth'],
            num_threads=value['num_threads'], max_image_pixels=value['max_image_pixels'])

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == 'overlay_alpha':
                self.renderer.alpha = float(parameter.value)
        return SetParametersResult(successful=True)

    def _subscribe(self, reliability: str) -> None:
        """(Re-)subscribe the camera; the new subscription exists before the old one goes."""
        previous = self.subscription
        message_type, topic = ((CompressedImage, 'image/compressed')
                               if self.settings.image_transport == 'compressed'
                               else (Image, 'image'))
        self.subscription = self.create_subscription(
            message_type, topic, self.slot.put,
            input_qos(reliability, self.settings.input_depth))
        self.input_reliability = reliability
        if previous is not None:
            self.destroy_subscription(previous)

    def _adapt_input_qos(self) -> None:
        publishers = self.get_publishers_info_by_topic(self.subscription.topic_name)
        reliability = choose_reliability(info.qos_profile.reliability for info in publishers)
        if reliability != self.input_reliability:
            self._subscribe(reliability)
            self.get_logger().info(
                f'input QoS {reliability} for {len(publishers)} publisher(s) on '
                f'{self.subscription.topic_name}')

    def _work(self) -> None:
        while (msg := self.slot.take()) is not None:
            started = time.perf_counter()
            try:
                self._serve(msg)
            except SegNodeError as err:
                self.rejected += 1
                self.get_logger().warning(f'dropped frame: {err}', throttle_duration_sec=1.0)
                continue
            except Exception as err:  # keep serving whatever one frame does
                self.rejected += 1
                self.get_logger().error(f'dropped frame: {type(err).__name__}: {err}',
                                        throttle_duration_sec=1.0)
                continue
            self.served += 1
            self.latencies_s.append(time.perf_counter() - started)

    def _serve(self, msg: Image | CompressedImage) -> None:
        rgb = image_codec.decode(msg, self.settings.debayer, self.settings.max_image_pixels,
                                 self._decoder_warning)
        height, width = rgb.shape[:2]
        wanted_classes = [i for i, pub in enumerate(self.class_pubs)
                          if pub.get_subscription_count()]
        want_confidence = self.confidence_pub.get_subscription_count() > 0
        result = self.segmenter.segment(rgb, confidence=want_confidence,
                                        probabilities=bool(wanted_classes))
        header = msg.header
        np.copyto(self.labels_out.prepare(header, height, width), result.labels)
        self.labels_pub.publish(self.labels_out.msg)
        if want_confidence:
            np.copyto(self.confidence_out.prepare(header, height, width), result.confidence)
            self.confidence_pub.publish(self.confidence_out.msg)
        for index in wanted_classes:
            output = self.class_outs[index]
            np.copyto(output.prepare(header, height, width), result.probabilities[index])
            self.class_pubs[index].publish(output.msg)
        want_overlay = self.overlay_pub.get_subscription_count() > 0
        if want_overlay or self.color_pub.get_subscription_count():
            color = self.renderer.colorize(result.labels,
                                           self.color_out.prepare(header, height, width))
            self.color_pub.publish(self.color_out.msg)
            if want_overlay:
                self.renderer.overlay(rgb, color,
                                      self.overlay_out.prepare(header, height, width))
                self.overlay_pub.publish(self.overlay_out.msg)
        if self.compressed_pub.get_subscription_count():
            compressed = CompressedImage(header=header, format='mono8; png compressed')
            compressed.data = image_codec.encode_compressed(result.labels, 'png')
            self.compressed_pub.publish(compressed)

    def _decoder_warning(self, text: str) -> None:
        self.get_logger().warning(f'served a frame its decoder warned about: {text}',
                                  throttle_duration_sec=1.0)

    def _publish_diagnostics(self) -> None:
        latency = latency_percentiles(list(self.latencies_s))
        settings = self.settings
        values = {
            'frames_in': self.slot.received, 'frames_served': self.served,
            'frames_dropped': self.slot.dropped, 'frames_rejected': self.rejected,
            'latency_p50_ms': latency['p50'], 'latency_p99_ms': latency['p99'],
            'backend': self.segmenter.backend.name, 'model': str(settings.model),
            'input_reliability': self.input_reliability,
        }
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if self.served else DiagnosticStatus.WARN,
            name=f'{self.get_name()}: semantic segmentation',
            message='serving' if self.served else 'no frame served yet',
            hardware_id=self.segmenter.backend.name,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        diagnostics = DiagnosticArray(status=[status])
        diagnostics.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(diagnostics)

    def close(self) -> None:
        """Stop the worker and release the node."""
        self.slot.close()
        self.worker.join(timeout=5.0)
        self.destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown; exit 0 on Ctrl-C, 1 with one line on a start-up error."""
    cv2.setNumThreads(1)
    try:
        with rclpy.init(args=args):
            # The executor exists before the node announces itself, so a Ctrl-C at any
            # point after start-up interrupts spinning, never a half-built executor.
            executor = SingleThreadedExecutor()
            node = SegNode()
            try:
                executor.add_node(node)
                executor.spin()
            finally:
                node.close()
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except SegNodeError as err:
        rclpy.logging.get_logger('seg_node').fatal(str(err))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
