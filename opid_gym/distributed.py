"""Several training processes (``torchrun``): who am I, talk to the others, launch.

A sharded run starts one process per GPU (or, on a CPU, per core share) with
``torch.distributed.run`` (``torchrun``), which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for each of them. Every process runs
the same training loop; :class:`DistInfo` says which share of the work is its own and
whether it is the *main* process (rank 0), the only one that writes the run folder.

One process without ``torchrun`` is the same code with ``DistInfo(0, 1, 0)``: every
collective below is then the identity, so the single-process path has no branches.

Object collectives (trajectories, metric dicts, checkpoint metadata) always go over a
CPU ``gloo`` group, also on GPUs: they are small, they never touch the device, and a
rank waiting for rank 0's evaluation is not killed by NCCL's watchdog. Tensor traffic
of the model itself (FSDP's all-gathers and reduce-scatters) uses NCCL on GPUs and gloo
on CPUs.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = [
    "DistInfo", "all_gather_objects", "barrier", "broadcast_object", "current", "free_port", "init_distributed",
    "launch", "shutdown", "torchrun_argv",
]

TIMEOUT_ENV = "OPID_GYM_DIST_TIMEOUT"
"""Seconds a collective may wait for the slowest rank (default 3 hours: rank 0's
evaluation and checkpoint writes happen while the others wait)."""


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """This rank's share of ``items``: every ``world_size``-th item from ``rank`` on."""
        return list(items[self.rank::self.world_size])


_CPU_GROUP: Any = None
_INFO = DistInfo()


def from_env() -> DistInfo:
    """The ``torchrun`` variables of this process (one process when they are absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def current() -> DistInfo:
    """The process group this process belongs to (after :func:`init_distributed`)."""
    return _INFO


def _timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 3 * 3600)))


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group (NCCL on CUDA, gloo on CPUs); no-op for one process.

    Args:
        device: the run's ``model.device``. ``auto``/``cuda`` use CUDA when available, and
            each process takes GPU ``LOCAL_RANK`` of its node.
    """
    global _CPU_GROUP, _INFO
    info = from_env()
    if not info.enabled:
        _INFO = info
        return info
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        _INFO = info
        return info
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl", timeout=_timeout(), device_id=torch.device("cuda", info.local_rank))
    else:
        dist.init_process_group("gloo", timeout=_timeout())
    _CPU_GROUP = dist.new_group(backend="gloo", timeout=_timeout()) if cuda else dist.group.WORLD
    _INFO = info
    return info


def device_for(device: str) -> str:
    """The device string of this rank: ``cuda:<local rank>`` for CUDA runs with several processes."""
    info = current()
    if not info.enabled:
        return device
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{info.local_rank}"
    return device


def shutdown() -> None:
    """Leave the process group (end of a run)."""
    global _CPU_GROUP, _INFO
    if not _INFO.enabled:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        # Every rank leaves together: a rank that tears gloo down while a peer is still
        # in a collective can abort ("terminate called without an active exception").
        dist.barrier(group=_CPU_GROUP)
        dist.destroy_process_group()
    _CPU_GROUP, _INFO = None, DistInfo()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (one process: ``[obj]``)."""
    if not _INFO.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * _INFO.world_size
    dist.all_gather_object(out, obj, group=_CPU_GROUP)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _INFO.enabled:
        return obj
    import torch.distributed as dist

    box = [obj if _INFO.rank == src else None]
    dist.broadcast_object_list(box, src=src, group=_CPU_GROUP)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here."""
    if not _INFO.enabled:
        return
    import torch.distributed as dist

    dist.barrier(group=_CPU_GROUP)


# ----------------------------------------------------------------- launching
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_argv(module_args: Sequence[str], nproc: int, *, module: str = "opid_gym",
                  port: int | None = None) -> list[str]:
    """The command that starts ``nproc`` copies of ``python -m <module> <module_args>`` on this machine.

    Without ``port``, torchrun's ``--standalone`` rendezvous binds a free port itself (no
    window in which another program can take a port chosen beforehand).
    """
    where = ["--standalone"] if port is None else ["--master-addr", "127.0.0.1", "--master-port", str(port)]
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
        *where, "-m", module, *module_args,
    ]


def launch(module_args: Sequence[str], nproc: int, *, module: str = "opid_gym") -> int:
    """Run ``module`` in ``nproc`` processes on this machine through torchrun; returns its exit code.

    The single-node form of ``torchrun --nproc-per-node N -m opid_gym ...``; several nodes
    call torchrun themselves (docs/scale.md).
    """
    import subprocess

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(torchrun_argv(module_args, nproc, module=module), env=env)
    return int(proc.returncode)
