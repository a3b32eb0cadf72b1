"""`infinipaint train vae|dynamics`: train a network with the shared loop.

    infinipaint train vae --data data/cpu --preset cpu --out runs/vae-cpu
    infinipaint train vae --data data/cpu --out runs/vae-cpu --resume          # after a kill
    infinipaint train vae --data data/cpu --out runs/vae-cpu --resume --steps 40000
    torchrun --nproc-per-node 8 -m infinipaint.cli train vae --data DIR --preset paper --out runs/p
    infinipaint train dynamics --data data/cpu --mix data/edge=0.1 --vae weights/cpu --out runs/dyn

Every field of the training config (`--lr`, `--batch-size`, ...) and of the model config
(`--model-set base=32`, ...) can be overridden on the command line. On `--resume` the run's saved
configs are the defaults, so only what you want to change needs repeating.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from infinipaint.errors import CheckpointError, CommandError

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
    p.add_argument("--vae", required=True, help="trained VAE: a directory with vae.json + vae.safetensors (weights/cpu, runs/NAME/model) "
                        "or a VAE run folder (runs/NAME)")
    p.add_argument("--max-episodes", type=int, default=0,
                   help="encode only the first N train episodes into the latent cache (0: all)")
    p.add_argument("--mix", action="append", metavar="DIR=SHARE",
                   help="also train on the train episodes of dataset DIR, drawn as SHARE of the windows (repeatable; "
                        "--data gets the rest), e.g. --mix data/edge=0.1; kept by --resume")
    p.set_defaults(func=train_dynamics)


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
        model_cfg = _from_dict(model_cls, run["model"], saved)
        try:
            train_cfg = TrainConfig(**run["train"])
        except (TypeError, ValueError) as e:
            raise CommandError(f"{saved}: {e}") from None
    elif args.init_from:
        from infinipaint.models.checkpoint import read_info

        model_cfg = _from_dict(model_cls, read_info(args.init_from, component)["config"], args.init_from)
    return apply_sets(model_cfg, args.model_set), apply_overrides(train_cfg, args)


def _from_dict(model_cls: type, d: dict, source) -> object:
    """A saved model config; CommandError naming the file for a field this version does not have."""
    try:
        return model_cls.from_dict(d)
    except (TypeError, ValueError) as e:
        raise CommandError(f"{source}: {e}") from None


def _init_from(model, directory: str | None, name: str) -> None:
    """Copy trained weights into a fresh model (CheckpointError on any mismatch). A VAE may also
    start one of another latent or output kind (`--model-set latent=fsq`, `output=palette`): see
    `vae.initial_state`; a dynamics network one that also reads the drag origin
    (`--model-set drag_origin=true`): see `dynamics.initial_state`."""
    if directory:
        from infinipaint.models.checkpoint import load_state_strict, load_weights, read_info

        state, _ = load_weights(directory, name)
        if name == "vae":
            from infinipaint.models.vae import VAEConfig, initial_state

            state = initial_state(model, state, VAEConfig.from_dict(read_info(directory, name)["config"]))
        else:
            from infinipaint.models.dynamics import DynamicsConfig, initial_state

            try:
                state = initial_state(model, state, _from_dict(DynamicsConfig, read_info(directory, name)["config"], directory))
            except ValueError as e:
                raise CheckpointError(f"{directory}: {e}") from None
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
    from infinipaint.models.checkpoint import model_folder, read_info
    from infinipaint.models.dynamics import DYNAMICS_PRESETS, DynamicsConfig, LatentCNN

    from .loop import runtime, train

    args.vae = str(model_folder(args.vae, vae_files.NAME))  # a VAE run's folder stands for its model/
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
    if args.mix:  # saved in the train config: a resumed run draws from the same mix
        cfg = dataclasses.replace(cfg, extra={**cfg.extra, "mix": _mix_shares(args.mix)})
    device = str(runtime(cfg).device)
    train_cache = build_latent_cache(args.data, args.vae, "train", args.max_episodes, device=device)
    train_set = LatentTransitionDataset(train_cache, k=model_cfg.unroll)
    # the a_prev the recordings give every episode's first step: the world model starts from it
    model_cfg = dataclasses.replace(model_cfg, reset_action=train_set.reset_action())
    if mix := cfg.extra.get("mix"):
        parts = [LatentTransitionDataset(build_latent_cache(d, args.vae, "train", device=device), k=model_cfg.unroll)
                 for d in mix]
        print("mix: " + ", ".join(f"{d} {share:.0%} ({len(p):,} windows)" for (d, share), p in zip(mix.items(), parts)))
        if any(p.reset_action() != model_cfg.reset_action for p in parts):
            raise CommandError(f"--mix: the datasets record different pointers before their first step "
                               f"({args.data}: {model_cfg.reset_action}); the world model starts from one")
        try:
            train_set = MixedWindows([train_set, *parts], [1 - sum(mix.values()), *mix.values()])
        except ValueError as e:
            raise CommandError(f"--mix: {e}") from None
    if train_set.warm() is not None:  # windows are drawn at random: read the file into the page cache once
        print(f"reading the latent cache into memory in the background ({train_cache})")
    val_set = None  # small datasets may have no val episode: then no validation
    if DatasetReader(args.data).keys("val"):
        val_set = LatentTransitionDataset(build_latent_cache(args.data, args.vae, "val", device=device), k=model_cfg.unroll)
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
