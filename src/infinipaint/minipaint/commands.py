"""`infinipaint play`: paint in Minipaint yourself, in a window scaled x3.

    infinipaint play [--scale 3] [--layout column]

The pointer is sampled every 80 ms and fed through the same ActionStream as the data and the
world-model viewer (`infinipaint dream`), with the same window and input handling
(`viewer.window.PointerWindow`), so what you do here is what the model sees. Keys: r reset,
Esc/q quit.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("play", help="paint in Minipaint in a window")
    p.add_argument("--scale", type=int, default=3, help="window pixels per Minipaint pixel")
    p.add_argument("--layout", default="default", help="Minipaint layout by name (a key of minipaint.LAYOUTS)")
    p.add_argument("--steps", type=int, default=0, help="quit after this many display frames (0: run until closed)")
    p.set_defaults(func=play)


def play(args: argparse.Namespace) -> int:
    from infinipaint.actions import ActionStream
    from infinipaint.errors import CommandError
    from infinipaint.minipaint import SCREEN, Minipaint
    from infinipaint.viewer.window import PointerWindow

    try:
        app = Minipaint(args.layout)
    except ValueError as e:
        raise CommandError(str(e)) from None
    stream = ActionStream()
    side = SCREEN * args.scale
    window = PointerWindow("Minipaint (r: reset, q: quit)", size=(side, side), frame_rect=(0, 0, side))
    frame = app.reset()
    ticks = 0
    while window.running:
        sample = window.tick()
        if window.key_pressed("r"):
            frame = app.reset()
            stream.reset()
        if sample is not None:
            for step in stream.push(*sample):
                frame = app.step(step)
        window.show(frame)
        ticks += 1
        if args.steps and ticks >= args.steps:
            break
    window.close()
    return 0
