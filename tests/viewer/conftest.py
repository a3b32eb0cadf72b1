"""Viewer fixtures: the tiny untrained world model and a short scripted pointer session."""

from __future__ import annotations

import pytest

from infinipaint.minipaint import LAYOUT
from tests.evaluation.conftest import make_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("viewer_model") / "tiny")


@pytest.fixture(scope="session")
def script() -> list[tuple[int, int, int]]:
    """34 raw 80-ms pointer samples: a stroke, a colour pick, a pause, the eraser, a click, and a
    jump long enough to need several sub-steps."""
    red, eraser = LAYOUT.center("color1"), LAYOUT.center("eraser")
    out = [(112, 112, 0), (60, 80, 0), (60, 80, 1)]
    out += [(60 + 10 * i, 80 + 4 * i, 1) for i in range(1, 8)]  # a drag
    out += [(130, 108, 0), (*red, 0), (*red, 1), (*red, 0), (*red, 0), (*red, 0)]  # pick red, pause
    out += [(40, 200, 1), (150, 60, 1), (152, 62, 1), (152, 62, 0)]  # a long jump while down, a dead-zone move
    out += [(*eraser, 0), (*eraser, 1), (*eraser, 0), (100, 100, 0), (100, 100, 1)]
    out += [(100 + 8 * i, 100, 1) for i in range(1, 6)] + [(140, 100, 0), (20, 220, 0), (20, 220, 1), (20, 220, 0)]
    return out
