"""The `infinipaint` command: one entry point, a subcommand per pipeline stage.

    infinipaint play                          # paint in Minipaint yourself
    infinipaint generate --out data/cpu --episodes 400 --workers 2
    infinipaint data verify|stats|show DIR
    infinipaint train vae|dynamics --data DIR --preset cpu --out runs/NAME
    infinipaint eval vae --model DIR --data DIR
    infinipaint evaluate --model DIR --data DIR
    infinipaint rollout --model DIR --actions FILE.json
    infinipaint dream [--model DIR]
    infinipaint bench [minipaint] [--model DIR]
    infinipaint demo --out DIR
    infinipaint recipe tiny|cpu --out runs/NAME
    infinipaint export onnx|web --model DIR --out DIR
    infinipaint serve SITE

Each stage registers its own subcommands (`register(subparsers)` in its `commands` module) and
imports heavy dependencies (torch) only when its command runs, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from infinipaint.errors import InfinipaintError

COMMAND_MODULES = (
    "infinipaint.minipaint.commands",
    "infinipaint.data.commands",
    "infinipaint.training.commands",
    "infinipaint.evaluation.commands",
    "infinipaint.viewer.commands",
    "infinipaint.recipes",
    "infinipaint.export",
    "infinipaint.web.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infinipaint", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # stage not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InfinipaintError as e:
        print(f"infinipaint {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"infinipaint {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
