"""ONNX Runtime backend: the embedded CPU default.

Output buffers are allocated once per frame size and bound with I/O binding, so a steady
stream of same-sized frames allocates nothing per frame; only the outputs asked for are
bound (and so copied out of the graph).

ONNX Runtime runs every node of a graph whatever outputs are requested, so frames that need
no ``probabilities`` run a second session on the graph pruned to ``labels`` and
``confidence`` (:mod:`seg_node.core.inference.onnx_graph`): it skips cropping the
K-channel probability maps (about 5% of the shipped model's frame time at 360x480).
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from seg_node.core.errors import ModelLoadError
from seg_node.core.inference.base import (CONFIDENCE, LABELS, OneFrameThroughBatch,
                                          PROBABILITIES, SegResult)
from seg_node.core.inference.contract import check_contract, ModelInfo
from seg_node.core.inference.onnx_graph import prune_outputs


def read_model_info(session: ort.InferenceSession, model_path: Path) -> ModelInfo:
    """Check a session against the ONNX contract and read its metadata."""
    inputs = {arg.name: arg.type for arg in session.get_inputs()}
    outputs = {arg.name: (arg.type, arg.shape) for arg in session.get_outputs()}
    metadata = session.get_modelmeta().custom_metadata_map
    return check_contract(model_path, inputs, outputs, metadata)


def pruned_model(model_path: Path, outputs: list[str]) -> bytes:
    """Return the serialised model reduced to the nodes that compute ``outputs``.

    Raises:
        ModelLoadError: the file cannot be read or parsed, or lacks one of ``outputs``.

    """
    try:
        return prune_outputs(model_path.read_bytes(), outputs)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f'cannot prune ONNX model {model_path} to {outputs}: {err}; '
                             're-export it with `seg_tool export`') from err


class OnnxRuntimeBackend(OneFrameThroughBatch):
    """CPU inference through ONNX Runtime with pre-bound, reused output buffers."""

    name = 'onnxruntime'
    max_batch = 64

    def __init__(self, model_path: Path, num_threads: int = 0,
                 allow_spinning: bool = True) -> None:
        """Load ``model_path`` and check it against the ONNX contract.

        ``allow_spinning=False`` stops idle worker threads from spinning: needed when several
        sessions in one process are timed interleaved, or they steal each other's cores.

        Raises:
            ModelLoadError: the file is not a loadable ONNX model of the contract.

        """
        self.model_path = Path(model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry('session.intra_op.allow_spinning',
                                         '1' if allow_spinning else '0')
        self.session = self._open(str(self.model_path), options)
        self.info = read_model_info(self.session, self.model_path)
        lean_session = self._open(pruned_model(self.model_path, [LABELS, CONFIDENCE]), options)
        # probabilities wanted -> (session, its I/O binding)
        self._runners = {False: (lean_session, lean_session.io_binding()),
                         True: (self.session, self.session.io_binding())}
        self._shape: tuple[int, int] | None = None
        self._capacity = 0
        self._buffers: dict[str, np.ndarray] = {}

    def _open(self, model: str | bytes, options: ort.SessionOptions) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(model, options, providers=['CPUExecutionProvider'])
        except Exception as err:  # ORT raises its own untyped Fail/InvalidGraph errors
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise ModelLoadError(f'cannot load ONNX model {self.model_path}: {first_line}; '
                                 're-export it with `seg_tool export`') from err

    @staticmethod
    def available() -> bool:
        """ONNX Runtime is importable (it is, if this module loaded)."""
        return True

    def _allocate(self, batch: int, height: int, width: int) -> None:
        """Allocate output buffers for up to ``batch`` frames of (height, width)."""
        self._shape = (height, width)
        self._capacity = batch
        self._buffers = {
            LABELS: np.empty((batch, height, width), np.uint8),
            CONFIDENCE: np.empty((batch, height, width), np.float32),
            PROBABILITIES: np.empty((batch, self.info.num_classes, height, width), np.float32),
        }

    def infer_batch(self, images: np.ndarray, confidence: bool = True,
                    probabilities: bool = False) -> SegResult:
        """Segment (N, H, W, 3) uint8 frames; see :class:`~seg_node.core.inference.Backend`."""
        count, height, width = images.shape[:3]
        if self._shape != (height, width) or count > self._capacity:
            self._allocate(count, height, width)
        session, binding = self._runners[probabilities]
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        binding.bind_cpu_input(self.info.input_name, np.ascontiguousarray(images))
        wanted = [LABELS] + [CONFIDENCE] * confidence + [PROBABILITIES] * probabilities
        outputs = {name: self._buffers[name][:count] for name in wanted}
        for name, buffer in outputs.items():
            binding.bind_output(name, 'cpu', 0, buffer.dtype, buffer.shape,
                                buffer.ctypes.data)
        session.run_with_iobinding(binding)
        return SegResult(outputs[LABELS], outputs.get(CONFIDENCE), outputs.get(PROBABILITIES))
