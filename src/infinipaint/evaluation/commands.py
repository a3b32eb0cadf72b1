"""Evaluation commands: `evaluate`, `rollout` and `bench`.

    infinipaint evaluate --model runs/dyn/model --data data/cpu [--episodes 20] [--out eval/cpu]
    infinipaint evaluate --model A --model B --data data/cpu --out eval/ab      # one plot, two models
    infinipaint evaluate --model A --data data/cpu --compare eval/old --out eval/ab
    infinipaint rollout --model DIR --actions session.json [--out rollout] [--raw] [--start F.png] [--save-frames]
                        [--layout column]
    infinipaint bench minipaint            # Minipaint step time, median and p95
    infinipaint bench --model DIR --out out/bench    # everything, also written as out/bench/bench.json
    infinipaint bench soak --minutes 30 [--model DIR] [--out DIR] [--save DIR]   # a long viewer session
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infinipaint.errors import CommandError

# torch (and `infinipaint.precision`, which imports it) is imported only when a command runs:
# `bench soak` sets the OpenMP environment first, and `--help` stays instant.

SOAK_FLAGS = {"minutes": "--minutes", "every": "--every", "save": "--save", "gif_seconds": "--gif-seconds",
              "save_frames": "--save-frames"}  # bench options of the soak alone (None unless given)


def register(sub: argparse._SubParsersAction) -> None:
    register_eval(sub)
    p = sub.add_parser("evaluate", help="long rollouts of a world model on held-out episodes")
    p.add_argument("--model", action="append", required=True, metavar="DIR",
                   help="world-model directory (vae.* + dynamics.*) or a run folder (runs/NAME: its model/); "
                        "repeat to compare models")
    p.add_argument("--data", required=True, help="dataset directory (infinipaint generate --out)")
    p.add_argument("--episodes", type=int, default=20, help="held-out episodes, the first N of the split")
    p.add_argument("--split", default="test", choices=["test", "val", "all"],
                   help="which held-out split; 'all' for a dataset of its own seed that no model was trained on "
                        "(e.g. the 1000-step episodes of data/eval-long)")
    p.add_argument("--out", default="eval", help="output directory")
    p.add_argument("--max-steps", type=int, default=None, help="stop every episode after this many steps")
    p.add_argument("--ceiling-every", type=int, default=1,
                   help="compute the VAE ceiling every N steps (0: never; it costs an encode + decode)")
    p.add_argument("--strip-episodes", type=int, default=3, help="episodes shown in strips.png")
    p.add_argument("--strip-steps", type=int, nargs="+", default=None, help="steps shown in strips.png")
    p.add_argument("--compare", action="append", default=[], metavar="DIR",
                   help="earlier results (DIR/metrics.json) to draw on the same axes")
    _runtime(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("rollout", help="replay an action file through Minipaint and a world model")
    p.add_argument("--model", required=True, help="world-model directory (vae.* + dynamics.*) or a run folder")
    p.add_argument("--actions", required=True, help='JSON {"actions": [[x, y, down], ...]}, raw pointer events')
    p.add_argument("--out", default="rollout", help="output directory")
    p.add_argument("--raw", action="store_true", help="the entries are model steps already (skip ActionStream)")
    p.add_argument("--start", help="start from this 224x224 RGB Minipaint screenshot (PNG) instead of a fresh screen")
    p.add_argument("--save-frames", action="store_true", help="also write frames.npz (uint8 truth and pred)")
    p.add_argument("--layout", default="default",
                   help="Minipaint layout by name (a key of minipaint.LAYOUTS): the truth, and the layout "
                        "--start's toolbar is read on")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="torch: the model folder in PyTorch, scored by the evaluation harness; onnx: an "
                        "`infinipaint export onnx` folder through onnxruntime, without torch (exact pixels and PSNR "
                        "against Minipaint, and the step time)")
    _runtime(p)
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("reference", help="a model's quality fingerprint: its rollout of one fixed episode, "
                                         "compared with (or written to) DIR/reference.json")
    p.add_argument("--model", default="weights/cpu", help="world-model directory (default: weights/cpu)")
    p.add_argument("--write", action="store_true", help="record the fingerprint in DIR/reference.json")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("bench", help="time Minipaint, the world model and training; or soak the viewer")
    p.add_argument("target", nargs="?", default="all", choices=["all", "minipaint", "model", "onnx", "soak"],
                   help="all; only Minipaint; Minipaint + world-model latency without training; onnx: the model "
                        "exported to ONNX, its onnxruntime latency beside PyTorch's and the share of identical pixels; "
                        "or soak: a long headless real-time viewer session and its save (RSS every minute, fps, "
                        "latency, save time and peak memory)")
    p.add_argument("--model", help="world-model directory or run folder (default: weights/cpu, unless --preset is given)")
    p.add_argument("--preset", default=None, choices=["tiny", "cpu", "paper"],
                   help="time an untrained model of this architecture instead of --model; training batch sizes "
                        "(default: cpu)")
    p.add_argument("--episodes", type=int, default=4, help="agent episodes in the Minipaint action stream")
    p.add_argument("--batch", type=int, default=16, help="batch of the throughput measurement")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per world-model stage")
    p.add_argument("--train-steps", type=int, default=3, help="timed optimizer steps per network")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast (default: bf16 where the device has it natively)")
    _window(p)
    p.add_argument("--minutes", type=float, default=None, help="soak: minutes of pointer samples to replay in real "
                   "time (the run takes that long; default 30)")
    p.add_argument("--every", type=float, default=None, metavar="SECONDS",
                   help="soak: seconds between RSS readings (default 60)")
    p.add_argument("--save", metavar="DIR", help="soak: keep the saved session here (default: a temp folder, removed)")
    p.add_argument("--gif-seconds", type=float, default=None, metavar="S",
                   help="soak: seconds of steps in session.gif (default: the viewer's; 0: the whole session)")
    p.add_argument("--save-frames", action="store_true", default=None,
                   help="soak: also save frames.npz of the whole session")
    p.add_argument("--out", help="also write DIR/bench.json (soak: DIR/soak.json)")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.set_defaults(func=bench)


def _runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--fp32", action="store_true",
                   help="run the model without bf16 autocast (default: bf16 where the device has it natively)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _window(p)


def _bf16(args: argparse.Namespace) -> bool | None:
    """`--fp32`: fp32; else None, bf16 where the device has it natively (`infinipaint.precision`)."""
    return False if args.fp32 else None


def _window(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=int, default=None, metavar="CELLS",
                   help="run the dynamics on a window of CELLS latent cells around the cursor "
                        "(default: the crop the model was trained on; 0: the whole map)")
    p.add_argument("--keep-margin", type=float, default=None, metavar="LOGIT",
                   help="FSQ dynamics: added to the logit of each latent value staying as it is "
                        "(default: the one saved with the model)")


def _set_threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_many
    from .report import comparison_rows

    if args.episodes < 1 or (args.max_steps is not None and args.max_steps < 1) or args.ceiling_every < 0:
        raise CommandError("--episodes and --max-steps must be >= 1, --ceiling-every >= 0")
    _set_threads(args.threads)
    results = evaluate_many(args.model, args.data, out=args.out, compare=args.compare, episodes=args.episodes,
                            split=args.split, max_steps=args.max_steps, ceiling_every=args.ceiling_every,
                            strip_episodes=args.strip_episodes, strip_steps=args.strip_steps,
                            device=args.device, bf16=_bf16(args), progress=not args.quiet, window=args.window,
                            keep_margin=args.keep_margin)
    for m in results:
        print(f"{m['model'].get('label', '?')}:")
        for what, _, _, value in comparison_rows(m)[:7]:
            print(f"  {what}: {value}")
    print(f"written to {args.out}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from .reference import FILE, compare, reference_scores, write_reference

    if args.write:
        print(f"wrote {write_reference(args.model)}")
        return 0
    path = Path(args.model) / FILE
    if not path.is_file():
        raise CommandError(f"{path}: no such file (record one with --write)")
    current = reference_scores(args.model)
    problems = compare(current, json.loads(path.read_text()))
    mean = {k: sum(current[k]) / len(current[k]) for k in ("ssim", "exact_share")}
    print(f"mean SSIM {mean['ssim']:.4f}, mean exact share {mean['exact_share']:.4f} "
          f"over {current['steps']} steps: " + ("; ".join(problems) if problems else f"as recorded in {path}"))
    return 1 if problems else 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from infinipaint.minipaint import LAYOUTS

    if args.layout not in LAYOUTS:
        raise CommandError(f"unknown layout {args.layout!r}; known: {', '.join(LAYOUTS)}")
    if args.backend == "onnx":
        return rollout_onnx(args)

    from .rollout import rollout

    _set_threads(args.threads)
    m = rollout(args.model, args.actions, out=args.out, raw=args.raw, start=args.start, save_frames=args.save_frames,
                device=args.device, bf16=_bf16(args), progress=not args.quiet, window=args.window,
                keep_margin=args.keep_margin, layout=args.layout)
    n = len(m["steps"])
    print(f"{n} steps: SSIM step 1 {m['ssim'][0]:.4f}, last {m['ssim'][-1]:.4f}; PSNR step 1 {m['psnr'][0]:.1f} dB, "
          f"last {m['psnr'][-1]:.1f} dB; exact share last {m['exact_share'][-1]:.3f}; written to {args.out}")
    return 0


def rollout_onnx(args: argparse.Namespace) -> int:
    """`rollout --backend onnx`: onnxruntime on an exported folder; torch is never imported."""
    from infinipaint.onnx_backend import rollout_onnx

    given = [flag for flag, on in (("--start", args.start), ("--device", args.device != "auto"), ("--fp32", args.fp32),
                                   ("--window", args.window is not None), ("--keep-margin", args.keep_margin is not None)) if on]
    if given:
        raise CommandError(f"{', '.join(given)}: not with --backend onnx (an export runs fp32 on the CPU, with the window "
                           "and keep margin it was exported with; `infinipaint export onnx --window/--keep-margin`)")
    m = rollout_onnx(args.model, args.actions, out=args.out, raw=args.raw, save_frames=args.save_frames,
                     layout=args.layout, threads=args.threads or None, progress=not args.quiet)
    ms = sorted(m["step_ms"])
    print(f"{len(m['steps'])} steps (onnxruntime): exact share step 1 {m['exact_share'][0]:.4f}, last "
          f"{m['exact_share'][-1]:.4f}; PSNR last {m['psnr'][-1]:.1f} dB; step + decode median {ms[len(ms) // 2]:.1f} ms; "
          f"written to {args.out}")
    return 0


def bench(args: argparse.Namespace) -> int:
    if args.target == "soak":
        from infinipaint.viewer.commands import session_environment

        session_environment()  # as `infinipaint dream` runs; before torch is imported
        return soak(args)
    given = [flag for name, flag in SOAK_FLAGS.items() if getattr(args, name) is not None]
    if given:
        raise CommandError(f"{', '.join(given)}: only for `bench soak`, not `bench {args.target}`")

    from infinipaint.precision import resolve_bf16

    from . import bench as b

    _set_threads(args.threads)
    if min(args.batch, args.repeats, args.train_steps, args.episodes) < 1:
        raise CommandError("--batch, --repeats, --train-steps and --episodes must be >= 1")
    device = _device(args)
    bf16 = resolve_bf16(_bf16(args), device)
    results: dict = {**b.environment(device), "bf16": bf16}
    if args.target == "onnx" and (args.preset or device.type != "cpu" or args.window is not None
                                  or args.keep_margin is not None):
        raise CommandError("bench onnx times a trained --model as saved, on the CPU (no --preset, --window, "
                           "--keep-margin; --device cpu)")
    results["minipaint_step"] = b.bench_minipaint(episodes=args.episodes)
    if args.target == "onnx":
        from infinipaint.viewer.commands import DEFAULT_MODEL

        frames, _ = b.bench_frames()
        results["onnx"] = {"model": str(args.model or DEFAULT_MODEL),
                           **b.bench_onnx(args.model or DEFAULT_MODEL, frames, b.bench_stream(), args.repeats,
                                          threads=args.threads or None)}
    elif args.target != "minipaint":
        wm, source = _bench_model(args, device)
        frames, actions = b.bench_frames()
        results["world_model"] = {"source": source, **b.bench_world_model(wm, frames, actions, args.batch, args.repeats,
                                                                          stream=b.bench_stream())}
        results["ratios_vs_minipaint"] = b.ratios(results["minipaint_step"], results["world_model"])
        if args.target == "all":
            from infinipaint.training.config import TRAIN_PRESETS

            batch = {c: TRAIN_PRESETS[c][args.preset or "cpu"].batch_size for c in ("vae", "dynamics")}
            results["training"] = b.bench_training(wm.vae.config, wm.dynamics.config, frames, actions, batch,
                                                   device, bf16=bf16, steps=args.train_steps)
        results["targets"] = {"full_step_ms": 20.0, "minipaint_step_ms": 0.3,
                              "full_step_met": results["world_model"]["full_step"]["median_ms"] <= 20.0,
                              "minipaint_step_met": results["minipaint_step"]["median_ms"] <= 0.3}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(_bench_text(results))
    return 0


def soak(args: argparse.Namespace) -> int:
    """`bench soak`: the world model (--model, default weights/cpu; or an untrained --preset) in a
    long headless real-time viewer session; the figures printed and written to --out/soak.json.
    The caller (`bench`) has set the session's environment before torch was imported."""
    import math
    import os

    from infinipaint.viewer.inference import THREADS

    from . import bench as b

    minutes = b.SOAK_MINUTES if args.minutes is None else args.minutes
    every = b.SOAK_EVERY if args.every is None else args.every
    if not (math.isfinite(minutes) and minutes > 0 and math.isfinite(every) and every > 0):
        raise CommandError(f"--minutes and --every must be finite numbers > 0, got {minutes} and {every}")
    if args.gif_seconds is not None and not (math.isfinite(args.gif_seconds) and args.gif_seconds >= 0):
        raise CommandError(f"--gif-seconds must be a finite number >= 0 (0: the whole session), got {args.gif_seconds}")
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    device = _device(args)
    wm, source = _bench_model(args, device)
    quiet = args.json
    r = b.bench_soak(wm, minutes, save_dir=args.save, threads=args.threads or THREADS, every=every,
                     gif_seconds=args.gif_seconds, save_frames=bool(args.save_frames),
                     progress=None if quiet else print)
    r = {**b.environment(device), "bf16": bool(wm.bf16), "model": source, **r}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "soak.json").write_text(json.dumps(r, indent=2) + "\n")
    print(json.dumps(r, indent=2) if quiet else _soak_text(r))
    return 0


def _soak_text(r: dict) -> str:
    s, lat = r["save"], r["step_ms"]
    lines = [f"soak of {r['model']}: {r['minutes']:g} min, {r['samples']:,} samples, {r['steps']:,} steps, "
             f"device {r['device']}, {r['threads']} inference thread(s), bf16 {r['bf16']}",
             "RSS: " + ", ".join(f"{t / 60:.1f} min {mb:.0f} MB" for t, mb in r["rss_mb"])
             + f"; start {r['rss_start_mb']:.0f} MB, end {r['rss_end_mb']:.0f} MB",
             f"UI {r['ui_fps']:.1f} fps; step latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, "
             f"p99 {lat['p99']:.1f} ms; samples dropped {r['dropped_samples']}, missed {r['missed_samples']}, "
             f"late {r['late_samples']}; frames on disk {r['frames_on_disk_mb']:.1f} MB",
             f"save: {s['s']:.1f} s, peak RSS {s['peak_rss_mb']:.0f} MB ({s['peak_above_run_mb']:+.0f} MB over the "
             f"session's; {'VmHWM' if s['peak_exact'] else 'polled'}); "
             + ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in s["files"].items())]
    return "\n".join(lines)


def _device(args: argparse.Namespace):
    """`--device` as a torch device; auto: CUDA where there is one."""
    import torch

    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(args.device)


def _bench_model(args: argparse.Namespace, device):
    from infinipaint.models.dynamics import DYNAMICS_PRESETS, LatentCNN
    from infinipaint.models.vae import VAE, VAE_PRESETS
    from infinipaint.models.world_model import WorldModel

    from .evaluate import load_model

    from infinipaint.viewer.commands import DEFAULT_MODEL

    model = args.model or (str(DEFAULT_MODEL) if args.preset is None else None)
    if model:
        wm = load_model(model, str(device), bf16=_bf16(args), window=args.window, keep_margin=args.keep_margin)
        return wm, f"model {model}"
    wm = WorldModel(VAE(VAE_PRESETS[args.preset]), LatentCNN(DYNAMICS_PRESETS[args.preset]), device=device,
                    bf16=_bf16(args))
    return wm, f"untrained {args.preset} preset (architecture only)"


def _bench_text(r: dict) -> str:
    m = r["minipaint_step"]
    lines = [f"device {r['device']}, {r['torch_threads']} torch threads, bf16 {r['bf16']}",
             f"Minipaint step (frame copy included, {m['n']} steps of agent episodes): "
             f"median {m['median_ms']:.3f} ms, p95 {m['p95_ms']:.3f} ms, mean {m['mean_ms']:.3f} ms"]
    if "world_model" in r:
        w, q = r["world_model"], r["ratios_vs_minipaint"]
        lines.append(f"world model: {w['source']}")
        for k in ("encode", "dynamics", "decode", "full_step"):
            lines.append(f"  {k:<10} batch 1: median {w[k]['median_ms']:8.2f} ms, p95 {w[k]['p95_ms']:8.2f} ms "
                         f"({q[k]:.0f}x Minipaint)")
        if "full_step_whole_decode" in w:
            lines.append(f"  full_step decoding whole frames: median {w['full_step_whole_decode']['median_ms']:8.2f} ms")
        t = w["throughput"]
        lines.append(f"  dynamics + decode at batch {t['batch']}: {t['median_ms']:.1f} ms, {t['frames_per_s']:.0f} frames/s "
                     f"({q['throughput_per_frame']:.0f}x Minipaint per frame)")
    if "onnx" in r:
        o = r["onnx"]
        lines.append(f"ONNX export of {o['model']}: {o['export_s']:.1f} s, "
                     + ", ".join(f"{k} {v:.2f} MiB" for k, v in o["files_mib"].items()))
        lines.append(f"  {'batch 1, median ms':<22}" + "".join(f"{k:>12}" for k in ("encode", "dynamics", "decode", "full_step")))
        for name in ("onnxruntime", "torch_fp32", "torch_auto"):
            label = name + (f" (bf16 {o[name]['bf16']})" if name == "torch_auto" else "")
            lines.append(f"  {label:<22}" + "".join(f"{o[name][k]['median_ms']:12.2f}"
                                                  for k in ("encode", "dynamics", "decode", "full_step")))
        lines.append(f"  PyTorch full step decoding whole frames: fp32 "
                     f"{o['torch_fp32']['full_step_whole_decode']['median_ms']:.2f} ms, auto "
                     f"{o['torch_auto']['full_step_whole_decode']['median_ms']:.2f} ms")
        px = o["identical_pixels"]
        lines.append(f"  identical pixels, onnxruntime against PyTorch fp32, over {px['frames']} frames (reset and steps): mean "
                     f"{100 * px['mean']:.4f} %, least {100 * px['min']:.4f} %, steps all identical "
                     f"{100 * px['steps_all_identical']:.2f} %")
    for k, v in r.get("training", {}).items():
        lines.append(f"training {k}: {v['samples_per_s']:.1f} samples/s (batch {v['batch']}, "
                     f"{v['step_ms_median']:.0f} ms per step)")
    return "\n".join(lines)


def register_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate one network on its own")
    which = p.add_subparsers(dest="component", required=True)
    v = which.add_parser("vae", help="reconstruction quality and latent-change analysis of a VAE")
    v.add_argument("--model", required=True, help="directory with vae.json + vae.safetensors, or a run folder")
    v.add_argument("--data", required=True, help="dataset directory (its test split is used)")
    v.add_argument("--out", default="out/vae-eval", help="output directory")
    v.add_argument("--frames", type=int, default=2000, help="test frames to reconstruct")
    v.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="bf16 autocast, fp32, or auto: bf16 where the CPU has it natively")
    v.set_defaults(func=_eval_vae)


def _eval_vae(args) -> int:
    from infinipaint.precision import PRECISIONS, resolve_bf16

    from .vae_eval import evaluate_vae

    bf16 = resolve_bf16(PRECISIONS[args.precision], "cpu")
    m = evaluate_vae(args.model, args.data, args.out, frames=args.frames, bf16=bf16)
    print(f"{m['frames']} test frames ({m['precision']}): PSNR mean {m['psnr_mean']:.2f} dB, p5 {m['psnr_p5']:.2f}, "
          f"min {m['psnr_min']:.2f}; SSIM mean {m['ssim_mean']:.4f}, p5 {m['ssim_p5']:.4f}, min {m['ssim_min']:.4f}")
    for name, r in m["regions"].items():
        print(f"  {name}: SSIM mean {r['ssim_mean']:.4f}, min {r['ssim_min']:.4f}")
    for g, r in m["latent_change"].items():
        if isinstance(r, dict) and r["pairs"]:
            print(f"  latent change, {g}: {100 * r['mean_share']:.2f} % of positions (p95 {100 * r['p95_share']:.2f} %, {r['pairs']} pairs)")
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'grid.png'}")
    return 0
