"""Large CPU buffers that are cheap to touch the first time (transparent huge pages)."""

from __future__ import annotations

import ctypes
import sys

import torch

_HUGE_PAGE = 2 * 2**20
_MADV_HUGEPAGE = 14


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc() if sys.platform.startswith("linux") else None


def empty_large(*shape: int, dtype: torch.dtype, device: torch.device | str = "cpu"
                ) -> torch.Tensor:
    """``torch.empty`` that asks Linux for transparent huge pages on a large CPU buffer.

    A fresh N × d result (85 MB for the paper study) is mmapped by the allocator, and touching
    it first costs one page fault per 4 KiB page: ~15 ms on the reference machine, more than
    computing the gradients. madvise(MADV_HUGEPAGE) before the first write makes that one
    fault per 2 MiB (~4 ms). A no-op anywhere the call is unavailable; contents are
    uninitialised, as with ``torch.empty``.
    """
    out = torch.empty(*shape, dtype=dtype, device=device)
    nbytes = out.numel() * out.element_size()
    if _LIBC is None or out.device.type != "cpu" or nbytes < 4 * _HUGE_PAGE:
        return out
    address = out.data_ptr()
    start = (address + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
    stop = (address + nbytes) & ~(_HUGE_PAGE - 1)
    if stop > start:
        _LIBC.madvise(start, stop - start, _MADV_HUGEPAGE)  # advice only: errors are ignored
    return out
