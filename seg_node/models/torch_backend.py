"""PyTorch backend for development: runs a training checkpoint through the deploy graph."""

import pickle
from pathlib import Path

import numpy as np
import torch

from seg_node.core.errors import ModelLoadError
from seg_node.core.inference.base import OneFrameThroughBatch, SegResult
from seg_node.models.architectures import build_model
from seg_node.models.deploy import DeployModel

# What torch.load raises for a file it cannot read: missing, truncated, or not a checkpoint.
UNREADABLE_CHECKPOINT_ERRORS = (OSError, RuntimeError, EOFError, pickle.UnpicklingError)
# ...and what looking up a checkpoint's entries raises when the file held something else
# (a dict without them: KeyError; no dict at all: TypeError).
FOREIGN_CHECKPOINT_ERRORS = (*UNREADABLE_CHECKPOINT_ERRORS, KeyError, TypeError)


def load_checkpoint(path: Path) -> tuple[DeployModel, dict]:
    """Load a training checkpoint as an eval-mode :class:`DeployModel` and its config."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
        config = checkpoint['config']
        network = build_model(config['arch'], config['num_classes'])
        network.load_state_dict(checkpoint['model'])
    except (*FOREIGN_CHECKPOINT_ERRORS, ValueError) as err:
        raise ModelLoadError(f'cannot load checkpoint {path}: {err}; pass a file written '
                             'by `seg_tool train`') from err
    return DeployModel(network, config['mean'], config['std']).eval(), config


class TorchBackend(OneFrameThroughBatch):
    """Eager PyTorch inference of a checkpoint or an in-memory :class:`DeployModel`."""

    name = 'torch'
    max_batch = 64

    def __init__(self, model_path: Path | None, num_threads: int = 0,
                 model: DeployModel | None = None) -> None:
        """Load ``model_path`` (a checkpoint), or wrap ``model`` directly."""
        self.model_path = model_path
        if model is None:
            model, _ = load_checkpoint(model_path)
        self.model = model.eval()
        if num_threads:
            torch.set_num_threads(num_threads)

    @staticmethod
    def available() -> bool:
        """Torch is importable (it is, if this module loaded)."""
        return True

    @torch.inference_mode()
    def infer_batch(self, images: np.ndarray, confidence: bool = True,
                    probabilities: bool = False) -> SegResult:
        """Segment (N, H, W, 3) uint8 frames; see :class:`~seg_node.core.inference.Backend`."""
        images = torch.from_numpy(np.ascontiguousarray(images))
        labels, max_probability, class_probability = self.model(
            images.to(self.model.scale.device))
        return SegResult(labels.cpu().numpy(),
                         max_probability.cpu().numpy() if confidence else None,
                         class_probability.cpu().numpy() if probabilities else None)
