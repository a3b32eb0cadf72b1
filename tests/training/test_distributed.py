"""The shared loop under `torchrun`: two CPU processes (gloo DDP) train the tiny VAE as one process
does with their two batches together, and only rank 0 writes files or draws a progress bar."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from infinipaint.models.checkpoint import load_weights
from infinipaint.training.loop import StepBatches, load_state, lr_at, step_seed

from .conftest import FP32, metrics

STEPS = 4


def global_batch_run(data: Path) -> tuple[dict[str, torch.Tensor], list[float]]:
    """What 2-process DDP computes, in one process: each step's gradient is that of the mean loss of
    the global batch, the two batches (and the random draws of the loss) each rank draws for that
    step; AdamW and the clip then take that one gradient. Returns the final weights and rank 0's
    loss at each step (what rank 0 logs)."""
    from infinipaint.data.datasets import FrameDataset
    from infinipaint.models.vae import VAE, VAE_PRESETS
    from infinipaint.training.config import TRAIN_PRESETS

    cfg = replace(TRAIN_PRESETS["vae"]["tiny"], steps=STEPS)
    train_set = FrameDataset(data, "train")
    torch.manual_seed(cfg.seed)  # as `train vae` builds the model
    model = VAE(VAE_PRESETS["tiny"]).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = [list(StepBatches(len(train_set), cfg.batch_size, cfg.seed, 0, STEPS, rank)) for rank in (0, 1)]
    logged = []
    for step in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        optimizer.zero_grad()
        for rank in (0, 1):
            batch = default_collate([train_set[i] for i in batches[rank][step]])
            torch.manual_seed(step_seed(cfg.seed, step, rank))
            loss, _ = model.loss(batch)
            (loss / 2).backward()  # the mean over the global batch: DDP averages the ranks' gradients
            if rank == 0:
                logged.append(loss.item())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
    return model.state_dict(), logged


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_global_batch(small_dataset, tmp_path):
    out, logs = tmp_path / "run", tmp_path / "logs"
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node", "2",
           "--log-dir", str(logs), "--redirects", "3",  # each rank's stdout and stderr into its own file
           "-m", "infinipaint.cli", "train", "vae", "--data", str(small_dataset), "--preset", "tiny", "--out", str(out),
           *FP32, "--device", "cpu", "--steps", str(STEPS), "--log-every", "1", "--val-every", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stdout, stderr = ({r: next(logs.glob(f"*/attempt_0/{r}/{name}.log")).read_text() for r in (0, 1)}
                      for name in ("stdout", "stderr"))

    # One process with the global batch: the same losses and weights (bit for bit on one thread
    # per process; other thread counts may round convolutions differently). The command itself
    # cannot be run on one process with that batch: a process draws the batch of (seed, step,
    # rank), so 2 x --batch-size on rank 0 would draw other frames and other random crops.
    weights, losses = global_batch_run(small_dataset)
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # one writer: every step logged once
    assert [r["loss"] for r in rows] == pytest.approx(losses, rel=1e-5)
    assert losses[-1] < 0.9 * losses[0]  # and they are losses of a net that learns, not constants
    trained, _ = load_weights(out / "model", "vae")
    assert trained.keys() == weights.keys()
    assert all(torch.allclose(trained[k], weights[k], rtol=1e-4, atol=1e-6) for k in weights)
    # Both ranks end with the same weights: their validations (the same val frames) agree exactly.
    summaries = [json.loads(stdout[r].strip().splitlines()[-1]) for r in (0, 1)]
    assert summaries[0]["val"] == summaries[1]["val"] and summaries[0]["step"] == STEPS

    # One writer: one checkpoint, whole (its checksum verified), one TensorBoard file, no temp files.
    state = load_state(out / "ckpt" / "state.pt")
    assert state["step"] == STEPS and all(torch.equal(state["model"][k], trained[k]) for k in trained)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.parent.name != "tb") == \
        ["ckpt/state.pt", "config.json", "curves.png", "metrics.jsonl", "model/vae.json", "model/vae.safetensors"]
    assert len(list((out / "tb").iterdir())) == 1
    # One progress bar: rank 0 draws it, rank 1 none.
    assert "train vae" in stderr[0] and f"{STEPS}/{STEPS}" in stderr[0]
    assert "train vae" not in stderr[1] and "%|" not in stderr[1]
