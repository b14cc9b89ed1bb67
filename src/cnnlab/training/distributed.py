"""Several processes training one model: data-parallel SGD on `torch.distributed` (DDP).

Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training"
(VLDB 13(12)): every process (a *rank*) holds a whole copy of the model and trains on its slice
of each global batch; DistributedDataParallel averages the gradients with an all-reduce that
overlaps the backward pass, so every copy takes the same optimizer step and stays identical.

Who starts the processes: torchrun's machinery (`torch.distributed.run`). `cnnlab train --nproc N`
calls it on this machine (standalone rendezvous on localhost, a free port); `torchrun ... -m cnnlab
train ...` does the same by hand, also across machines. A worker knows it is one from the
environment torchrun gives it (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT).

What is the same on every rank, so that rank 0's checkpoint is the whole trainer state:
the batch order (a function of (seed, epoch)), the augmentation (drawn for the global batch,
then sliced), the weights and the optimizer state (same averaged gradients, same steps), and
the epoch's loss/accuracy sums (all-reduced each step). BatchNorm statistics are the exception:
each rank normalises by its own slice, and DDP copies rank 0's running statistics to the
others at every forward, so rank 0's are the ones saved.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError

if TYPE_CHECKING:
    from pathlib import Path

    from cnnlab.config import TrainConfig

T = TypeVar("T")
# Longest wait for the other ranks at one collective before giving up with an error (a rank
# that crashed or hangs). Rank 0 downloads a dataset while the others wait, hence minutes.
TIMEOUT = timedelta(minutes=15)


class Context:
    """This process's place in the group, and the few collective operations the loop needs.
    With one process (`world_size` 1) every method is the identity: no torch.distributed at all."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, device: torch.device | None = None):
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.device = device or torch.device("cpu")  # where collectives run: cpu (gloo) or cuda (nccl)
        self.global_batch = 0  # images in the last global batch handed to `shard`

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to call for training steps: DDP around `model` (which keeps the weights
        and is what gets saved), or `model` itself in a single process."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, *tensors: Tensor | None) -> tuple[Tensor | None, ...]:
        """This rank's contiguous slice of a global batch: rank r of W takes rows
        [r n / W, (r + 1) n / W). None passes through (an optional per-sample tensor)."""
        n = len(tensors[0])  # type: ignore[arg-type]
        self.global_batch = n
        if self.world_size == 1:
            return tensors
        lo, hi = self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size
        return tuple(t if t is None else t[lo:hi] for t in tensors)

    def global_mean(self, loss: Tensor, local_n: int) -> Tensor:
        """The local mean loss scaled so that DDP's average over ranks is the mean over the
        global batch, also when the slices differ in size (the epoch's last batch):
        (1 / W) sum_r (W n_r / n) mean_r = (1 / n) sum_r n_r mean_r."""
        if self.world_size == 1:
            return loss
        return loss * (self.world_size * local_n / self.global_batch)

    def sum(self, *values: Tensor) -> tuple[Tensor, ...]:
        """Each value summed over all ranks (one all-reduce for all of them); dtypes kept."""
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        packed = torch.stack([v.to(self.device, torch.float64) for v in values])  # exact for counts < 2^53
        dist.all_reduce(packed)
        return tuple(p.to(v.device, v.dtype) for p, v in zip(packed, values))

    def agree(self, stop: threading.Event) -> bool:
        """True on every rank as soon as one rank was asked to stop (Ctrl-C, SIGTERM), so all
        of them take the same branch at the same step and meet at the same collectives."""
        if self.world_size == 1:
            return stop.is_set()
        import torch.distributed as dist

        flag = torch.tensor([float(stop.is_set())], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            stop.set()
        return stop.is_set()

    def from_main(self, value: T) -> T:
        """Rank 0's `value` on every rank (e.g. the run directory it chose)."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. a dataset download), then the others (reading it)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


_context: Context | None = None


def context() -> Context:
    """The context `join` set up for this process, or a single-process one."""
    return _context or Context()


def in_worker() -> bool:
    """Started by torchrun (cnnlab's own launcher included)?"""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def join(cfg: TrainConfig, resuming: Path | None = None) -> Context:
    """Join the process group torchrun started (once per process) and return this rank's
    context; a single process gets the identity context. Checks `cfg.nproc` against the group:
    a resumed run continues only on as many processes as it started with."""
    global _context
    world = int(os.environ.get("WORLD_SIZE", "1")) if in_worker() else 1
    if resuming is not None and cfg.nproc != world:
        raise CnnlabError(
            f"{resuming} trained on {cfg.nproc} process(es) but this is {world}; resume it with "
            f"`cnnlab train --resume {resuming}`, which starts {cfg.nproc} again (a different count would not continue exactly)."
        )
    if resuming is None and world == 1 and cfg.nproc > 1:
        raise CnnlabError(
            f"nproc={cfg.nproc} needs {cfg.nproc} processes: start them with `cnnlab train --nproc {cfg.nproc} ...` "
            "or torchrun (the Python API trains in this one process)."
        )
    if resuming is None and cfg.nproc not in (1, world):
        raise CnnlabError(f"--nproc {cfg.nproc} but torchrun started {world} processes; drop --nproc under torchrun.")
    if world == 1:
        return Context()
    if _context is not None:
        return _context
    _context = _start(cfg)
    return _context


def _start(cfg: TrainConfig) -> Context:
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cuda:
        if torch.cuda.device_count() < local_world:
            raise CnnlabError(
                f"{local_world} processes on this machine but torch sees {torch.cuda.device_count()} CUDA GPU(s); "
                "use one process per GPU (--nproc) or --device cpu."
            )
        torch.cuda.set_device(local_rank)  # each process drives its own GPU
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        # the cores are shared: N processes x (cores / N) threads, never more threads than cores
        torch.set_num_threads(max(1, _cores() // local_world))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT, device_id=device if cuda else None)
    _watch_parent()
    if rank != 0:
        _quiet()
    _short_peer_errors()
    import atexit

    atexit.register(_leave)
    return Context(rank, world, local_rank, device)


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _watch_parent() -> None:
    """torchrun starts each worker in a session of its own, so a launcher killed with SIGKILL
    would leave its workers training. Each worker exits when its parent (the launcher) is gone;
    the checkpoint on disk stays the last complete one (writes are atomic)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(137)

    threading.Thread(target=watch, name="cnnlab-parent-watch", daemon=True).start()


def _quiet() -> None:
    """Ranks other than 0 print nothing (one progress bar, one result, one error message);
    CNNLAB_DEBUG=1 (`cnnlab --debug`) keeps their output."""
    if os.environ.get("CNNLAB_DEBUG"):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def _short_peer_errors() -> None:
    """A rank whose peer died fails inside a collective; say so in one line, not a traceback."""
    import torch.distributed as dist

    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        if issubclass(kind, dist.DistError) and not os.environ.get("CNNLAB_DEBUG"):
            first = str(error).strip().splitlines()[0] if str(error).strip() else kind.__name__
            print(f"error: another training process stopped, so this one cannot go on ({first}).", file=sys.stderr)
            return
        previous(kind, error, tb)

    sys.excepthook = hook


def launch_if_several(cfg: TrainConfig, argv: list[str]) -> int | None:
    """`cnnlab train ARGV` for `cfg` with nproc > 1: start that many workers running the same
    command and return their exit code; None when this process trains (one process, or it is
    itself a worker). `cfg` was checked here, so a user's mistake is reported once."""
    if in_worker() or cfg.nproc == 1:
        return None
    return launch(cfg.nproc, argv)


def launch(nproc: int, argv: list[str]) -> int:
    """Run `python -m cnnlab ARGV` as `nproc` workers on this machine through torchrun's
    launcher (standalone rendezvous on localhost, a free port) and wait; their exit code.

    The workers inherit stdout/stderr; Ctrl-C or SIGTERM here is passed on to them (they save
    a checkpoint and stop), and a failed worker makes the launcher stop the others."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // nproc)))
    for name in list(logging.root.manager.loggerDict):  # the workers say what went wrong, in one line
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    args = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0", "--monitor-interval", "0.1",
         "-m", "cnnlab"]
    )
    args.training_script_args = argv  # set, not parsed: torchrun's parser would read --nproc as its own flag
    try:
        run(args)
    except SignalException as e:  # Ctrl-C / SIGTERM: the workers got it too and saved a checkpoint
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        first = min(e.failures)  # rank 0 if it failed: its message is already on stderr
        failure = e.failures[first]
        if failure.exitcode < 0:
            print(f"error: training process rank {first} was killed by {failure.signal_name()}.", file=sys.stderr)
            return 128 - failure.exitcode
        if first != 0:
            print(f"error: training process rank {first} failed (exit code {failure.exitcode}); "
                  "`cnnlab --debug train ...` shows its messages.", file=sys.stderr)
        return failure.exitcode
    return 0
