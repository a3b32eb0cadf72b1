"""Infinipaint: a learned world model of Minipaint, a tiny deterministic paint program."""

__version__ = "0.1.0"
