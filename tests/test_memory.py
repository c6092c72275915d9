"""ftrisk.memory: freed C-heap memory really goes back to the system."""

import ctypes
import platform
import sys

import pytest

from ftrisk.memory import release_freed_memory

linux = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc"
                           or getattr(ctypes.CDLL(None), "malloc_trim", None) is None,
                           reason="glibc's malloc_trim: Linux with glibc only")


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@linux
def test_release_freed_memory_returns_free_heap_pages():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size, n = 64 << 10, 1536  # below glibc's mmap threshold: heap chunks, 96 MB in all
    chunks = [libc.malloc(size) for _ in range(n)]
    assert all(chunks)
    for c in chunks:
        ctypes.memset(c, 1, size)  # touched: resident
    pin = chunks.pop()  # the last chunk stays: the freed ones are not at the heap's top, so free() keeps them resident
    for c in chunks:
        libc.free(c)
    before = _rss_kb()
    release_freed_memory()
    after = _rss_kb()
    libc.free(pin)
    assert before - after > 0.75 * size * (n - 1) / 1024  # most of the freed 96 MB left the process
