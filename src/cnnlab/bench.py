"""How close does a training step come to what this CPU can do? FLOP/s against a measured peak.

Three measurements, all in one process, on the same threads:

1. **Peak**: the best fp32 matrix-multiply rate of this machine, `a @ b` on square n x n
   matrices (2 n^3 FLOPs), large enough to be compute bound. It is the roof of the roofline
   model (Williams, Waterman & Patterson 2009, "Roofline: an insightful visual performance
   model"): no dense fp32 kernel on these threads runs faster.
2. **Training step**: forward, cross-entropy, backward and an SGD step of the real model on a
   batch of random pixels in [0, 1]. Its FLOPs are counted, not guessed, by
   `torch.utils.flop_counter.FlopCounterMode` over one real step: every convolution and matrix
   multiply of the forward *and* of the backward pass (a multiply-add counts 2). Element-wise
   work (ReLU, BatchNorm, the optimizer) has no FLOP formula there and counts 0, so the ratio
   achieved / peak is the "model FLOPs utilisation" of Chowdhery et al. 2022 (PaLM, appendix B).
3. **Where the time goes**: `torch.profiler` over a few more steps; each operator's own time
   is filed under one kind (convolution, matmul/linear, batch-norm, ...), and the step's wall
   time not spent inside any operator is Python and autograd overhead. A kind's FLOPs over
   its time say how well its kernels use the machine; the other kinds say why the whole step
   is lower.

Every time is the best of several repeats: on a shared machine the best repeat is the one
least disturbed by other processes, and peak and step are treated alike. On a machine that is
busy all the time even the best repeat waits for a core; `clock="cpu"` then times peak and
steps by the process's CPU time instead of the wall clock. With one thread that is the time
the core really spent on them, so the fraction stays meaningful (with more threads the idle
spinning of a thread waiting for a descheduled partner would count too).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError
from cnnlab.models import eval_mode, recording

# Kinds of operator, in the order they are printed. "overhead" is the step's wall time spent
# outside every operator: the Python of the model's forward, autograd's bookkeeping, the loop.
KINDS = ("convolution", "matmul/linear", "batch-norm", "activation", "pooling", "other/elementwise",
         "optimizer", "overhead")
STEP_LABEL, OPTIMIZER_LABEL = "cnnlab::step", "cnnlab::optimizer"


@dataclass
class Peak:
    gflops: float  # best fp32 matmul rate, 1e9 FLOP/s
    n: int  # side of the square matrices that reached it
    threads: int
    seconds: float  # its best time
    clock: str = "wall"  # "wall" (perf_counter) or "cpu" (process CPU time)


@dataclass
class Kind:
    kind: str
    ms: float  # milliseconds of the (best) timed step spent in this kind of operator
    share: float  # of the step, as the profiler saw it
    flops: int  # FLOPs per step counted for these operators (0 where torch has no formula)
    gflops: float  # flops / time: how well these kernels use the machine
    fraction_of_peak: float


@dataclass
class Gemm:
    """A layer as the matrix product its kernels compute: (M x K) @ (K x N), forward pass.

    A convolution lowered by im2col: M = images x output pixels, K = input channels x kernel
    taps, N = output channels (per group). Backward does two more products of the same size.
    """

    layer: str
    type: str
    m: int
    k: int
    n: int
    flops: int  # forward FLOPs of this layer for the batch, 2 M K N (x groups)


@dataclass
class Bench:
    model: str
    source: str  # "registry" or the run directory
    input_shape: list[int]
    classes: int
    batch_size: int
    steps: int  # timed steps (after the warm-up)
    threads: int
    channels_last: bool
    clock: str  # what the step and peak times are: "wall" or "cpu" (process CPU seconds)
    peak: Peak
    flops_per_step: int  # forward + backward, counted by FlopCounterMode
    step_seconds: float  # best timed step
    step_seconds_median: float
    images_per_s: float  # batch_size / step_seconds
    gflops: float  # flops_per_step / step_seconds
    fraction_of_peak: float  # gflops / peak.gflops
    profiled_step_ms: float  # wall time of one step under the profiler (only its shares are used)
    breakdown: list[Kind] = field(default_factory=list)
    gemms: list[Gemm] = field(default_factory=list)
    torch: str = torch.__version__
    cpu_capability: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@torch.inference_mode()
def forward_times(model: nn.Module, input_shape: tuple[int, ...], batch: int, repeats: int) -> list[float]:
    """Seconds per forward pass of `batch` random images, `repeats` times after 2 warm-up passes
    (the size audit's latency and throughput, a compression report's)."""
    tensors = [*model.parameters(), *model.buffers()]  # an int8 model may hold its weights as buffers only
    device = tensors[0].device if tensors else torch.device("cpu")
    x = torch.rand(batch, *input_shape, device=device)
    times = []
    with eval_mode(model):
        for i in range(repeats + 2):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - start)
    return times


def _clock(name: str) -> Callable[[], float]:
    if name not in CLOCKS:
        raise CnnlabError(f"--clock must be wall or cpu (got '{name}').")
    return CLOCKS[name]


def matmul_peak(sizes: tuple[int, ...] = (1024, 1536, 2048), repeats: int = 3, clock: str = "wall") -> Peak:
    """The best fp32 rate of `a @ b` over square sizes, on the current torch threads.

    Each size gets one untimed warm-up (it wakes the threads and sizes the caches), then
    `repeats` timed products; the best of all is the peak. 1024 is already compute bound
    (2 n^3 FLOPs over 3 n^2 numbers: ~680 FLOPs per float read).
    """
    now = _clock(clock)
    best: tuple[float, int] = (float("inf"), 0)
    for n in sizes:
        a, b = torch.rand(n, n), torch.rand(n, n)
        a @ b
        for _ in range(repeats):
            start = now()
            a @ b
            seconds = now() - start
            # compare rates, not times: sizes differ
            if 2 * n**3 / seconds > 2 * best[1] ** 3 / best[0]:
                best = (seconds, n)
    seconds, n = best
    return Peak(gflops=2 * n**3 / seconds / 1e9, n=n, threads=torch.get_num_threads(), seconds=seconds, clock=clock)


def gemm_shapes(model: nn.Module, input_shape: tuple[int, int, int], batch_size: int) -> list[Gemm]:
    """Every convolution and linear layer of `model` as its forward matrix product, for a batch.

    Small K and N (LeNet-5's first convolution: K = 25, N = 6) leave the CPU's vector
    registers mostly empty, whatever the batch: only M grows with it.
    """
    layers = {n: mod for n, mod in model.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))}
    param = next(model.parameters(), None)
    with torch.no_grad(), eval_mode(model), recording(layers.items()) as outputs:
        model(torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu"))
    shapes: list[Gemm] = []
    for name, out in outputs.items():  # in the order the layers ran
        module = layers[name]
        if isinstance(module, nn.Conv2d):
            g = module.groups
            m = batch_size * out.shape[2] * out.shape[3]
            k = module.in_channels // g * module.kernel_size[0] * module.kernel_size[1]
            n = module.out_channels // g
            shapes.append(Gemm(name, "Conv2d", m, k, n, 2 * m * k * n * g))
        else:
            shapes.append(Gemm(name, "Linear", batch_size, module.in_features, module.out_features,
                               2 * batch_size * module.in_features * module.out_features))
    return shapes


def make_step(model: nn.Module, x: Tensor, y: Any, momentum: float = 0.9,
              loss_fn: Callable[[Tensor, Any], Tensor] = F.cross_entropy, own: Any = None) -> Callable[[], None]:
    """One real training step: forward, the loss (a task's; default cross-entropy), backward,
    SGD (Nesterov momentum when `momentum` > 0, as cnnlab trains). The model's weights change:
    give it a copy to keep them. `own`: a task's own training built on `model` (a GAN's, whose
    step updates the discriminator and returns the generator's loss): its step is timed, and
    the SGD steps what it trains."""
    trained = model if own is None else own.trained
    optimizer = torch.optim.SGD(trained.parameters(), lr=1e-3, momentum=momentum, nesterov=momentum > 0)
    model.train()

    def step() -> None:
        loss = loss_fn(model(x), y) if own is None else own.step(x, y)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.profiler.record_function(OPTIMIZER_LABEL):
            optimizer.step()

    return step


def time_steps(step: Callable[[], None], steps: int, warmup: int = 0,
               clock: Callable[[], float] = time.perf_counter, device: torch.device | None = None) -> list[float]:
    """Seconds of each of `steps` calls of `step`, after `warmup` untimed ones (they fill the
    caches and let oneDNN pick its kernels). On a CUDA `device` each timed step waits for the
    GPU to finish, or the clock would stop while its kernels still run."""
    def finish() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    finish()
    times = []
    for _ in range(steps):
        start = clock()
        step()
        finish()
        times.append(clock() - start)
    return times


def count_flops(step: Callable[[], None]) -> tuple[int, dict[str, int]]:
    """FLOPs of one call of `step` (forward + backward), and per aten operator."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    counts = counter.get_flop_counts().get("Global", {})
    per_op = {str(op).split(".")[-1] if "." in str(op) else str(op): int(n) for op, n in counts.items()}
    return counter.get_total_flops(), per_op


def kind_of(op: str) -> str:
    """The kind of an aten operator by its name ("aten::mkldnn_convolution" -> "convolution")."""
    name = op.removeprefix("aten::").lower()
    if "conv" in name:
        return "convolution"
    if name in ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addmv", "mv", "dot"):
        return "matmul/linear"
    if "batch_norm" in name:
        return "batch-norm"
    if any(a in name for a in ("relu", "threshold", "clamp_min", "gelu", "sigmoid", "tanh", "silu", "hardswish", "elu")):
        return "activation"
    if "pool" in name:
        return "pooling"
    return "other/elementwise"


@contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """The profiler's C++ side (kineto) writes 'USDT ... profiler_start' and a GPU-count error
    straight to file descriptor 2 on a CPU-only machine: silence fd 2 around it."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def profile_shares(step: Callable[[], None], steps: int) -> tuple[float, dict[str, float]]:
    """Run `steps` steps under torch.profiler; return (wall ms per step, share of it per kind).

    Every operator's *self* time (its time minus its children's) is filed under its kind; an
    operator inside the optimizer step counts as "optimizer"; the step's wall time minus all
    operators is "overhead". So the shares sum to 1. The profiler itself slows small operators
    a little, and other processes stretch the wall time: the shares are what is kept.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    with _native_stderr_muted(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function(STEP_LABEL):
                step()
    us = dict.fromkeys(KINDS, 0.0)
    wall_us = 0.0
    for event in prof.events():
        labels, parent = [], event.cpu_parent
        while parent is not None:
            labels.append(parent.name)
            parent = parent.cpu_parent
        if event.name == STEP_LABEL:
            wall_us += event.cpu_time_total
            us["overhead"] += event.self_cpu_time_total
        elif STEP_LABEL not in labels:
            continue  # not part of a timed step (e.g. profiler bookkeeping)
        elif event.name.startswith("autograd::") or event.name.startswith("Optimizer.zero_grad"):
            us["overhead"] += event.self_cpu_time_total
        elif OPTIMIZER_LABEL in labels or event.name == OPTIMIZER_LABEL:
            us["optimizer"] += event.self_cpu_time_total
        elif event.name.startswith("aten::"):
            us[kind_of(event.name)] += event.self_cpu_time_total
        else:  # autograd's backward nodes (ConvolutionBackward0, ...) and other labels: bookkeeping
            us["overhead"] += event.self_cpu_time_total
    return wall_us / 1e3 / steps, {k: us[k] / wall_us if wall_us else 0.0 for k in KINDS}


def breakdown(shares: dict[str, float], step_seconds: float, flops_per_op: dict[str, int], peak: float) -> list[Kind]:
    """The timed step split by the profiled shares; each kind's counted FLOPs over its time.

    The shares come from the profiled steps, the time from the timed ones (same clock as the
    peak), so the kinds sum to the timed step and their rates compare with the peak.
    """
    flops = dict.fromkeys(KINDS, 0)
    for op, n in flops_per_op.items():
        flops[kind_of(op)] += n
    kinds = []
    for k in KINDS:
        seconds = shares[k] * step_seconds
        gflops = flops[k] / seconds / 1e9 if seconds > 0 else 0.0
        kinds.append(Kind(k, seconds * 1e3, shares[k], flops[k], gflops, gflops / peak))
    return kinds


def bench(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    classes: int,
    *,
    name: str = "",
    source: str = "registry",
    batch_size: int = 256,
    steps: int = 10,
    warmup: int = 3,
    profile_steps: int = 3,
    channels_last: bool = False,
    clock: str = "wall",
    peak: Peak | None = None,
) -> Bench:
    """Measure the peak, time `steps` training steps of `model` and break one down by operator.

    model: any nn.Module taking (N, C, H, W) pixels in [0, 1] and returning (N, classes) logits.
    The model's weights change (it trains on random labels); pass a copy to keep them.
    """
    if steps < 1:
        raise CnnlabError(f"--steps must be at least 1 (got {steps}): the timed steps are the measurement.")
    if batch_size < 1:
        raise CnnlabError(f"--batch-size must be at least 1 (got {batch_size}).")
    if classes < 2:
        raise CnnlabError(f"--classes must be at least 2 (got {classes}).")
    now = _clock(clock)
    peak = peak or matmul_peak(clock=clock)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, *input_shape, generator=generator)  # (N, C, H, W) in [0, 1]
    y = torch.randint(0, classes, (batch_size,), generator=generator)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    step = make_step(model, x, y)
    flops, per_op = count_flops(step)  # also the first warm-up step
    if flops == 0:
        raise CnnlabError(f"{name or type(model).__name__} has no convolution or matrix multiply to count; bench measures those.")
    times = time_steps(step, steps, warmup, now)
    best, median = min(times), sorted(times)[len(times) // 2]
    profiled_ms, shares = profile_shares(step, profile_steps)
    return Bench(
        model=name or type(model).__name__, source=source, input_shape=list(input_shape), classes=classes,
        batch_size=batch_size, steps=steps, threads=torch.get_num_threads(), channels_last=channels_last,
        clock=clock, peak=peak, flops_per_step=flops, step_seconds=best, step_seconds_median=median,
        images_per_s=batch_size / best, gflops=flops / best / 1e9, fraction_of_peak=flops / best / 1e9 / peak.gflops,
        profiled_step_ms=profiled_ms, breakdown=breakdown(shares, best, per_op, peak.gflops),
        gemms=gemm_shapes(model, input_shape, batch_size), cpu_capability=torch.backends.cpu.get_cpu_capability(),
    )


def bench_target(
    target: str | Path,
    *,
    data: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    classes: int = 10,
    threads: int | None = None,
    channels_last: bool | None = None,
    batch_size: int = 256,
    steps: int = 10,
    clock: str = "wall",
) -> Bench:
    """`bench` of a run directory or of a registered model name (what `cnnlab bench` measures).

    A run brings its model, input, classes and, unless `channels_last` says otherwise, the
    memory layout it trained in. A model name is built for the input and classes of dataset
    `data`, or for `input_shape` (default 1x28x28) and `classes`. `threads` torch threads
    (default: torch's choice) are used for the measurement and the previous count restored
    after it, as this may run inside a longer process (a notebook, the tests).
    """
    from cnnlab.models import build_model
    from cnnlab.run import Run

    if threads is not None and threads < 1:
        raise CnnlabError(f"--threads must be at least 1 (got {threads}).")
    if (Path(target) / "config.toml").is_file():
        if data or input_shape:
            raise CnnlabError(f"{target} is a run: its model fixes the input, so drop --data/--input.")
        run = Run.load(target)
        model, shape, n_classes, name, source = run.model, run.input_shape, len(run.classes), run.config.model, str(run.path)
        channels_last = run.config.channels_last if channels_last is None else channels_last
    elif Path(target).is_dir():
        raise CnnlabError(f"{target} is a folder but not a cnnlab run (no config.toml); give a run directory or a model name.")
    else:
        if data and input_shape:
            raise CnnlabError("give --data or --input, not both.")
        if data:
            from cnnlab.data import load_data

            dataset = load_data(data)
            shape, n_classes = dataset.input_shape, dataset.num_classes
        else:
            shape, n_classes = input_shape or (1, 28, 28), classes
        model, name, source = build_model(str(target), shape, n_classes), str(target), "registry"
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    try:
        return bench(model, tuple(shape), n_classes, name=name, source=source, batch_size=batch_size,
                     steps=steps, channels_last=bool(channels_last), clock=clock)
    finally:
        torch.set_num_threads(default_threads)
