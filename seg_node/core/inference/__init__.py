"""Inference backends behind one interface; see :mod:`seg_node.core.inference.base`."""

from seg_node.core.inference.base import BACKENDS, Backend, create_backend, SegResult

__all__ = ['BACKENDS', 'Backend', 'create_backend', 'SegResult']
