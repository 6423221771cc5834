"""Process memory settings for a scoring server: keep freed tensor memory instead of returning it to the OS.

Every ranking request allocates the same few tensors of up to some MiB (the candidates' hidden layers).
glibc's malloc serves large blocks with ``mmap`` and gives freed memory back (``munmap``, heap trimming),
so each request touches fresh pages and pays a page fault per 4 KiB -- on virtual machines the largest
single cost of scoring (measured once on the loaded 2-core development VM, p50 of the fast path for 600
candidates: a user with 50 events 49.9 -> 29.6 ms, a new user 15.0 -> 8.4 ms). :func:`keep_freed_memory` raises the
``mmap`` threshold to its 32 MiB maximum and the trim threshold to 1 GiB (``mallopt``), so those blocks
come from the heap and stay mapped: the process keeps its peak working set instead (tens of MiB).
``adsformer serve`` and ``benchmarks/serving.py`` call it; it is a no-op off glibc.

:func:`freeze_loaded_objects` moves everything loaded so far (the catalog, the runs' vocabularies, the
models' modules: some 230,000 objects for the demo runs) out of the cyclic garbage collector's reach. A full
collection walks every tracked object: 113 ms for a loaded service (measured on the 2-core development VM),
a pause any request in flight waits out; after the freeze it has nothing old to walk (0.0005 ms).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Apply the malloc settings above; True when glibc accepted both."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    )


def freeze_loaded_objects() -> int:
    """Collect once, then exempt every surviving object from later collections (``gc.freeze``): call it
    when the service is loaded, before requests. Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
