"""`infinipaint train vae|dynamics`: train a network with the shared loop.

    infinipaint train vae --data data/cpu --preset cpu --out runs/vae-cpu
    infinipaint train vae --data data/cpu --out runs/vae-cpu --resume          # after a kill
    infinipaint train vae --data data/cpu --out runs/vae-cpu --resume --steps 40000
    torchrun --nproc-per-node 8 -m infinipaint.cli train vae --data DIR --preset paper --out runs/p
    infinipaint train dynamics --data data/cpu --mix data/edge=0.1 --vae weights/cpu --out runs/dyn
    infinipaint train toolbar --data data/cpu --init-from weights/cpu --out runs/toolbar

Every field of the training config (`--lr`, `--batch-size`, ...) and of the model config
(`--model-set base=32`, ...) can be overridden on the command line. On `--resume` the run's saved
configs are the defaults, so only what you want to change needs repeating.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from infinipaint.errors import CommandError

from .config import TRAIN_PRESETS, TrainConfig, add_overrides, apply_overrides, apply_sets

PRESETS = ("tiny", "cpu", "paper")


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train the VAE or the dynamics network")
    comp = train.add_subparsers(dest="component", required=True)
    p = comp.add_parser("vae", help="train the VAE on single frames")
    _common(p)
    p.add_argument("--freeze-encoder", action="store_true",
                   help="train only the decoder (with --init-from): the latent space, and any dynamics network "
                        "trained in it, stays valid")
    p.set_defaults(func=train_vae)
    p = comp.add_parser("dynamics", help="train the LatentCNN on latents of a frozen VAE")
    _common(p)
    p.add_argument("--vae", required=True, help="trained VAE directory (vae.json + vae.safetensors)")
    p.add_argument("--max-episodes", type=int, default=0,
                   help="encode only the first N train episodes into the latent cache (0: all)")
    p.add_argument("--mix", action="append", metavar="DIR=SHARE",
                   help="also train on the train episodes of dataset DIR, drawn as SHARE of the windows (repeatable; "
                        "--data gets the rest), e.g. --mix data/edge=0.1; kept by --resume")
    p.add_argument("--paint", action="store_true",
                   help="add the paint head (palette VAE, FSQ latent, --model-set geometry=true geometry_kind=brush): "
                        "canvas cells it paints are encoded from pixels; trains on the dataset's frames too")
    p.set_defaults(func=train_dynamics)
    p = comp.add_parser("toolbar", help="add a toolbar head to a trained world model (FSQ, cell-local encoder) and fit it")
    p.add_argument("--data", required=True, help="dataset directory (infinipaint generate --out)")
    p.add_argument("--init-from", required=True, metavar="DIR",
                   help="world model directory (vae.* and dynamics.*), e.g. weights/cpu; its networks are kept")
    p.add_argument("--out", required=True, help="run directory: the world model is written to OUT/model")
    p.add_argument("--resume", action="store_true", help="continue the fit from OUT/toolbar/state.pt")
    p.add_argument("--steps", type=int, default=3000, help="classifier steps (default 3000, about a minute)")
    p.add_argument("--batch-size", type=int, default=1024, help="transitions per step (default 1024)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate, cosine to 0 (default 3e-3)")
    p.add_argument("--focus", type=float, default=20.0,
                   help="how much more often steps that change the selection or press near the toolbar are drawn (default 20)")
    p.add_argument("--max-episodes", type=int, default=0, help="use only the first N train episodes (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the classifier's initial weights and of its batches")
    p.add_argument("--mix", action="append", metavar="DIR",
                   help="also learn from the train episodes of dataset DIR (repeatable), from their actions alone, "
                        "e.g. episodes recorded with --edge-work: presses just outside the controls")
    p.set_defaults(func=train_toolbar)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset directory (infinipaint generate --out)")
    p.add_argument("--preset", choices=PRESETS, default="cpu", help="model and training preset")
    p.add_argument("--out", required=True, help="run directory, runs/NAME")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--init-from", metavar="DIR",
                   help="start a new run from trained weights (e.g. weights/cpu): their config is the default")
    p.add_argument("--model-set", action="append", metavar="FIELD=VALUE",
                   help="override one model-config field (repeatable), e.g. --model-set latent_channels=16")
    add_overrides(p, TrainConfig)


def _configs(args: argparse.Namespace, component: str, model_presets: dict, model_cls: type):
    """(model config, train config): preset or saved run, then command-line overrides."""
    saved = Path(args.out) / "config.json"
    model_cfg, train_cfg = model_presets[args.preset], TRAIN_PRESETS[component][args.preset]
    if args.resume and saved.exists():
        run = json.loads(saved.read_text())
        model_cfg = model_cls(**run["model"])
        train_cfg = TrainConfig(**run["train"])
    elif args.init_from:
        from infinipaint.models.checkpoint import read_info

        model_cfg = model_cls(**read_info(args.init_from, component)["config"])
    return apply_sets(model_cfg, args.model_set), apply_overrides(train_cfg, args)


def _init_from(model, directory: str | None, name: str) -> None:
    """Copy trained weights into a fresh model (CheckpointError on any mismatch). A VAE may also
    start one of another latent or output kind (`--model-set latent=fsq`, `output=palette`), a
    dynamics network one that also reads the stroke geometry (`--model-set geometry=true`): see
    `vae.initial_state` and `dynamics.initial_state`."""
    if directory:
        from infinipaint.models.checkpoint import load_state_strict, load_weights, read_info

        state, _ = load_weights(directory, name)
        if name == "vae":
            from infinipaint.models.vae import VAEConfig, initial_state

            state = initial_state(model, state, VAEConfig.from_dict(read_info(directory, name)["config"]))
        else:
            from infinipaint.models.dynamics import DynamicsConfig, initial_state

            state = initial_state(model, state, DynamicsConfig(**read_info(directory, name)["config"]))
        load_state_strict(model, state, source=str(Path(directory) / f"{name}.safetensors"))


def train_vae(args: argparse.Namespace) -> int:
    import torch

    from infinipaint.data.datasets import FrameDataset
    from infinipaint.models.vae import VAE, VAE_PRESETS, VAEConfig

    from .loop import train

    model_cfg, cfg = _configs(args, "vae", VAE_PRESETS, VAEConfig)
    train_set, val_set = FrameDataset(args.data, "train"), FrameDataset(args.data, "val")
    if len(train_set) == 0:
        raise CommandError(f"{args.data}: the train split is empty")
    if model_cfg.output == "palette" and not model_cfg.palette:  # the colours of ~1000 training frames
        import numpy as np

        from infinipaint.models.vae import palette_of

        picks = np.linspace(0, len(train_set) - 1, min(len(train_set), 1000)).astype(int)
        try:
            palette = palette_of(torch.stack([train_set[int(i)] for i in picks]))
        except ValueError as e:
            raise CommandError(f"{args.data}: {e}") from None
        model_cfg = dataclasses.replace(model_cfg, palette=palette)
        print(f"palette decoder: {len(palette)} colours found in {len(picks)} training frames")
    torch.manual_seed(cfg.seed)
    model = VAE(model_cfg)
    _init_from(model, args.init_from, "vae")
    saved = Path(args.out) / "config.json"
    freeze = args.freeze_encoder or (args.resume and saved.exists() and json.loads(saved.read_text()).get("freeze_encoder"))
    if freeze:  # train the decoder alone: the latent space (and dynamics trained in it) stays
        if not (args.init_from or args.resume):
            raise CommandError("--freeze-encoder needs --init-from DIR (a trained encoder to keep)")
        model.encoder.requires_grad_(False)
    print(f"vae {args.preset}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(train_set):,} train / {len(val_set):,} val frames")
    summary = train(model, train_set, val_set, cfg, args.out, "vae", resume=args.resume,
                    meta={"data": str(args.data), "preset": args.preset, "freeze_encoder": bool(freeze)})
    print(json.dumps(summary))
    return 0


def _mix_shares(items: list[str]) -> dict[str, float]:
    """["data/edge=0.1", ...] -> {"data/edge": 0.1}: each a dataset directory and its share of the windows."""
    mix = {}
    for item in items:
        directory, sep, share = item.rpartition("=")
        try:
            value = float(share)
        except ValueError:
            value = float("nan")
        if not sep or not directory or not 0 < value < 1:
            raise CommandError(f"--mix {item!r}: expected DIR=SHARE with 0 < SHARE < 1, e.g. data/edge=0.1")
        if not Path(directory).is_dir():
            raise CommandError(f"--mix {item!r}: no dataset directory {directory}")
        mix[directory] = value
    if sum(mix.values()) >= 1:
        raise CommandError(f"--mix: the shares add up to {sum(mix.values()):g}; --data needs some of the windows")
    return mix


def train_dynamics(args: argparse.Namespace) -> int:
    import shutil

    import torch

    from infinipaint.data.latents import LatentTransitionDataset, MixedWindows, build_latent_cache
    from infinipaint.data.storage import DatasetReader
    from infinipaint.models import vae as vae_files
    from infinipaint.models.checkpoint import read_info
    from infinipaint.models.dynamics import DYNAMICS_PRESETS, DynamicsConfig, LatentCNN

    from .loop import runtime, train

    model_cfg, cfg = _configs(args, "dynamics", DYNAMICS_PRESETS, DynamicsConfig)
    vae_info = read_info(args.vae, vae_files.NAME)
    if vae_info["config"]["latent_channels"] != model_cfg.latent_channels:
        raise CommandError(f"{args.vae}: the VAE has {vae_info['config']['latent_channels']} latent channels, "
                           f"the dynamics config {model_cfg.latent_channels}")
    # The head follows the VAE's latent: an FSQ latent is predicted by classifying its levels.
    if vae_info["config"].get("latent", "continuous") == "fsq":
        model_cfg = dataclasses.replace(model_cfg, head="levels", levels=vae_info["config"]["fsq_levels"])
    elif model_cfg.head == "levels":
        raise CommandError(f"{args.vae}: head 'levels' needs an FSQ VAE, this one has a continuous latent")
    if args.paint and not model_cfg.paint_palette:
        if vae_info["config"].get("output") != "palette":
            raise CommandError(f"{args.vae}: --paint needs a palette VAE (output 'palette')")
        try:
            model_cfg = dataclasses.replace(model_cfg, paint_palette=vae_info["config"]["palette"])
        except ValueError as e:
            raise CommandError(f"--paint: {e}") from None
    if model_cfg.paint_palette and [list(c) for c in model_cfg.paint_palette] != vae_info["config"].get("palette"):
        raise CommandError(f"{args.vae}: the paint head's palette is not this VAE's")
    frames = args.data if model_cfg.paint_palette else None  # the paint head learns from pixels
    selected = model_cfg.select_weight > 0  # and what is selected, replayed in Minipaint
    if selected and not model_cfg.paint_palette:
        raise CommandError("select_weight trains the paint head's global logits: it needs --paint")
    if args.mix:  # saved in the train config: a resumed run draws from the same mix
        cfg = dataclasses.replace(cfg, extra={**cfg.extra, "mix": _mix_shares(args.mix)})
    device = str(runtime(cfg).device)
    train_cache = build_latent_cache(args.data, args.vae, "train", args.max_episodes, device=device)
    # --extra '{"oversample": {"press_": 20}}' draws windows with UI presses 20x more often.
    train_set = LatentTransitionDataset(train_cache, k=model_cfg.unroll, oversample=cfg.extra.get("oversample"),
                                        frames=frames, selected=selected)
    if mix := cfg.extra.get("mix"):
        parts = [LatentTransitionDataset(build_latent_cache(d, args.vae, "train", device=device), k=model_cfg.unroll,
                                         oversample=cfg.extra.get("oversample"), frames=d if frames else None,
                                         selected=selected)
                 for d in mix]
        print("mix: " + ", ".join(f"{d} {share:.0%} ({len(p):,} windows)" for (d, share), p in zip(mix.items(), parts)))
        try:
            train_set = MixedWindows([train_set, *parts], [1 - sum(mix.values()), *mix.values()])
        except ValueError as e:
            raise CommandError(f"--mix: {e}") from None
    if train_set.warm() is not None:  # windows are drawn at random: read the file into the page cache once
        print(f"reading the latent cache into memory in the background ({train_cache})")
    val_set = None  # small datasets may have no val episode: then no validation
    if DatasetReader(args.data).keys("val"):
        val_set = LatentTransitionDataset(build_latent_cache(args.data, args.vae, "val", device=device), k=model_cfg.unroll,
                                          frames=frames, selected=selected)
    torch.manual_seed(cfg.seed)
    model = LatentCNN(model_cfg)
    _init_from(model, args.init_from, "dynamics")
    encoder = vae_files.encoder_sha256(vae_files.load(args.vae))
    if not args.init_from or read_info(args.init_from, "dynamics")["meta"].get("vae_encoder_sha256", encoder) != encoder:
        # fresh weights, or weights trained in another latent space (another VAE): this latent's
        # own statistics, not the source's normalisation
        model.set_latent_stats(*train_set.latent_stats())
        if args.init_from:
            print(f"--init-from {args.init_from}: trained with another VAE encoder; latent statistics from {args.vae}")
    print(f"dynamics {args.preset}: {model.num_parameters():,} parameters, "
          f"{len(train_set):,} train / {len(val_set or []):,} val windows of {model_cfg.unroll} transitions")
    # The exported model folder is a complete world model: the VAE files sit beside the dynamics.
    model_dir = Path(args.out) / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(Path(args.vae) / f"{vae_files.NAME}{suffix}", model_dir / f"{vae_files.NAME}{suffix}")
    summary = train(model, train_set, val_set, cfg, args.out, "dynamics", resume=args.resume,
                    meta={"data": str(args.data), "preset": args.preset, "vae": str(args.vae),
                          "vae_sha256": vae_info["weights"]["sha256"],
                          "vae_encoder_sha256": encoder})
    print(json.dumps(summary))
    return 0


def train_toolbar(args: argparse.Namespace) -> int:
    """A copy of the world model in --init-from with a fitted toolbar head, in OUT/model."""
    import shutil

    import torch

    from infinipaint.data.latents import build_latent_cache
    from infinipaint.data.storage import DatasetReader
    from infinipaint.models import vae as vae_files
    from infinipaint.models.checkpoint import read_info, save_weights
    from infinipaint.models.dynamics import DynamicsConfig, LatentCNN
    from infinipaint.models.toolbar import ToolbarHead

    from . import toolbar

    if min(args.steps, args.batch_size) < 1 or args.lr <= 0 or args.focus < 1:
        raise CommandError("--steps and --batch-size must be >= 1, --lr > 0 and --focus >= 1")
    info = read_info(args.init_from, "dynamics")
    vae_config = read_info(args.init_from, vae_files.NAME)["config"]
    try:
        config = DynamicsConfig(**{**info["config"], "toolbar_head": True})
    except ValueError as e:
        raise CommandError(f"{args.init_from}: {e}") from None
    if vae_config.get("latent") != "fsq" or vae_config.get("encoder_kernel", 3) != 1:
        raise CommandError(f"{args.init_from}: the toolbar head needs an FSQ VAE with a cell-local encoder "
                           "(encoder_kernel=1): only then is each selected state's toolbar one set of codes")
    torch.manual_seed(args.seed)
    model = LatentCNN(config)
    _init_from(model, args.init_from, "dynamics")
    if not args.resume:  # a new head, even where --init-from has one: its table is filled again below
        model.toolbar = ToolbarHead(config.latent_channels, config.context_rows)
    train_cache = build_latent_cache(args.data, args.init_from, "train", args.max_episodes)
    missing = toolbar.fill_table(model.toolbar, train_cache, config.context_rows)
    if missing:
        print(f"warning: {missing} of {len(model.toolbar.seen)} selected states never occur in {args.data}; "
              "where one is predicted the levels head draws the toolbar (generate more episodes)")
    val = None
    if DatasetReader(args.data).keys("val"):
        val = toolbar.transitions(build_latent_cache(args.data, args.init_from, "val"))
    train = toolbar.transitions(train_cache)
    if args.mix:
        train = toolbar.joined([train, *(toolbar.dataset_transitions(d) for d in args.mix)])
    print(f"toolbar head: {sum(p.numel() for p in model.toolbar.parameters()):,} parameters, table of "
          f"{int(model.toolbar.seen.sum())} selected states; {len(train['state']):,} train transitions "
          f"({int(train['focus'].sum()):,} near the toolbar or changing the selection)")
    metrics = toolbar.fit(model.toolbar, train, val, args.out, steps=args.steps, batch=args.batch_size, lr=args.lr,
                          focus=args.focus, seed=args.seed, resume=args.resume)
    model_dir = Path(args.out) / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(Path(args.init_from) / f"{vae_files.NAME}{suffix}", model_dir / f"{vae_files.NAME}{suffix}")
    save_weights(model, model_dir, "dynamics", config.to_dict(),
                 {**info.get("meta", {}), "toolbar": {"data": str(args.data), "mix": args.mix or [], **metrics}})
    print(json.dumps(metrics))
    return 0
