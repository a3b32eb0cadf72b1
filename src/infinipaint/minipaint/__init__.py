"""The world: Minipaint, its layout and its Gymnasium environment."""

from .app import TOOLS, Minipaint, MinipaintState, Snapshot, brush_sizes_table, validate_action
from .layout import COLORS, LAYOUT, LAYOUT_VERSION, SCREEN, Layout

__all__ = [
    "COLORS", "LAYOUT", "LAYOUT_VERSION", "SCREEN", "TOOLS",
    "Layout", "Minipaint", "MinipaintState", "Snapshot", "brush_sizes_table", "validate_action",
]

from .env import MinipaintEnv, register as _register_env  # noqa: E402

_register_env()
__all__ += ["MinipaintEnv"]
