"""keep_freed_memory: frame-sized buffers are reused instead of faulted in anew each frame."""

import subprocess
import sys

# Three 6 MiB buffers alive at once per frame (a 1920x1080 rgb8 message as the middleware,
# rcl and Python each hold it), written through and freed, 20 frames; prints the minor page
# faults per frame. The first argument says whether keep_freed_memory() runs first.
FRAMES = """
import ctypes, resource, sys
from seg_node.core.heap import keep_freed_memory
taken = keep_freed_memory() if sys.argv[1] == '1' else None
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
size, frames = 6 << 20, 20
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(frames):
    buffers = [libc.malloc(size) for _ in range(3)]
    for buffer in buffers:
        libc.memset(buffer, 1, size)
    for buffer in buffers:
        libc.free(buffer)
print(taken, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / frames)
"""


def faults_per_frame(keep: bool) -> tuple[str, float]:
    """Run FRAMES in a fresh interpreter; return (keep_freed_memory's result, faults/frame)."""
    output = subprocess.run([sys.executable, '-c', FRAMES, '1' if keep else '0'],
                            capture_output=True, text=True, check=True).stdout.split()
    return output[0], float(output[1])


def test_frame_buffers_come_from_the_heap_after_keep_freed_memory():
    pages_per_frame = 3 * (6 << 20) // 4096  # 4608
    taken, default_faults = faults_per_frame(keep=False)
    assert taken == 'None' and default_faults > pages_per_frame / 2  # each page faults anew
    taken, kept_faults = faults_per_frame(keep=True)
    assert taken == 'True' and kept_faults < pages_per_frame / 20
