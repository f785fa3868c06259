"""One distributed path: ``torchrun`` + DDP over ``env://`` (gloo on CPU, nccl on CUDA).

Every helper also works in a plain single process (no process group): ranks are 0, the world size is 1 and the
reductions are identities, so library code calls them unconditionally.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


class DeviceUnavailableError(RuntimeError):
    """The configured device does not exist here (e.g. ``device: cuda`` on a machine without CUDA)."""


def resolve_device(name: str) -> torch.device:
    """Config ``device`` -> ``torch.device``: ``auto`` is ``cuda`` when available, else ``cpu``; CUDA names are checked.

    Raises:
        DeviceUnavailableError: a CUDA device was asked for and CUDA is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"device={name!r} but CUDA is not available (use --set device=cpu or auto)")
    return device


def launched_by_torchrun() -> bool:
    """True when the ``RANK``/``WORLD_SIZE`` variables of ``torchrun`` (or an equivalent launcher) are set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device, timeout: timedelta | None = None) -> DistInfo:
    """Joins the process group described by the environment (``env://``) if one was launched.

    Args:
        device: the device type to train on (``cpu`` or ``cuda``); with CUDA each process takes ``cuda:LOCAL_RANK``.
        timeout: how long collectives wait for the other processes (the backend's default when None).

    Returns:
        The process's ``DistInfo``. Without torchrun variables (or with ``WORLD_SIZE=1``) nothing is initialised.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        kwargs = {"timeout": timeout} if timeout is not None else {}
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup() -> None:
    """Leaves the process group (no-op without one)."""
    if is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over processes (a new tensor; the input is not modified)."""
    out = tensor.detach().clone()
    if is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over processes (a new tensor)."""
    return all_reduce_sum(tensor) / get_world_size()


def reduce_dict(values: dict[str, float | torch.Tensor], device: torch.device) -> dict[str, float]:
    """Averages scalar values over processes, for display only (keys must be the same on every rank)."""
    keys = sorted(values)
    if not keys or not is_initialized():  # one process: no device round trip on every iteration
        return {k: float(values[k]) for k in keys}
    stacked = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    stacked = all_reduce_mean(stacked)
    return {k: float(v) for k, v in zip(keys, stacked.tolist())}


def all_gather_object(obj: Any) -> list[Any]:
    """Picklable ``obj`` from every process, indexed by rank (``[obj]`` without a process group)."""
    if not is_initialized():
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` as held by rank ``src``, on every process."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def model_without_ddp(model: nn.Module) -> nn.Module:
    """The wrapped module of a ``DistributedDataParallel`` model (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
