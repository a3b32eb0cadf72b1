"""The one training loop, shared by the VAE and the dynamics network.

    run = train(model, train_set, val_set, cfg, out="runs/vae-cpu", name="vae", resume=False)

Contract: `model.loss(batch) -> (loss, logs)` where `batch` is whatever the dataset's default
collation yields, and `model.config` is a dataclass saved beside the weights.

A run lives in one folder: `config.json`, `metrics.jsonl`, `tb/` (TensorBoard), `ckpt/state.pt`
(the resumable training state, written to a temp file and renamed over the old one only once it
is complete) and `model/` (the exported weights: `<name>.safetensors` + `<name>.json`).
The batch drawn at step s and every random draw inside step s are seeded by (seed, s, rank), so a
killed run resumed from its checkpoint continues exactly as if it had never stopped. Under
`torchrun` the same command trains with DistributedDataParallel (one process per GPU or CPU rank).

Testing hook: with `INFINIPAINT_STOP_AT_STEP=k` in the environment, every process of a run exits
at once right after step k's checkpoint (`os._exit(STOPPED_EXIT)`: no cleanup, no final
validation, as if it had been killed there), so a test can stop a run at a step of its choosing
and check that `--resume` continues it bit for bit. Unset (or 0), nothing changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from infinipaint.errors import CheckpointError, CommandError, InfinipaintError
from infinipaint.precision import PRECISIONS, resolve_bf16

from .config import TrainConfig

STATE_FORMAT = 1
STOP_AT_STEP = "INFINIPAINT_STOP_AT_STEP"  # testing hook (see the module docstring)
STOPPED_EXIT = 137  # the exit status of a run stopped by that hook: a shell's for a SIGKILLed process


class TrainingError(InfinipaintError):
    """Training cannot go on (a NaN loss, for instance); the last good checkpoint is kept."""


# ------------------------------------------------------------------------ device and precision
@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where and how tensors run: chosen once, here, for the whole process."""

    device: torch.device
    precision: str
    channels_last: bool
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def to(self, batch: Any) -> Any:
        """Move a (nested) batch to the device; 4-D float tensors go channels_last if asked."""
        if isinstance(batch, torch.Tensor):
            batch = batch.to(self.device, non_blocking=True)
            if self.channels_last and batch.ndim == 4:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return batch
        if isinstance(batch, dict):
            return {k: self.to(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to(v) for v in batch)
        return batch

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model


def runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device (and start DDP under torchrun)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    # "auto": bf16 autocast is slower than fp32 where the hardware emulates it
    precision = "bf16" if resolve_bf16(PRECISIONS[cfg.precision], device) else "fp32"
    return Runtime(device, precision, cfg.channels_last, rank, world_size)


def _stop_at_step(cfg: TrainConfig) -> int:
    """The step of the testing hook `STOP_AT_STEP` (0: none); CommandError unless it is a step the
    run checkpoints."""
    text = os.environ.get(STOP_AT_STEP, "").strip()
    if not text or text == "0":
        return 0
    if not text.isdigit() or int(text) % cfg.ckpt_every and int(text) != cfg.steps:
        raise CommandError(f"{STOP_AT_STEP}={text!r}: must be a step the run checkpoints (a multiple of "
                           f"ckpt_every = {cfg.ckpt_every}, or the last step {cfg.steps}); unset it to train normally")
    return int(text)


def _any_rank(flag: bool, rt: "Runtime") -> bool:
    """`flag` on any rank (all ranks agree, so they stop at the same step); `flag` in one process."""
    if rt.world_size == 1:
        return flag
    t = torch.tensor([float(flag)], device=rt.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


class StepBatches(Sampler[list[int]]):
    """Batch indices for steps [start, stop): step s draws from a generator seeded by (seed, s, rank).

    Items are drawn uniformly, or in proportion to `weights` (e.g. `MixedWindows.sampling_weights`,
    which give each dataset of a mix its share)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0,
                 weights: np.ndarray | None = None) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank = start, stop, rank
        self.cdf = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"weights must be {n} non-negative numbers with a positive sum")
            self.cdf = np.cumsum(w / w.sum())

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step, self.rank, 1])
            if self.cdf is None:
                yield rng.integers(0, self.n, self.batch_size).tolist()
            else:
                u = rng.random(self.batch_size)
                yield np.minimum(np.searchsorted(self.cdf, u, side="right"), self.n - 1).tolist()

    def __len__(self) -> int:
        return self.stop - self.start


class _LossModule(nn.Module):
    """Wraps `model.loss` as `forward`, so DDP sees the call and syncs gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any):
        return self.model.loss(batch)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


# ----------------------------------------------------------------------------- checkpointing
STATE_TRAILER = b"infinipaint-state-sha256:"  # then the 32-byte digest of everything before it


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the training state atomically (temp file, fsync, rename over the old one), with a
    sha256 of its bytes appended so that a damaged or modified file is refused on resume."""
    import hashlib
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data + STATE_TRAILER + hashlib.sha256(data).digest())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    """The training state at `path`, its checksum verified (states written before it had one load
    without); CheckpointError for anything unusable."""
    import hashlib
    import io

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no training state to resume from") from None
    cut = len(data) - 32 - len(STATE_TRAILER)
    if cut >= 0 and data[cut : cut + len(STATE_TRAILER)] == STATE_TRAILER:
        if hashlib.sha256(data[:cut]).digest() != data[-32:]:
            raise CheckpointError(f"{path}: checksum mismatch, the training state was damaged or modified "
                                  "after it was saved; it cannot be resumed")
        data = data[:cut]
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle garbage, foreign file
        raise CheckpointError(f"{path}: not a readable training state ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: unknown training-state format")
    return state


def _config_dict(config: Any) -> dict[str, Any]:
    return config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)


def _same_model(saved: dict[str, Any], config: Any) -> bool:
    """Whether a checkpoint's model config is `config`. A field added to the config class after the
    checkpoint was written takes its default, so an older run still resumes."""
    try:
        cls = type(config)
        restored = cls.from_dict(saved) if hasattr(cls, "from_dict") else cls(**saved)
    except (TypeError, ValueError):
        return False
    return _config_dict(restored) == _config_dict(config)


class MetricsLog:
    """metrics.jsonl + TensorBoard, main process only."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.file = open(out / "metrics.jsonl", "a")
            self.writer = SummaryWriter(str(out / "tb"))

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        self.file.flush()
        for k, v in values.items():
            self.writer.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.writer.close()


def _clock(seconds: float) -> str:
    """Seconds as tqdm prints elapsed time: mm:ss, or h:mm:ss from an hour."""
    m, sec = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{sec:02d}" if m >= 60 else f"{m:02d}:{sec:02d}"


def plot_curves(out: Path) -> Path | None:
    """`out/curves.png`: the training loss (and a running mean) and every validation metric over
    the steps of `out/metrics.jsonl`; None when matplotlib is missing or nothing was logged yet."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = []
    try:
        with open(out / "metrics.jsonl") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError):
        return None
    train_rows = [r for r in rows if r.get("split") == "train" and "loss" in r]
    val_rows = [r for r in rows if r.get("split") == "val"]
    if not train_rows and not val_rows:
        return None
    keys = [k for k in val_rows[-1] if k not in ("step", "split")] if val_rows else []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if train_rows:
        steps, loss = np.array([r["step"] for r in train_rows]), np.array([r["loss"] for r in train_rows])
        axes[0].plot(steps, loss, color="0.75", lw=0.8, label="train loss")
        k = max(1, len(loss) // 30)
        axes[0].plot(steps[k - 1 :], np.convolve(loss, np.ones(k) / k, mode="valid"), color="C0",
                     label="train loss, running mean")
    if val_rows and "loss" in val_rows[-1]:
        axes[0].plot([r["step"] for r in val_rows], [r.get("loss") for r in val_rows], "o-", color="C3", label="val loss")
    axes[0].set_xlabel("step"), axes[0].set_title("loss"), axes[0].legend(fontsize=8)
    for i, key in enumerate(k for k in keys if k != "loss"):
        axes[1].plot([r["step"] for r in val_rows], [r.get(key) for r in val_rows], "o-", label=key, color=f"C{i % 10}")
    axes[1].set_xlabel("step"), axes[1].set_title("validation"), axes[1].set_yscale("log")
    if len(keys) > 1:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "curves.png"
    tmp = out / "curves.png.tmp"
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------- the loop
def train(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    cfg: TrainConfig,
    out: str | Path,
    name: str,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `model` to `cfg.steps`, resuming from `out/ckpt/state.pt` if asked. Returns a summary."""
    from tqdm import tqdm

    from infinipaint.models.checkpoint import save_weights

    out = Path(out)
    rt = runtime(cfg)
    ckpt = out / "ckpt" / "state.pt"
    run_config = {"component": name, "train": cfg.to_dict(), "model": _config_dict(model.config), **(meta or {})}
    if ckpt.exists() and not resume:
        raise CommandError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not ckpt.exists():
        raise CommandError(f"{out}: nothing to resume (no {ckpt})")

    torch.manual_seed(cfg.seed)
    model = rt.prepare(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, elapsed = 0, 0.0
    if resume:
        state = load_state(ckpt)
        if state["component"] != name or not _same_model(state["model_config"], model.config):
            raise CheckpointError(f"{ckpt}: belongs to a different model ({state['component']}, "
                                  f"{state['model_config']}); it cannot be resumed with this one")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, elapsed = state["step"], state["elapsed"]
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(run_config, indent=2))
    log = MetricsLog(out, rt.is_main)

    wrapped: nn.Module = _LossModule(model)
    if rt.world_size > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    loader = DataLoader(
        train_set,
        batch_sampler=StepBatches(len(train_set), cfg.batch_size, cfg.seed, start, cfg.steps, rt.rank,
                                  weights=getattr(train_set, "sampling_weights", None)),
        num_workers=cfg.num_workers,
        persistent_workers=False,
        pin_memory=rt.device.type == "cuda",
    )

    stop_at = _stop_at_step(cfg)

    def checkpoint(step: int) -> None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):  # every rank: they hold the same weights
            raise TrainingError(f"weights are not finite at step {step}; stopped. The last good "
                                f"checkpoint ({ckpt}) is kept; resume with a lower --lr")
        if rt.is_main:
            save_state(ckpt, {
                "format": STATE_FORMAT, "component": name, "step": step, "elapsed": elapsed,
                "model_config": _config_dict(model.config), "train_config": cfg.to_dict(),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            })
            save_weights(model, out / "model", name, _config_dict(model.config),
                         {"step": step, "train_seconds": round(elapsed, 1), **(meta or {})})
        if step == stop_at:  # the testing hook: "killed" right after this checkpoint, once rank 0 has written it
            if rt.world_size > 1:
                torch.distributed.barrier()
            print(f"{STOP_AT_STEP}={stop_at}: stopped after the checkpoint of step {step}", file=sys.stderr, flush=True)
            os._exit(STOPPED_EXIT)

    def validate(step: int) -> dict[str, float]:
        if val_set is None or len(val_set) == 0:
            return {}
        model.eval()
        sums: dict[str, float] = defaultdict(float)
        with torch.no_grad(), rt.autocast():
            for j in range(cfg.val_batches):
                rng = np.random.default_rng([cfg.seed, j, 2])
                idx = rng.integers(0, len(val_set), cfg.batch_size).tolist()
                batch = rt.to(torch.utils.data.default_collate([val_set[i] for i in idx]))
                torch.manual_seed(step_seed(cfg.seed, 10**9 + j))
                loss, logs = model.loss(batch)
                for k, v in {"loss": float(loss.detach()), **logs}.items():
                    sums[k] += v / cfg.val_batches
        model.train()
        log.write(step, "val", dict(sums))
        if rt.is_main:
            plot_curves(out)  # watch it grow: curves.png beside TensorBoard
        return dict(sums)

    model.train()
    t_begin = t_start = time.perf_counter()
    t_log, n_log = time.perf_counter(), 0
    sums: dict[str, float] = defaultdict(float)
    # With a time limit the bar runs over this process's minutes (where the run will stop), else over the steps.
    timed = cfg.time_limit > 0
    bar = tqdm(total=round(cfg.time_limit * 60) if timed else cfg.steps, initial=0 if timed else start,
               desc=f"train {name}", disable=not rt.is_main, dynamic_ncols=True, unit="s" if timed else "it",
               bar_format="{l_bar}{bar}| {elapsed}/" + _clock(cfg.time_limit * 60) + " {postfix}" if timed else None)
    done = start
    val_logs: dict[str, float] = {}
    try:
        for step, batch in enumerate(loader, start=start):
            batch = rt.to(batch)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            torch.manual_seed(step_seed(cfg.seed, step, rt.rank))
            if hasattr(model, "set_progress"):  # schedules inside the loss (scheduled sampling)
                model.set_progress(step / cfg.steps)
            with rt.autocast():
                loss, logs = wrapped(batch)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss is {float(loss)} at step {step}; stopped. The last good "
                                    f"checkpoint ({ckpt}) is kept; resume with a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                logs["grad_norm"] = float(nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            optimizer.step()

            done = step + 1
            n_log += 1
            for k, v in {"loss": float(loss.detach()), **logs}.items():
                sums[k] += v
            now = time.perf_counter()
            elapsed, t_start = elapsed + (now - t_start), now
            if done % cfg.log_every == 0 or done == cfg.steps:
                rate = n_log * cfg.batch_size * rt.world_size / (now - t_log)
                values = {k: v / n_log for k, v in sums.items()}
                log.write(done, "train", {**values, "lr": lr_at(step, cfg), "samples_per_s": rate})
                bar.set_postfix(loss=f"{values['loss']:.4f}", sps=f"{rate:.1f}",
                                **({"step": f"{done}/{cfg.steps}"} if timed else {}))
                sums.clear()
                t_log, n_log = now, 0
            bar.update(min(round(now - t_begin), bar.total) - bar.n if timed else 1)
            if done == cfg.steps:
                break
            if cfg.val_every and done % cfg.val_every == 0:
                val_logs = validate(done)
            out_of_time = cfg.time_limit > 0 and _any_rank(now - t_begin > cfg.time_limit * 60, rt)
            if out_of_time and not (cfg.val_every and done % cfg.val_every == 0):
                val_logs = validate(done)  # a stopped run says where it stands
            if done % cfg.ckpt_every == 0 or out_of_time:
                checkpoint(done)
            if out_of_time:
                bar.write(f"time limit of {cfg.time_limit} min reached at step {done}; continue with --resume")
                break
        if done >= cfg.steps:
            val_logs = validate(done)
            checkpoint(done)
    finally:
        bar.close()
        log.close()
        if rt.is_main:
            plot_curves(out)
    return {"step": done, "elapsed": elapsed, "val": val_logs, "out": str(out)}
