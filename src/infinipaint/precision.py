"""Whether bf16 autocast pays on a device, for the default precision of every command.

    from infinipaint.precision import resolve_bf16
    bf16 = resolve_bf16(None, "cpu")    # None: automatic; True / False: as asked

bf16 autocast is fast where the hardware does bf16 arithmetic: a GPU that supports it, a CPU with
AMX or AVX512_BF16. Elsewhere PyTorch emulates it, and it is slower than fp32: on a 2-core Xeon
with AVX-512 but neither (measured on the shipped `cpu` world model, one thread) decoding a frame
took 175 ms under bf16 against 61 ms in fp32, and a `cpu` dynamics training step 9 s against 5 s.
So `None` (the default of the commands) picks bf16 only where it is native.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: str | torch.device) -> bool:
    """Does `device` compute in bf16 natively (so that autocast is faster than fp32)?"""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})
    return False


PRECISIONS = {"auto": None, "bf16": True, "fp32": False}  # a `--precision` name -> `resolve_bf16`'s argument


def resolve_bf16(bf16: bool | None, device: str | torch.device) -> bool:
    """`bf16` as asked, or for None whether it is native on `device`."""
    return native_bf16(device) if bf16 is None else bool(bf16)
