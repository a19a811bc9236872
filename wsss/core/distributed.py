"""DistributedDataParallel helpers that are no-ops in a single process.

Multi-GPU runs go through torchrun (one process per GPU). RCA needs two collective steps beyond DDP's
gradient averaging: every rank must apply the same memory-bank updates (all-gathered in rank order),
and the contrast loss must be normalised by the global number of images, not the local one.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def init_from_environment() -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); return whether we did.

    Each rank takes the GPU of its local rank (LOCAL_RANK, set by torchrun), never CUDA_VISIBLE_DEVICES.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"process {local_rank} of {os.environ['WORLD_SIZE']} has no GPU: "
                               f"{torch.cuda.device_count()} visible")
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    # Left to the interpreter's teardown, the process group's threads can outlive it: a rank that finished its
    # work then aborts ("terminate called without an active exception", SIGABRT) and torchrun fails the job.
    atexit.register(leave_process_group)
    return True


def leave_process_group() -> None:
    """Destroy the process group this process joined, if it still exists (at exit)."""
    if is_distributed():
        dist.destroy_process_group()


def wrap_distributed(model: torch.nn.Module, device: torch.device, sync_batchnorm: bool = True):
    """DistributedDataParallel around `model`; trained BatchNorm synchronised across GPUs (on the CPU, where
    SyncBatchNorm does not run, each process keeps its own statistics).

    Every parameter must receive a gradient in every step (no search for unused ones, which costs a graph
    traversal per step): a trainer whose layers sit out some steps gives them zero gradients
    (`rca_schedule.idle_parameters`).

    Buffers are not broadcast from rank 0 before every forward: RCA's bank (20 x 500 x 512 on VOC) is kept equal
    on every rank by its all-gathered updates, SyncBatchNorm's running statistics are equal on every GPU, and only
    rank 0's model (whose buffers a broadcast never changed) is written.
    """
    from torch.nn.parallel import DistributedDataParallel

    if sync_batchnorm and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False)


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's (N_r, ...) rows in rank order (N_r may differ between ranks)."""
    if not is_distributed():
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.zeros_like(padded) for _ in range(world_size())]
    dist.all_gather(gathered, padded)
    return torch.cat([rows[: int(c.item())] for rows, c in zip(gathered, counts)])


def gather_global_batch(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of the global batch, in the global batch's order: rank r holds its rows r, r + W, r + 2W,
    ... (W processes), as the trainers split each batch. Not differentiable; one process: `tensor` itself."""
    if not is_distributed():
        return tensor
    positions = torch.arange(len(tensor), device=tensor.device) * world_size() + rank()
    return all_gather_rows(tensor)[torch.argsort(all_gather_rows(positions))]


def all_reduce_sum(value: float, device: torch.device) -> float:
    if not is_distributed():
        return value
    tensor = torch.tensor([float(value)], device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())
