"""Network definitions (torch, training only) and the bundled ONNX models."""

from seg_node import MODELS_DIR

DEFAULT_MODEL_PATH = MODELS_DIR / 'camvid_fast.onnx'
