"""`infinipaint recipe tiny|cpu`: a world model from nothing, in one command.

    infinipaint recipe tiny --out runs/tiny              # about 10 minutes on a 2-core CPU
    infinipaint recipe cpu --out runs/cpu                # the recipe of the shipped weights/cpu: hours
    infinipaint recipe cpu --out runs/cpu --dry-run      # the commands and the time estimate only

A recipe is a list of ordinary `infinipaint` commands: record the datasets (`generate`, into
`--data`, default `data/`), train the VAE, train the dynamics network on the VAE's latents (its
latent cache is built on the way), evaluate the result. Before it starts it prints every command
and an estimate of its time on an idle 2-core CPU (from measured step rates). Each
command is printed again as it runs. A step whose output is complete is skipped and a training run
that was stopped is continued (`--resume`), so the same line run again after a kill or a reboot
goes on where it stopped. The world model is the last training run's `model/` folder: give it to
`dream`, `evaluate`, `rollout` or `bench` as `--model OUT/NAME`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infinipaint.errors import CommandError


@dataclass(frozen=True)
class Step:
    """One command of a recipe. `kind` says how to tell it is done: "generate" (always run: it
    keeps finished shards and makes the rest), "train" (done when its run folder's model has all
    the run's steps; resumed when the folder holds a checkpoint), "evaluate" (done when its
    `metrics.json` is newer than the model it evaluates). `args` may name `{data}` (the dataset
    root) and `{out}` (the recipe's folder). `minutes`: its time on an idle 2-core CPU, estimated from
    measured step rates."""

    name: str
    kind: str
    args: tuple[str, ...]
    minutes: float

    def argv(self, data: Path, out: Path) -> list[str]:
        return [a.format(data=data, out=out) for a in self.args]

    def target(self, data: Path, out: Path) -> Path:
        """The folder this step writes: the value of its `--out`."""
        return self._value("--out", data, out)

    def model(self, data: Path, out: Path) -> Path:
        """The model folder an evaluation reads: its `--model`'s `model/`."""
        return self._value("--model", data, out) / "model"

    def _value(self, flag: str, data: Path, out: Path) -> Path:
        argv = self.argv(data, out)
        return Path(argv[argv.index(flag) + 1])


def _newer(result: Path, model: Path) -> bool:
    """Whether `result` exists and was written after every file of the model folder `model`."""
    try:
        return result.stat().st_mtime >= max((f.stat().st_mtime for f in model.iterdir()), default=0)
    except OSError:
        return False


def _generate(name: str, minutes: float, *flags: str) -> Step:
    return Step(f"record {name}", "generate", ("generate", "--out", f"{{data}}/{name}", "--workers", "2", *flags), minutes)


RECIPES: dict[str, tuple[str, tuple[Step, ...]]] = {
    "tiny": (
        "a small world model to see the whole chain work: strokes where they are drawn, in black; the other "
        "colours, the eraser and the toolbar are not learned at this budget",
        (
            _generate("tiny", 0.2, "--episodes", "60", "--seed", "0", "--min-steps", "200", "--max-steps", "300"),
            Step("train the VAE", "train", (
                "train", "vae", "--data", "{data}/tiny", "--preset", "tiny", "--out", "{out}/vae",
                "--model-set", "latent=fsq", "--model-set", "output=palette", "--model-set", "encoder_kernel=1",
                "--model-set", "channels=[32]", "--model-set", "train_crop=112",
                "--steps", "1000", "--batch-size", "16", "--val-every", "500"), 3.0),
            Step("train the dynamics", "train", (
                "train", "dynamics", "--data", "{data}/tiny", "--vae", "{out}/vae", "--preset", "tiny",
                "--model-set", "hidden=32", "--model-set", "blocks=2", "--model-set", "groups=8",
                "--model-set", "dilations=[1,2]", "--model-set", "context=32", "--model-set", "norm=channel",
                "--model-set", "train_crop=24", "--model-set", "unroll=2", "--model-set", "hard_same=1.0",
                "--out", "{out}/dynamics", "--steps", "1000", "--batch-size", "16", "--val-every", "500"), 5.5),
            Step("evaluate", "evaluate", (
                "evaluate", "--model", "{out}/dynamics", "--data", "{data}/tiny", "--split", "test", "--episodes", "4",
                "--max-steps", "150", "--ceiling-every", "0", "--out", "{out}/eval"), 0.5),
        ),
    ),
    "cpu": (
        "the kind of model shipped in weights/cpu, the way its model card trains its dynamics (four stages); its VAE "
        "from scratch with the cpu preset (the shipped VAE was fine-tuned from an earlier one of the same body)",
        (
            _generate("cpu", 1.1, "--episodes", "450", "--seed", "0"),
            _generate("drag", 0.4, "--episodes", "160", "--seed", "11", "--drag-work", "1", "--edge-work", "1"),
            _generate("edge", 0.4, "--episodes", "150", "--seed", "7", "--edge-work", "2"),
            _generate("eval-long", 0.2, "--episodes", "20", "--seed", "1", "--min-steps", "1000", "--max-steps", "1000"),
            Step("train the VAE", "train", (
                "train", "vae", "--data", "{data}/cpu", "--preset", "cpu", "--out", "{out}/vae"), 217.0),
            Step("train the dynamics", "train", (
                "train", "dynamics", "--data", "{data}/cpu", "--vae", "{out}/vae", "--preset", "cpu",
                "--out", "{out}/dynamics"), 117.0),
            Step("train the dynamics, second stage: drags from controls and presses near edges", "train", (
                "train", "dynamics", "--data", "{data}/cpu", "--mix", "{data}/drag=0.25", "--mix", "{data}/edge=0.1",
                "--vae", "{out}/vae", "--init-from", "{out}/dynamics", "--out", "{out}/dynamics-2",
                "--steps", "4500", "--lr", "5e-4", "--warmup", "100"), 88.0),
            Step("train the dynamics, third stage: hard negatives in the loss", "train", (
                "train", "dynamics", "--data", "{data}/cpu", "--mix", "{data}/drag=0.25", "--mix", "{data}/edge=0.1",
                "--vae", "{out}/vae", "--init-from", "{out}/dynamics-2", "--out", "{out}/dynamics-3",
                "--model-set", "hard_same=0.5", "--model-set", "keep_margin=0", "--steps", "1500", "--lr", "5e-4",
                "--warmup", "100"), 26.0),
            Step("train the dynamics, fourth stage: harder negatives", "train", (
                "train", "dynamics", "--data", "{data}/cpu", "--mix", "{data}/drag=0.25", "--mix", "{data}/edge=0.1",
                "--vae", "{out}/vae", "--init-from", "{out}/dynamics-3", "--out", "{out}/dynamics-4",
                "--model-set", "hard_same=1.0", "--model-set", "keep_margin=0", "--steps", "1500", "--lr", "3e-4",
                "--warmup", "50"), 26.0),
            Step("evaluate", "evaluate", (
                "evaluate", "--model", "{out}/dynamics-4", "--data", "{data}/eval-long", "--split", "all",
                "--episodes", "20", "--ceiling-every", "0", "--out", "{out}/eval"), 11.0),
        ),
    ),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="make a world model from nothing: datasets, VAE, dynamics, evaluation",
                       description=__doc__.split("\n")[0])
    p.add_argument("recipe", choices=sorted(RECIPES), help="; ".join(f"{k}: {v[0]}" for k, v in RECIPES.items()))
    p.add_argument("--out", required=True, help="folder of the recipe's runs (created; continued if present)")
    p.add_argument("--data", default="data", help="folder of its datasets (kept apart: another recipe may reuse them)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and the estimate, run nothing")
    p.set_defaults(func=run_recipe)


def train_done(run: Path, component: str) -> bool:
    """Whether the training run in `run` (of `component`, "vae" or "dynamics") made all its steps."""
    try:
        steps = json.loads((run / "config.json").read_text())["train"]["steps"]
        made = json.loads((run / "model" / f"{component}.json").read_text())["meta"]["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return made >= steps


def plan(name: str, data: Path, out: Path) -> list[tuple[Step, list[str], str]]:
    """(step, argv, state) of each step of a recipe: state "done", "resume" or "run"."""
    steps = []
    for step in RECIPES[name][1]:
        argv, target = step.argv(data, out), step.target(data, out)
        if step.kind == "train" and train_done(target, argv[1]):
            state = "done"
        elif step.kind == "train" and (target / "ckpt" / "state.pt").exists():
            state, argv = "resume", argv + ["--resume"]
        elif step.kind == "evaluate" and _newer(target / "metrics.json", step.model(data, out)):
            state = "done"
        else:
            state = "run"
        steps.append((step, argv, state))
    return steps


def _minutes(m: float) -> str:
    return f"{m:.1f} min" if m < 60 else f"{m / 60:.1f} h"


def run_recipe(args: argparse.Namespace) -> int:
    data, out = Path(args.data), Path(args.out)
    steps = plan(args.recipe, data, out)
    left = sum(step.minutes for step, _, state in steps if state != "done")
    print(f"recipe {args.recipe}: {RECIPES[args.recipe][0]}")
    print(f"estimate: {_minutes(left)} on a 2-core CPU"
          + (f" (of {_minutes(sum(s.minutes for s, _, _ in steps))}; the rest is done)" if left < sum(s.minutes for s, _, _ in steps) else ""))
    for i, (step, argv, state) in enumerate(steps, 1):
        mark = {"done": "done  ", "resume": "resume", "run": "      "}[state]
        print(f"  {i}. [{mark}] ~{_minutes(step.minutes):>9}  infinipaint {shlex.join(argv)}")
    if args.dry_run:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    for i, (step, argv, state) in enumerate(steps, 1):
        if state == "done":
            continue
        print(f"\n[{i}/{len(steps)}] {step.name}: infinipaint {shlex.join(argv)}", flush=True)
        code = subprocess.call([sys.executable, "-m", "infinipaint.cli", *argv])
        if code:
            raise CommandError(f"step {i} ({step.name}) failed with exit status {code}; fix the cause and run the "
                               f"same recipe command again: finished steps are kept")
        if step.kind == "train" and not train_done(step.target(data, out), argv[1]):
            raise CommandError(f"step {i} ({step.name}) stopped before its last step (time limit?); run the same "
                               "recipe command again to continue it")
    model = next((s.target(data, out) for s, _, _ in reversed(steps) if s.kind == "train"), out)
    print(f"\nrecipe {args.recipe} finished in {_minutes((time.monotonic() - start) / 60)}; the world model: {model / 'model'}")
    for step, _, _ in steps:
        if step.kind == "evaluate":
            print(f"its evaluation: {step.target(data, out) / 'report.md'}")
    print(f"paint in it: infinipaint dream --model {model}")
    return 0
