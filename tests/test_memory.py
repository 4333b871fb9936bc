"""MallocTrim: frees heap pages on the configured steps; a clear error for a bad setting."""

import subprocess
import sys

import pytest

from asr_transfer.callbacks.malloc_trim import MallocTrim, _malloc_trim


def test_trims_every_n_steps():
    cb = MallocTrim(every_n_steps=3)
    calls = []
    cb._trim = lambda pad: calls.append(pad) or 1
    for batch_idx in range(9):
        cb.on_train_batch_end(None, None, None, None, batch_idx)
    assert calls == [0, 0, 0]  # after steps 3, 6 and 9


def test_rejects_zero_steps():
    with pytest.raises(ValueError, match="callbacks.malloc_trim.every_n_steps"):
        MallocTrim(every_n_steps=0)


FRAGMENT_AND_TRIM = """
import ctypes
from asr_transfer.callbacks.malloc_trim import _malloc_trim

trim = _malloc_trim()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD 4 MiB: 2 MiB blocks live on the heap, as after a large free


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


blocks = [libc.malloc(2 << 20) for _ in range(100)]
for b in blocks:
    ctypes.memset(b, 1, 2 << 20)  # touched: resident
for b in blocks[0::2]:
    libc.free(b)  # holes in the middle of the heap: free() alone keeps them resident
before = rss_mib()
trim(0)
print(before - rss_mib())
"""


@pytest.mark.skipif(_malloc_trim() is None, reason="glibc only")
def test_glibc_trim_returns_freed_heap_pages_to_the_os():
    """Its own process (the allocator setting must not leak into the test session)."""
    out = subprocess.run(
        [sys.executable, "-c", FRAGMENT_AND_TRIM], capture_output=True, text=True, check=True
    )
    assert float(out.stdout) > 50, out  # ~100 MiB of holes handed back
