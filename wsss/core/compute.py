"""How a torch stage computes: its device, the compute settings (threads, deterministic mode, precision,
memory format) and seeding. Only the stages that compute with torch import this module (the others never load
torch, which costs seconds per job): wsss/core/cli.py applies `configure_compute` before such a stage's work."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch

from .runtime import log

# cuBLAS needs a fixed workspace to be deterministic; read when CUDA starts, so set before any CUDA call
CUBLAS_WORKSPACE = ":4096:8"


def select_device(name: str = "auto") -> torch.device:
    """CUDA when asked for or, with "auto", when present; the CPU otherwise. Under torchrun each rank takes
    the GPU of its local rank (never CUDA_VISIBLE_DEVICES, which some clusters do not set)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"compute.device is {name!r} but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def configure_compute(compute: dict) -> dict:
    """Apply the compute settings to this process; return the switches as torch reports them.

    `threads` fixes torch's thread count (CPU results depend on it). `deterministic` turns on
    torch.use_deterministic_algorithms (an op without a deterministic implementation then raises
    instead of varying from run to run), cuDNN's deterministic kernels without benchmarking, TF32
    off and cuBLAS's fixed workspace; off, cuDNN benchmarks its kernels and TF32 is allowed.
    `precision: bf16` on a device without native bf16 is logged as a warning (bf16_warning).
    """
    torch.set_num_threads(int(compute["threads"]))
    deterministic = bool(compute["deterministic"])
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = not deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic
    warn_about_precision(compute)
    return compute_switches()


# what marks bf16 arithmetic in hardware in /proc/cpuinfo: x86's AVX-512 BF16 and AMX ("flags"), Arm's BF16
# ("Features"); without them torch's CPU kernels convert bf16 to float32 and back around every op
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The CPU's feature flags (x86's "flags" line of /proc/cpuinfo, Arm's "Features"); None where they cannot
    be read. `cpuinfo` is the file's text (read from /proc/cpuinfo when None)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def bf16_support(device_type: str, flags: frozenset[str] | None, cuda_native_bf16: bool | None) -> dict:
    """Whether a device computes bf16 natively, and what tells: {"native": True, False or None (unknown),
    "evidence": ...}. On the CPU from its flags; on CUDA from torch.cuda.is_bf16_supported(including_emulation=
    False) (`cuda_native_bf16`)."""
    if device_type == "cuda":
        return {"native": bool(cuda_native_bf16),
                "evidence": f"torch.cuda.is_bf16_supported(including_emulation=False) is {bool(cuda_native_bf16)}"}
    if flags is None:
        return {"native": None, "evidence": "no CPU flags in /proc/cpuinfo"}
    found = sorted(flags & NATIVE_BF16_CPU_FLAGS)
    if found:
        return {"native": True, "evidence": f"{'/'.join(found)} in /proc/cpuinfo flags"}
    return {"native": False, "evidence": "no avx512_bf16/amx_bf16 in /proc/cpuinfo flags"}


def device_bf16_support(device: torch.device) -> dict:
    """bf16_support of `device`, on this machine."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            return bf16_support("cuda", None, torch.cuda.is_bf16_supported(including_emulation=False))
    return bf16_support(device.type, cpu_flags(), None)


def bf16_warning(precision: str, device_type: str, support: dict) -> str | None:
    """What a job that computes in `precision` on a device of `support` (bf16_support) is warned of, or None."""
    if precision != "bf16" or support["native"] is not False:
        return None
    if device_type == "cuda":
        return (f"compute.precision bf16 on a GPU without native bf16 ({support['evidence']}): bf16 is emulated "
                f"there, slower than fp32; use fp32, or fp16")
    return (f"compute.precision bf16 on a CPU without native bf16 ({support['evidence']}): expect it to run about "
            f"10x slower than fp32 (make bench on an AVX2-only CPU: x0.03 to x0.08 of fp32); use fp32")


def warn_about_precision(compute: dict) -> None:
    """Log bf16_warning for this job's device, at its start."""
    if compute.get("precision") != "bf16":
        return
    device = select_device(compute.get("device", "auto"))
    message = bf16_warning("bf16", device.type, device_bf16_support(device))
    if message is not None:
        log.warning(message)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(compute: dict, device: torch.device):
    """The context of a forward pass in `compute.precision`: torch.autocast for bf16 and fp16, nothing for fp32."""
    dtype = PRECISIONS[compute.get("precision", "fp32")]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def grad_scaler(compute: dict, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, on for fp16 only (off, its scale/unscale/step are the plain backward and optimiser step)."""
    return torch.amp.GradScaler(device.type, enabled=compute.get("precision") == "fp16")


def memory_format(compute: dict) -> torch.memory_format:
    return torch.channels_last if compute.get("channels_last") else torch.contiguous_format


def compute_switches() -> dict:
    """The switches that decide whether this process computes reproducibly, as torch reports them."""
    return {"threads": torch.get_num_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
