"""What AFT needs from torch.distributed: a differentiable all-gather for the global-batch kernel, and the
detection of a multi-process launch on a machine without accelerators.

Why a gather that carries gradients: AFT compares B x B kernels over the batch. Computed per device, N devices
would match N kernels over B/N examples each: a different, noisier method. Gathering every process's features
gives each process the same global kernel; `accelerator.gather` cannot be used because it cuts the graph.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

# Launchers that start several processes say how many (torchrun: WORLD_SIZE; mpirun: its own variables).
SIZE_VARIABLES = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def one_process_launch_note() -> str | None:
    """A line for a run that `accelerate launch` started as one process while it set a rendezvous address: its
    one-process launcher (the one that sets ACCELERATE_USE_CPU: no --multi_gpu and no config file of several
    processes, `--cpu` included) starts one process whatever `--num_processes N` says, and sets MASTER_ADDR only when
    N > 1 (or it came from the shell). None otherwise."""
    env = os.environ
    if "ACCELERATE_USE_CPU" not in env or "MASTER_ADDR" not in env or any(v in env for v in SIZE_VARIABLES):
        return None
    return ("hf-aft: accelerate launch started this run as one process: with --num_processes N but neither "
            "--multi_gpu nor a config file of several processes (or with --cpu), it starts one. For N processes "
            "launch with `--config_file trainers/accelerate/ddp.yaml --num_processes N` or `--multi_gpu "
            "--num_processes N` (no --cpu: without GPUs hf-aft trains the processes on the CPU); audit.json's "
            "`processes` says how many ran.")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def launched_world_size() -> int:
    """Number of processes the launcher (accelerate launch, torchrun) started, before any process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def has_accelerator() -> bool:
    """A GPU (or other torch accelerator) that a multi-process launch would place one process on."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0, in rank order. Backward: every process's loss depends on this process's rows, so
    the gradient of a row is the sum over processes of their gradients for it (all-reduce, then take our slice).

    With DDP averaging the student's gradients over N processes afterwards, the N identical global losses give
    exactly the gradient of one global loss: N processes with batch b train like one process with batch N*b."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        sizes = torch.tensor([tensor.shape[0]], device=tensor.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(world)]
        dist.all_gather(all_sizes, sizes)
        all_sizes = [int(size.item()) for size in all_sizes]
        # all_gather needs equal shapes: pad to the largest batch (the last batch may be short), then trim.
        largest = max(all_sizes)
        padded = tensor.new_zeros((largest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        pieces = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(pieces, padded.contiguous())
        ctx.start = sum(all_sizes[:rank])
        ctx.size = all_sizes[rank]
        return torch.cat([piece[:size] for piece, size in zip(pieces, all_sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.size]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` [b, ...] from every process in rank order into [sum of b, ...], keeping the graph.
    The identity when not running distributed."""
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every process in rank order, without gradients (teacher features)."""
    if not is_distributed():
        return tensor
    with torch.no_grad():
        return _GatherWithGrad.apply(tensor.detach())


def default_device() -> torch.device:
    """Where teachers run by default: this process's GPU when there is one, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) if is_distributed() else 0)


def close_process_group() -> None:
    """Destroy the default process group once a command is done, as PyTorch asks of every program that created one:
    left to interpreter exit, gloo's threads can be torn down while still joinable and abort a rank ("terminate
    called without an active exception", seen in the 2-process tests under load)."""
    if dist.is_available() and dist.is_initialized():
        try:  # every rank tears down together: a rank that left early still aborted under load
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=60))  # raises, not hangs, if a rank is gone
            else:
                dist.barrier()
        except RuntimeError:
            pass
        dist.destroy_process_group()
