"""PointerWindow: pointer mapping through a resized window, the pointer outside the frame, short clicks."""

from __future__ import annotations

import pygame
import pytest

from infinipaint.viewer.window import PointerWindow


@pytest.fixture
def window(monkeypatch):
    w = PointerWindow("test", size=(400, 300), frame_rect=(0, 0, 224), realtime=False)
    pointer = {"pos": (10, 10), "focused": True}
    monkeypatch.setattr(pygame.mouse, "get_pos", lambda: pointer["pos"])
    monkeypatch.setattr(pygame.mouse, "get_focused", lambda: pointer["focused"])
    w.pointer = pointer
    yield w
    w.close()


def test_mapping_clamps_and_says_outside(window):
    assert window.to_screen(0, 0) == (0, 0, True)
    assert window.to_screen(223, 223) == (223, 223, True)
    assert window.to_screen(300, 10) == (223, 10, False)
    assert window.to_screen(-5, 400) == (0, 223, False)


def test_resize_keeps_the_mapping(window):
    pygame.event.post(pygame.event.Event(pygame.VIDEORESIZE, w=800, h=700, size=(800, 700)))
    window.tick()
    window.present()
    assert window.window.get_size() == (800, 700)
    # the 400 x 300 canvas fills the width x2, centred vertically: 50 px bars above and below
    assert window.to_screen(100, 150) == (50, 50, True)
    assert window.to_screen(447, 497) == (223, 223, True)
    assert window.to_screen(100, 20)[2] is False


def test_pointer_outside_short_clicks_and_drags(window):
    window.pointer["pos"] = (300, 10)  # over the panels, button up: not a sample
    assert window.tick() is None and window.outside
    window.pointer["focused"] = False  # outside the window
    assert window.tick() is None and window.outside
    window.pointer.update(pos=(50, 60), focused=True)
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(50, 60)))
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, button=1, pos=(50, 60)))
    assert window.tick() == (50, 60, 1)  # a click shorter than a tick still counts
    assert window.tick() == (50, 60, 0)
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(50, 60)))
    window.tick()
    window.pointer["pos"] = (350, 100)  # a drag leaving the frame paints along its edge
    assert window.tick() == (223, 100, 1)
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, button=1, pos=(350, 100)))
    assert window.tick() is None
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(350, 100)))
    assert window.tick() is None  # a press outside the frame does not start a stroke


def test_a_stalled_loop_counts_the_samples_it_could_not_take(monkeypatch):
    import time
    from types import SimpleNamespace

    w = PointerWindow("test", size=(400, 300), frame_rect=(0, 0, 224), sample_ms=80, fps=1000, realtime=True)
    monkeypatch.setattr(pygame.mouse, "get_pos", lambda: (10, 10))
    monkeypatch.setattr(pygame.mouse, "get_focused", lambda: True)
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    w.clock = SimpleNamespace(tick=lambda *a: 0)
    try:
        w._next_sample = now[0]
        taken = 0
        for _ in range(10):  # on time: one sample every 80 ms, none missed
            taken += w.tick() is not None
            now[0] += 0.0801
        assert taken == 10 and w.missed == 0
        now[0] += 0.5  # a frame 500 ms late: six intervals passed with no sample
        assert w.tick() is not None and w.missed == 6
        now[0] += 0.0801
        assert w.tick() is not None and w.missed == 6  # back on schedule
    finally:
        w.close()
