"""Training: the Restormer recipe scaled to the machine at hand, resumable, single- or multi-process.

- AdamW, linear warm-up then cosine to `min_lr` (CPU calibration runs:
  warm-up to 1e-3 beat a flat 3e-4 by +3.1 dB);
- progressive patch sizes (Restormer), as fractions of the run; with `time_budget` the step count
  is set once at the start from timed probe steps of each patch size, so the run fills the budget
  and is then exactly repeatable (the count is stored in the checkpoint);
- an EMA of the weights (BasicSR's 0.999), validated every `val_every` steps; the best EMA weights
  are kept as `best.pt` and the last ones as `final.pt`, loadable derain checkpoints;
- `last.pt` every `save_every` steps holds all a resume needs: model, EMA, optimizer, step,
  schedule, torch's RNG (NAB codebook resets draw from it), NAB centroids (buffers) and the log;
- under `torchrun` (WORLD_SIZE > 1): DistributedDataParallel (gloo on CPU, NCCL on GPU), each rank
  its own seeded batches, NAB centroid statistics all-reduced in the model, rank 0 saves and logs.
"""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..atomic import atomic_path
from ..data.datasets import DataSpec, TrainingData
from ..errors import DerainError
from ..model import DerainNet, build_model, save_checkpoint
from ..model.config import ModelConfig
from .evaluate import mean_scores, score_pairs, source_scores

# Peak learning rates per config: 1e-3 was calibrated for the small configs on this CPU; the
# paper-scale ones keep Restormer's 3e-4.
PEAK_LR = {"tiny": 1e-3, "realtime": 1e-3, "edge": 1e-3}
DEFAULT_PEAK_LR = 3e-4


@dataclass
class TrainSettings:
    model: str = "realtime"
    init: str | None = None  # start from this checkpoint's weights (a fine-tune: fresh optimizer and schedule)
    data: DataSpec = field(default_factory=DataSpec)
    steps: int = 2000  # replaced by what fits when time_budget is set
    time_budget: float | None = None  # seconds for the whole run
    batch: int = 8
    patches: tuple[tuple[int, float], ...] = ((64, 1.0),)  # (patch, fraction of the run), in order
    lr: float | None = None  # peak; default per config (PEAK_LR)
    min_lr: float = 1e-6
    warmup: float = 0.03  # fraction of the steps
    weight_decay: float = 1e-4
    grad_clip: float = 0.5
    loss: str = "charbonnier"  # or "l1"
    fft_weight: float = 0.0  # + weight * L1 of the FFT amplitudes (NeRD-Rain uses 0.01)
    ema: float = 0.999
    val_every: int = 500
    save_every: int = 200
    log_every: int = 20
    reseed_until: float = 0.95  # NAB codebook resets stop here, so the saved centroids are not random pixels
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    bf16: bool = False  # CPU/GPU autocast: opt-in, slow where the CPU has no native bf16
    channels_last: bool = True  # faster at no PSNR cost (benchmarks/train_precision.py)
    compile: bool = False  # torch.compile the training forward (a minute or two of compiling per patch size)
    threads: int | None = None  # torch CPU threads; kept in the run so that --resume keeps them

    def peak_lr(self) -> float:
        return self.lr or PEAK_LR.get(self.model, DEFAULT_PEAK_LR)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSettings":
        data = dict(data, data=DataSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["data"].items()}))
        data["patches"] = tuple(tuple(p) for p in data["patches"])
        return cls(**data)


def parse_patches(text: str) -> tuple[tuple[int, float], ...]:
    """"64:0.8,128:0.2" -> ((64, 0.8), (128, 0.2)); "96" -> ((96, 1.0),). Several patches need a
    fraction each, summing to 1."""
    try:
        items = [item.split(":") for item in text.split(",")]
        if any(len(p) > 2 for p in items) or (len(items) > 1 and any(len(p) != 2 for p in items)):
            raise ValueError
        patches = tuple((int(p[0]), float(p[1]) if len(p) > 1 else 1.0) for p in items)
    except (ValueError, IndexError):
        raise DerainError(f"--patches {text!r}: expected PATCH or PATCH:FRACTION,... e.g. 64:0.8,128:0.2") from None
    if any(p <= 0 or f <= 0 for p, f in patches):
        raise DerainError(f"--patches {text!r}: patches and fractions must be positive")
    if abs(sum(f for _, f in patches) - 1.0) > 1e-6:
        raise DerainError(f"--patches {text!r}: the fractions must sum to 1")
    return patches


def charbonnier(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((prediction - target) ** 2 + eps**2).mean()


def loss_fn(settings: TrainSettings) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if settings.loss not in ("l1", "charbonnier"):
        raise DerainError(f"--loss {settings.loss!r}: choose l1 or charbonnier")
    pixel = torch.nn.functional.l1_loss if settings.loss == "l1" else charbonnier

    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = pixel(prediction, target)
        if settings.fft_weight:
            amplitude = [torch.fft.rfft2(x.float()).abs() for x in (prediction, target)]
            value = value + settings.fft_weight * torch.nn.functional.l1_loss(*amplitude)
        return value

    return loss


@dataclass
class Schedule:
    """Step boundaries of the patch phases and the learning rate at each step."""

    steps: int
    phases: list[tuple[int, int]]  # (first step, patch)
    peak_lr: float
    min_lr: float
    warmup_steps: int

    def patch_at(self, step: int) -> int:
        return [patch for first, patch in self.phases if first <= step][-1]

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1 + math.cos(math.pi * progress))


def plan(settings: TrainSettings, step_seconds: dict[int, float] | None = None) -> Schedule:
    """Steps per patch phase: fractions of the steps, or with a time budget, of the time."""
    if step_seconds is None:
        counts = [max(1, round(settings.steps * fraction)) for _, fraction in settings.patches]
    else:
        total = sum(f for _, f in settings.patches)
        counts = [max(1, int(settings.time_budget * f / total / step_seconds[p])) for p, f in settings.patches]
    starts = np.cumsum([0] + counts[:-1]).tolist()
    steps = int(sum(counts))
    return Schedule(steps, [(int(s), p) for s, (p, _) in zip(starts, settings.patches)], settings.peak_lr(),
                    settings.min_lr, max(1, round(settings.warmup * steps)))


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    """torch.compile with one static graph per patch size: a second size otherwise makes dynamo trace
    symbolic shapes, which inductor fails on (InductorError "64*((s6//4)) < 64", torch 2.13)."""
    return torch.compile(module, dynamic=False)


def time_steps(model: DerainNet, settings: TrainSettings, data: TrainingData, device: str) -> dict[int, float]:
    """Seconds per training step at each patch size, timed on a throwaway copy (median of 3, one warm-up).

    On a CPU a step's cost is its CPU time per thread, not its wall time: a probe that shares the
    cores with other jobs waits for them, and would shrink the whole schedule for a load that may
    pass (the budget is the run's unloaded time)."""
    probe = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=0.0)
    forward = compiled(probe) if settings.compile else probe
    threads = torch.get_num_threads()
    seconds = {}
    for patch, _ in settings.patches:
        rainy, clean = (x.to(device) for x in data.make_batch(np.random.default_rng(0), patch))
        times = []
        for _ in range(5):
            wall, cpu = time.perf_counter(), time.process_time()
            optimizer.zero_grad()
            with torch.autocast(rainy.device.type, dtype=torch.bfloat16, enabled=settings.bf16):
                loss = torch.nn.functional.l1_loss(forward(rainy).float(), clean)
            loss.backward()
            optimizer.step()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times.append(min(wall, cpu / threads) if device == "cpu" else wall)
        seconds[patch] = float(np.median(times[2:])) * 1.1  # after warm-up (compiling); + data, logging, validation
    return seconds


class WeightEMA:
    """Exponential moving average of the parameters; buffers (NAB centroids) follow the model."""

    def __init__(self, model: DerainNet, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: DerainNet) -> None:
        for ema, live in zip(self.model.parameters(), model.parameters()):
            ema.lerp_(live.detach(), 1.0 - self.decay)
        for ema, live in zip(self.model.buffers(), model.buffers()):
            ema.copy_(live)


def _distributed(settings: TrainSettings) -> tuple[int, int, str]:
    """(rank, world size, this rank's device); starts the process group under torchrun, one GPU
    per process (LOCAL_RANK) when training on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = settings.device
    if world > 1 and device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return (dist.get_rank(), world, device) if world > 1 else (0, 1, device)


def _save_state(path: Path, model: DerainNet, ema: WeightEMA, optimizer: torch.optim.Optimizer, step: int,
                schedule: Schedule, settings: TrainSettings, log: dict) -> None:
    state = {"config": model.config.to_dict(), "model": model.state_dict(), "ema": ema.model.state_dict(),
             "optimizer": optimizer.state_dict(), "step": step, "schedule": asdict(schedule),
             "settings": settings.to_dict(), "rng": torch.get_rng_state(), "log": log}
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as error:  # torch's zip writer reports a full disk this way
            raise OSError(errno.ENOSPC, f"torch could not write the checkpoint ({error})") from error


def plot_log(log: dict, path: Path) -> None:
    """Loss and validation PSNR against step, as a PNG (needs matplotlib: the `plot` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    if log["train"]:
        left.plot([r["step"] for r in log["train"]], [r["loss"] for r in log["train"]])
    left.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    if log["val"]:
        steps = [r["step"] for r in log["val"]]
        right.plot(steps, [r["psnr"] - r["input_psnr"] for r in log["val"]], marker="o", label="all (EMA model)")
        for source in log["val"][-1].get("sources", {}):
            right.plot(steps, [r["sources"][source]["psnr"] - r["sources"][source]["input_psnr"]
                               if source in r.get("sources", {}) else np.nan for r in log["val"]], label=source)
        right.axhline(0.0, color="gray", linestyle="--", label="rainy input")
        right.legend()
    right.set(xlabel="step", ylabel="PSNR gain over the input (dB, Y)", title="validation")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def train(settings: TrainSettings, run_dir: str | Path, resume: bool = False, stop_after: int | None = None,
          config: ModelConfig | None = None) -> dict:
    """Train into `run_dir` (last.pt, best.pt, log.json, curves.png); returns the log.

    `resume` continues from run_dir/last.pt exactly; `stop_after` ends this call after that step
    (as an interruption would); `config` overrides the named config (tests)."""
    run_dir = Path(run_dir)
    rank, world, device = _distributed(settings)
    last = run_dir / "last.pt"
    state = None
    if resume:
        if not last.is_file():
            raise DerainError(f"{last}: nothing to resume (no such file)")
        try:
            state = torch.load(last, map_location=device, weights_only=True)
            TrainSettings.from_dict(state["settings"]), state["config"], state["step"]  # a run of ours?
        except Exception as error:  # torch raises zip, pickle and key errors of many kinds
            raise DerainError(f"{last}: not a derain training checkpoint, or damaged ({type(error).__name__}); "
                              "start a new run in another folder") from None
        stored = TrainSettings.from_dict(state["settings"])
        settings = replace(stored, workers=settings.workers, device=settings.device,
                           threads=settings.threads or stored.threads)
        config = ModelConfig.from_dict(state["config"])
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)  # the same initial weights and centroids on every rank
    model = build_model(config or settings.model).to(device)
    if settings.init and state is None:
        _load_weights(model, Path(settings.init))
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    data = TrainingData(settings.data, settings.batch, lambda step: 0, settings.seed, rank)
    if state is not None:
        schedule = Schedule(**{**state["schedule"], "phases": [tuple(p) for p in state["schedule"]["phases"]]})
    else:
        schedule = plan(settings, time_steps(model, settings, data, device) if settings.time_budget else None)
    data.patch_at, data.length = schedule.patch_at, schedule.steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.peak_lr, weight_decay=settings.weight_decay)
    ema = WeightEMA(model, settings.ema)
    log: dict = {"settings": settings.to_dict(), "schedule": asdict(schedule), "train": [], "val": [], "best": None}
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        ema.model.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].cpu())
        start, log = state["step"], state["log"]
    # broadcast_buffers=False: rank 0's NAB centroids would overwrite the others' on every forward;
    # the model all-reduces their statistics instead, so all ranks move them alike.
    live = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False) if world > 1 else model
    if settings.compile:  # checkpoints keep saving `model`: the compiled wrapper shares its weights
        live = compiled(live)
    validation = data.validation_pairs() if rank == 0 else []
    validation_sources = data.validation_sources()
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    loss_of = loss_fn(settings)
    # Its own generator: a DataLoader iterator draws a seed, which would shift torch's RNG on resume.
    loader = DataLoader(data, batch_size=None, sampler=range(start, schedule.steps), num_workers=settings.workers,
                        generator=torch.Generator())
    end = schedule.steps if stop_after is None else min(schedule.steps, stop_after)
    reseed_stop = int(settings.reseed_until * schedule.steps)
    model.train()
    window: list[float] = []
    progress = tqdm(total=end - start, desc=f"train {schedule.steps} steps", unit="step", disable=rank != 0)
    started = time.perf_counter()
    # One row per process lifetime (a session, a resume): how long it ran, on how many threads.
    segment = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "first_step": start, "last_step": start,
               "wall_s": 0.0, "cpu_s": 0.0, "threads": torch.get_num_threads(), "host": os.uname().nodename}
    log.setdefault("segments", []).append(segment)
    cpu_started = time.process_time()
    step = start
    for step, (rainy, clean) in enumerate(loader, start=start):
        if step >= end:
            break
        for module in model.nonlocal_attentions():
            module.reseed = step < reseed_stop
        rainy, clean = rainy.to(device), clean.to(device)
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(step)
        with torch.autocast(rainy.device.type, dtype=torch.bfloat16, enabled=settings.bf16):
            loss = loss_of(live(rainy).float(), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        ema.update(model)
        window.append(loss.item())
        progress.update()
        done = step + 1
        if rank == 0 and (done % settings.log_every == 0 or done == end):
            log["train"].append({"step": done, "loss": float(np.mean(window)), "lr": schedule.lr_at(step),
                                 "patch": schedule.patch_at(step),
                                 "seconds": round(time.perf_counter() - started, 1)})
            progress.set_postfix(loss=f"{np.mean(window):.4f}", patch=schedule.patch_at(step))
            window = []
        if rank == 0 and validation and (done % settings.val_every == 0 or done == schedule.steps):
            rows, _ = score_pairs(ema.model, validation, progress=False)
            scores = mean_scores(rows)
            log["val"].append({"step": done, **scores, "sources": source_scores(rows, validation_sources)})
            if log["best"] is None or scores["psnr"] > log["best"]["psnr"]:
                log["best"] = {"step": done, **scores}
                _save_best(run_dir / "best.pt", ema.model, settings, log, log["best"])
        if rank == 0 and (done % settings.save_every == 0 or done == end):
            segment.update(last_step=done, wall_s=round(time.perf_counter() - started, 1),
                           cpu_s=round(time.process_time() - cpu_started, 1))
            _save_state(last, model, ema, optimizer, done, schedule, settings, log)
            _write_log(run_dir, log)
    progress.close()
    model.eval()
    if rank == 0 and end == schedule.steps:
        # The EMA at the end of the schedule: what to ship when validation cannot be trusted to pick
        # (a fine-tune from a checkpoint that has seen the validation scenes favours its first steps).
        # With validation, the loop scored these weights at the last step.
        _save_best(run_dir / "final.pt", ema.model, settings, log, log["val"][-1] if validation else None)
        if not validation:
            _save_best(run_dir / "best.pt", ema.model, settings, log, None)
    if world > 1:
        dist.barrier()
    return log


def _load_weights(model: DerainNet, path: Path) -> None:
    """The weights of a derain checkpoint of the same config; the rain mask's fixed thresholds come
    from the config (checkpoints from before they were fixed carry drifted learned values)."""
    if not path.is_file():
        raise DerainError(f"{path}: no such checkpoint to start from")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("config", {}).get("name") != model.config.name:
        raise DerainError(f"{path}: a {payload.get('config', {}).get('name')!r} checkpoint, not {model.config.name!r}")
    weights = {k: v for k, v in payload["state_dict"].items() if not k.startswith("rain_mask.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("rain_mask.") for k in missing):
        raise DerainError(f"{path}: weights do not fit the {model.config.name} network")


def _save_best(path: Path, model: DerainNet, settings: TrainSettings, log: dict, validation: dict | None) -> None:
    """A derain checkpoint; meta `validation` scores these weights, `best` the run's best step (not the
    same weights in final.pt)."""
    meta = {"training": settings.to_dict(), "schedule": log["schedule"], "best": log["best"], "validation": validation}
    save_checkpoint(model, path, meta)


def _write_log(run_dir: Path, log: dict) -> None:
    with atomic_path(run_dir / "log.json") as tmp:
        tmp.write_text(json.dumps(log, indent=1))
    try:
        plot_log(log, run_dir / "curves.png")
    except ModuleNotFoundError:  # matplotlib is the `plot` extra; the JSON log has everything
        pass
