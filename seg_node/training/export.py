"""Export a checkpoint (or re-export an ONNX model) to the ONNX contract and verify it.

``seg_tool export`` writes every graph through :func:`write_deploy_onnx`: UINT8 moved to the
graph's edges, optionally converted to fp16, metadata set. Verification: the ONNX checker,
label parity with the source (PyTorch for a checkpoint, ONNX Runtime on the source file for
an ONNX model) on real frames, every operator one TensorRT's ONNX parser supports, and
UINT8 only at the edges (so the same file builds an engine).
"""

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from seg_node.core.inference.contract import (INPUT_NAME, META_ARCH, META_CLASS_NAMES,
                                              META_INFERENCE_SIZE, OUTPUT_NAMES)
from seg_node.core.inference.base import Backend, label_agreement
from seg_node.models.deploy_graph import (move_uint8_to_edges, operator_report, to_fp16,
                                          uint8_edge_violation)
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.models.deploy import DeployModel

OPSET = 17


@dataclass
class ExportReport:
    """What verification found.

    Attributes:
        path: the ONNX file.
        label_agreement: fraction of pixels where the file's labels (ONNX Runtime) and the
            source's agree.
        identical_frames: frames whose labels agree on every pixel.
        frames: frames compared.
        operators: sorted operator types used by the graph.
        unsupported: operators TensorRT's parser would reject (empty when fine).
        uint8_violation: the node that breaks the UINT8-at-the-edges rule, or None.

    """

    path: Path
    label_agreement: float
    identical_frames: int
    frames: int
    operators: list[str]
    unsupported: list[str]
    uint8_violation: str | None

    def problem(self) -> str | None:
        """Return one line saying why TensorRT could not build this file, or None."""
        if self.unsupported:
            return f'{self.path}: operators TensorRT cannot parse: {self.unsupported}'
        if self.uint8_violation:
            return (f'{self.path}: {self.uint8_violation}; TensorRT allows UINT8 only at '
                    'the graph edges (the image input feeds only a Cast, labels come from '
                    'a final Cast)')
        return None


def write_deploy_onnx(model: onnx.ModelProto, path: Path, metadata: dict[str, str],
                      fp16: bool = False) -> Path:
    """Write a contract graph with UINT8 at its edges, in fp16 if asked, with ``metadata``.

    Args:
        model: the exported (or loaded) fp32 graph; rewritten in place.
        path: output ``.onnx`` path.
        metadata: custom metadata replacing the model's own.
        fp16: write the fp16 copy (inputs and outputs keep the contract's types).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = move_uint8_to_edges(model)
    if fp16:
        model = to_fp16(model)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def export_onnx(model: DeployModel, path: Path, class_names: list[str] | tuple[str, ...],
                inference_size: tuple[int, int], arch: str, fp16: bool = False) -> Path:
    """Write ``model`` as an ONNX file of the contract, with metadata.

    Args:
        model: the deploy wrapper around a trained network.
        path: output ``.onnx`` path.
        class_names: K class names, stored as metadata.
        inference_size: (H, W) the network was trained for; the node's default input size.
        arch: architecture name, stored as metadata.
        fp16: write the fp16 copy of the graph.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros((1, *inference_size, 3), dtype=torch.uint8)
    dynamic = {0: 'batch', 1: 'height', 2: 'width'}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter('ignore')
        torch.onnx.export(model.eval(), (example,), str(path), opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAMES[0]: dynamic,
                                        OUTPUT_NAMES[1]: dynamic,
                                        OUTPUT_NAMES[2]: {0: 'batch', 2: 'height',
                                                          3: 'width'}},
                          dynamo=False)
    metadata = {META_CLASS_NAMES: json.dumps(list(class_names)),
                META_INFERENCE_SIZE: f'{inference_size[0]}x{inference_size[1]}',
                META_ARCH: arch}
    return write_deploy_onnx(onnx.load(str(path)), path, metadata, fp16)


def reexport_onnx(source: Path, path: Path, fp16: bool = False) -> Path:
    """Re-write an ONNX model of the contract through :func:`write_deploy_onnx`.

    Upgrades a file exported before the UINT8 rule (or makes its fp16 copy) without the
    training checkpoint; the metadata (classes, inference size, arch) is kept.
    """
    model = onnx.load(str(source))
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    return write_deploy_onnx(model, path, metadata, fp16)


def verify_export(path: Path, source: Backend, images: list[np.ndarray]) -> ExportReport:
    """Check the ONNX file: checker, parity with its source on ``images``, TensorRT rules.

    Args:
        path: exported ONNX file.
        source: what it came from, e.g. a TorchBackend of the deploy model, or ONNX Runtime
            on the file it was re-exported from.
        images: (H, W, 3) uint8 RGB frames to compare labels on.

    """
    onnx.checker.check_model(str(path), full_check=True)
    agreement, identical = label_agreement(source, OnnxRuntimeBackend(path), images)
    graph = onnx.load(str(path))
    operators, unsupported = operator_report(graph)
    return ExportReport(Path(path), agreement, identical, len(images), operators, unsupported,
                        uint8_edge_violation(graph))
