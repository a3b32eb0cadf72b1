"""The world: Minipaint, its layout and its Gymnasium environment."""

from .app import TOOLS, Minipaint, MinipaintState, Snapshot, validate_action
from .layout import COLORS, LAYOUT, LAYOUT_VERSION, SCREEN, Layout

__all__ = [
    "COLORS", "LAYOUT", "LAYOUT_VERSION", "SCREEN", "TOOLS",
    "Layout", "Minipaint", "MinipaintState", "Snapshot", "validate_action",
]
