"""Project exceptions: each message says what went wrong and what to do about it."""


class SegNodeError(Exception):
    """Base class of every error seg_node raises on purpose."""


class ImageError(SegNodeError):
    """A camera message that cannot be turned into an RGB image (the frame is dropped)."""


class ModelLoadError(SegNodeError):
    """A model, engine or class file that is missing, corrupt or does not fit the contract."""


class ConfigError(SegNodeError):
    """A parameter or command-line value that is out of range or inconsistent."""


class BagError(SegNodeError):
    """A bag that cannot be read or written as asked (missing topic, unknown format)."""
