"""The world: Minipaint, its layouts and its Gymnasium environment."""

from .app import TOOLS, Minipaint, MinipaintState, Snapshot, brush_sizes_table, validate_action
from .layout import COLORS, CONTROLS, LAYOUT, LAYOUT_VERSION, LAYOUTS, SCREEN, WHITE, Layout, get_layout

__all__ = [
    "COLORS", "CONTROLS", "LAYOUT", "LAYOUTS", "LAYOUT_VERSION", "SCREEN", "TOOLS", "WHITE",
    "Layout", "Minipaint", "MinipaintState", "Snapshot", "brush_sizes_table", "get_layout", "validate_action",
]

from .env import MinipaintEnv, register as _register_env  # noqa: E402

_register_env()
__all__ += ["MinipaintEnv"]
