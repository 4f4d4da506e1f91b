"""Network definitions (torch, training only) and the bundled ONNX models."""

from seg_node import MODELS_DIR

DEFAULT_MODEL_PATH = MODELS_DIR / 'camvid_fast_fine.onnx'
# The names `seg_tool train --arch` accepts; architectures.ARCHITECTURES builds them (kept here
# so the CLI lists them without importing torch).
ARCHITECTURE_NAMES = ('naive', 'decoder', 'segnet', 'fast', 'fast_wide', 'fast_deep',
                      'fast_xl', 'fast_fine')
