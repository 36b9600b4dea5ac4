"""Huge pages for an HNSW index's memory (Linux transparent huge pages).

An HNSW walk reads a few thousand vectors scattered over the whole index (235 MB at 100k x
384 floats). With the default 4 KiB pages nearly every one of those reads also misses the
TLB and walks the page tables; with 2 MiB pages the whole index fits the TLB. Linux backs
anonymous memory with 2 MiB pages where the program asks for them (``madvise(MADV_HUGEPAGE)``)
when transparent huge pages are in ``madvise`` mode, the default of Debian and Ubuntu;
hnswlib does not ask. Measured here (2-core AMD EPYC, 100k real MiniLM vectors): the same
walk 8-17% faster (two loads of one index file in one process, alternating), and
latentspace's search went from 0.90x to 0.98x raw hnswlib's single-query speed, 0.93x to
1.02x in a batch (``bench/seam.py``; raw hnswlib keeps its 4 KiB pages).

hnswlib does not tell where its memory is, so :class:`NewMemory` compares the process's
anonymous mappings before and after hnswlib allocates (a load, a new index, a resize) and
:func:`advise` marks the new ones; only for a block of at least :data:`WATCH_FROM` bytes
(32 MB: 20k vectors of 384 floats), which the C allocator maps on its own. Memory that is
already filled (a loaded index) is collapsed into huge pages by one background thread at
the lowest CPU priority (``MADV_COLLAPSE``, Linux 6.1+; 0.4-1.8 s for 235 MB here), while
searches go on; memory filled later (vectors added) gets huge pages as it is first written.

Advice is a hint: it never changes what memory holds, so advising memory that another part
of the process allocated at the same moment, or memory freed meanwhile, is harmless (the
kernel answers an error, ignored). Elsewhere (not Linux, huge pages ``never``, no libc)
nothing happens. ``open_store(path, huge_pages=False)`` turns it off.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from pathlib import Path

HUGE_PAGE = 2 << 20
MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25  # Linux 6.1+; older kernels answer EINVAL (khugepaged then collapses in its own time)
COLLAPSE_CHUNK = 32 << 20  # one madvise call at a time: the thread can stop between chunks
MIN_REGION = 2 * HUGE_PAGE  # smaller mappings hold no whole aligned huge page worth the advice
#: glibc maps a block of its own for an allocation of at least this many bytes (its
#: DEFAULT_MMAP_THRESHOLD_MAX on 64-bit) unless free memory it holds can serve it (the top
#: of its heap, given back first with ``malloc_trim``; a free chunk that large inside the
#: heap, rare); a smaller one often comes from memory it holds, where no new mapping shows
#: it. Smaller indexes are left on 4 KiB pages (they gain less); one not found is left too.
WATCH_FROM = 32 << 20
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")

_madvise = None  # libc's madvise, once loaded; False where it cannot be
_malloc_trim = None  # glibc's malloc_trim, where there is one
_collapse_queue: queue.SimpleQueue | None = None
_collapser: threading.Thread | None = None
_state_lock = threading.Lock()


def available() -> bool:
    """Whether this process can ask for transparent huge pages (Linux, not set to ``never``)."""
    global _madvise, _malloc_trim
    if _madvise is None:
        _madvise = False
        if sys.platform.startswith("linux"):
            try:
                setting = THP_SETTING.read_text()
                if "[never]" not in setting:
                    import ctypes

                    libc = ctypes.CDLL(None, use_errno=True)
                    fn = libc.madvise
                    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                    fn.restype = ctypes.c_int
                    _madvise = fn
                    _malloc_trim = getattr(libc, "malloc_trim", None)
                    if _malloc_trim is not None:
                        _malloc_trim.argtypes = [ctypes.c_size_t]
            except (OSError, AttributeError):
                _madvise = False
    return _madvise is not False


def anonymous_regions() -> set[tuple[int, int]]:
    """The process's anonymous memory mappings as ``(start, end)`` addresses
    (``/proc/self/maps`` lines without a path)."""
    out = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(None, 5)
                if len(fields) > 5 and fields[5].strip():  # a file, [heap], [stack] ...
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                out.add((start, end))
    except OSError:
        pass
    return out


def _minus(regions: set[tuple[int, int]], old: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """The address ranges of ``regions`` outside every range of ``old``."""
    out, old = [], sorted(old)
    for start, end in sorted(regions):
        for lo, hi in old:
            if hi <= start or end <= lo:
                continue
            if lo > start:
                out.append((start, lo))
            start = max(start, hi)
            if start >= end:
                break
        if start < end:
            out.append((start, end))
    return out


class NewMemory:
    """``with NewMemory() as new: <allocate>`` then ``new.regions``: the anonymous memory
    mapped inside the block, as address ranges; empty where huge pages are not available.

    Only the new addresses: the kernel merges a new mapping with an adjacent one of the same
    kind into one, and advising the whole would advise memory the block did not allocate (it
    once gave a second hnswlib index, loaded just before, the huge pages of the one advised).
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and available()
        self.regions: list[tuple[int, int]] = []

    def __enter__(self) -> NewMemory:
        if self.enabled and _malloc_trim is not None:
            # glibc serves even a large block from free memory at the top of its heap when
            # there is enough (no new mapping then); giving that back first leaves it none
            _malloc_trim(0)
        self._before = anonymous_regions() if self.enabled else set()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and exc[0] is None:
            new = _minus(anonymous_regions() - self._before, self._before)
            self.regions = [(lo, hi) for lo, hi in new if hi - lo >= MIN_REGION]


def _aligned(region: tuple[int, int]) -> tuple[int, int]:
    start, end = region
    return (start + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), end & ~(HUGE_PAGE - 1)


def advise(regions: list[tuple[int, int]], collapse: bool = True) -> list[tuple[int, int]]:
    """Ask for huge pages on ``regions`` (their whole aligned huge pages); with ``collapse``,
    hand the memory already there to the background collapser. Returns the ranges advised."""
    done = []
    if not regions or not available():
        return done
    for region in regions:
        lo, hi = _aligned(region)
        if hi - lo >= HUGE_PAGE and _madvise(lo, hi - lo, MADV_HUGEPAGE) == 0:
            done.append((lo, hi))
    if collapse and done:
        _collapse_later(done)
    return done


def _after_fork_in_child() -> None:
    global _state_lock, _collapser, _collapse_queue
    _state_lock = threading.Lock()  # another thread may have held it at the fork
    _collapser = _collapse_queue = None  # threads do not follow a fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _collapse_later(ranges: list[tuple[int, int]]) -> None:
    global _collapse_queue, _collapser
    with _state_lock:
        if _collapser is None or not _collapser.is_alive():
            _collapse_queue = queue.SimpleQueue()
            _collapser = threading.Thread(target=_collapse_loop, args=(_collapse_queue,),
                                          name="latentspace-hugepages", daemon=True)
            _collapser.start()
        for r in ranges:
            _collapse_queue.put(r)


def _collapse_loop(todo: queue.SimpleQueue) -> None:
    try:  # this thread only (Linux: a thread's id is its own scheduling entity)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (OSError, AttributeError):
        pass
    while True:
        item = todo.get()
        if isinstance(item, threading.Event):
            item.set()
            continue
        lo, hi = item
        for start in range(lo, hi, COLLAPSE_CHUNK):
            _madvise(start, min(COLLAPSE_CHUNK, hi - start), MADV_COLLAPSE)  # errors: not yet filled, freed ...


def wait_collapsed(timeout: float | None = None) -> bool:
    """Wait until the background collapser has worked through what it was handed so far
    (for tests and benchmarks); True when it did within ``timeout``."""
    with _state_lock:
        if _collapser is None or not _collapser.is_alive():
            return True
        done = threading.Event()
        _collapse_queue.put(done)
    return done.wait(timeout)


def huge_bytes(ranges: list[tuple[int, int]]) -> tuple[int, bool]:
    """``(bytes on huge pages, advised)`` over the mappings that hold ``ranges``, read from
    ``/proc/self/smaps`` (``AnonHugePages``; ``hg`` in ``VmFlags``: advised)."""
    total, advised = 0, bool(ranges)
    inside = False
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    start, end = (int(x, 16) for x in first.split("-"))
                    inside = any(start < hi and lo < end for lo, hi in ranges)
                elif inside and first == "AnonHugePages:":
                    total += int(line.split()[1]) << 10
                elif inside and first == "VmFlags:":
                    advised &= "hg" in line.split()[1:]
    except OSError:
        return 0, False
    return total, advised
