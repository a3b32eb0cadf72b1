"""What the evaluation measures: per-frame scores and per-episode behaviour (SPEC §6).

    from infinipaint.evaluation.scoring import frame_scores, read_toolbar, Tracker
    scores = frame_scores(pred, truth)        # uint8 (B, 224, 224, 3) x 2 -> dict of (B,) arrays
    states = read_toolbar(pred)               # [(tool, colour, size), ...] nearest rendered toolbar
    tracker = Tracker(lengths)                # fed one step at a time by the harness (evaluate.py)
    read_toolbar(pred, layout="column")       # every function takes the layout (default: "default")

Everything that depends on where Minipaint draws what (region masks, toolbar references, the
controls) is computed for one layout of `minipaint.LAYOUTS`, named or given, once per layout name.

Definitions (every number in `metrics.json` means exactly this):
- SSIM / PSNR: `infinipaint.metrics` (skimage-compatible SSIM; PSNR capped at 100 dB), 224x224.
- Region SSIM: the full-size SSIM map (`ssim_map(full=True)`) averaged over `layout.mask(region)`.
- Exact share: share of pixels whose three channels are all within 8/255 (8 levels) of the truth.
- Wrong pixel: a pixel whose largest channel difference exceeds 48/255 (`VISIBLE_DELTA`), about a
  fifth of the range: clearly visible at 1:1 on Minipaint's flat colours. A frame has a *visible
  error* when at least `VISIBLE_PIXELS` (9, a 3x3 blob's worth) pixels are wrong; the onset is the
  first step whose frame has one. Isolated single pixels are below what a person notices.
- Response: after every press on a control (step kinds `press_<control>`, including presses on the
  control already selected), the predicted and the true
  frame's toolbars are each read as the nearest (squared L2) of the toolbar crops Minipaint renders
  for every (tool, colour, size) state. The response is correct when the attribute the control
  sets agrees: tool for pen/eraser, colour for colourK, size for the slider. Every toolbar pixel
  depends on one attribute only, so the joint nearest state is also the nearest per attribute.
- Eraser L1: on every `erase` step whose true frame differs from the true previous frame, the mean
  absolute error x255 (0..255 levels, channels averaged) of the prediction over the pixels that step
  changed; averaged over such steps (each step counts once).
- Empty pen stroke: a stroke is a maximal run of `draw` steps (press on the canvas with the pen,
  then drags). Its footprint is the set of pixels the true frames changed during the run. The
  stroke is *empty* when no footprint pixel changed by more than `VISIBLE_DELTA` (largest channel)
  between the prediction just before the stroke and the prediction at its last step. Strokes with
  an empty true footprint (ink over the same ink) are not counted.
- Toolbar slip: a step at which the predicted toolbar, read as above, stops showing the true
  state (tool, colour and size all equal) although it showed it the step before; it is counted in
  the phase and under the step kind of that step (a slip on a `dead_click` or a `hover` is a
  change the model made up; one on a `press_*` a missed or wrong response). The wrong-state share
  is the share of frames whose predicted toolbar state is not the true one.
- Behaviour events: runs of consecutive steps that the recording's agent labels with one of the
  activities of a group (`BEHAVIOURS`): drags that begin on a control (`control_drag`,
  `button_drag`: press on a control, drag anywhere with the button held, release) and presses near a
  control's edge (`edge_work`: clicks 1-4 px outside, or just inside, an edge, and slider drags that
  leave the slider). An event is *right* when, from the frames before its first step to those after
  its last, the prediction changed what the truth changed and nothing else: fewer than
  `VISIBLE_PIXELS` pixels changed visibly (> `VISIBLE_DELTA`) in the prediction where the truth did
  not change visibly (*made up*: a line painted from a drag off a button, a selection from a click
  outside), and fewer than `VISIBLE_PIXELS` of the pixels the truth changed visibly wrong in the
  prediction at the end (*missed*).
- Phases: early = steps 1-150, mid = 151-500, late = 501+; a press, erase step or stroke belongs to
  the phase of its (first) step.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from typing import Any

import numpy as np
import torch

from infinipaint.metrics import RADIUS, masked_mean, psnr, ssim_map, to_float
from infinipaint.minipaint import TOOLS, Layout, Minipaint, MinipaintState, get_layout

EXACT_TOL = 8  # levels: a pixel is exact when every channel is within 8/255 of the truth
VISIBLE_DELTA = 48  # levels: a pixel is wrong when some channel is off by more than this
VISIBLE_PIXELS = 9  # wrong pixels that make a visible error
SSIM_CLIFF = 0.95
PHASES: tuple[tuple[str, int, int | None], ...] = (("early", 1, 150), ("mid", 151, 500), ("late", 501, None))
REGIONS = ("canvas", "toolbar")
DEFINITIONS = {
    "exact_share": f"share of pixels with every channel within {EXACT_TOL}/255 of the truth",
    "visible_error": f"at least {VISIBLE_PIXELS} pixels whose largest channel error exceeds {VISIBLE_DELTA}/255",
    "response": "after every press on a control, the toolbar attribute the control sets (tool, colour or size) read from the "
                "prediction as the nearest Minipaint-rendered toolbar equals the one of the true frame",
    "eraser_l1": "mean |pred - truth| x255 over the pixels each true erase step changed, averaged over erase steps",
    "empty_pen_strokes": f"share of pen strokes (runs of draw steps) where no pixel of the true footprint changed "
                         f"by more than {VISIBLE_DELTA}/255 in the prediction from before the stroke to its end",
    "pen_ink": f"per pen stroke, the share of its true footprint (the pixels the truth changed during it) that the "
               f"prediction shows in the true colour at its end (every channel within {VISIBLE_DELTA}/255), averaged "
               f"over strokes; by_colour: over all phases, by the stroke's true ink (its most common footprint colour)",
    "toolbar_slips": "steps at which the predicted toolbar (nearest Minipaint-rendered state) stops showing the true "
                     "tool, colour and size, by phase and by the kind of the step; wrong_share: frames showing a wrong state",
    "behaviour": f"per group of recorded activities, the share of events (runs of its steps) after which the "
                 f"prediction changed what the truth changed and nothing else (fewer than {VISIBLE_PIXELS} pixels made up "
                 f"or missed, {VISIBLE_DELTA}/255 a visible change); made_up / missed: shares of events failing each way",
    "phases": "early: steps 1-150, mid: 151-500, late: 501+",
    "onset_095": f"first step with SSIM < {SSIM_CLIFF}; mean and std over the episodes that fall below",
}


def phase_of(step: int) -> str:
    for name, lo, hi in PHASES:
        if step >= lo and (hi is None or step <= hi):
            return name
    raise ValueError(f"step {step} is before step 1")


def phase_slice(name: str, n_steps: int) -> slice:
    """Columns of a per-step array (column j = step j + 1) that belong to a phase."""
    lo, hi = next((lo, hi) for p, lo, hi in PHASES if p == name)
    return slice(lo - 1, n_steps if hi is None else min(hi, n_steps))


# ------------------------------------------------------------------------------ frame scores
def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest channel difference per pixel in levels: uint8 (..., H, W, 3) x 2 -> (..., H, W) int16."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)


def exact_share(pred: np.ndarray, truth: np.ndarray, tol: int = EXACT_TOL) -> np.ndarray:
    """(B,) share of pixels with all channels within `tol` levels."""
    return (_diff(pred, truth) <= tol).mean(axis=(-2, -1))


def wrong_pixels(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(B,) number of pixels whose largest channel error exceeds VISIBLE_DELTA."""
    return (_diff(pred, truth) > VISIBLE_DELTA).sum(axis=(-2, -1))


def visible_error(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(B,) bool: the frame shows a visible error (see the module docstring)."""
    return wrong_pixels(pred, truth) >= VISIBLE_PIXELS


def _layout_name(layout: str | Layout) -> str:
    """The name of a layout of LAYOUTS (given by name or itself): the key of the caches below."""
    return get_layout(layout).name


@functools.lru_cache(maxsize=None)
def _region_masks(name: str) -> dict[str, torch.Tensor]:
    """The (224, 224) bool mask of every region in REGIONS on the named layout."""
    layout = get_layout(name)
    return {r: torch.from_numpy(layout.mask(r)) for r in REGIONS}


@torch.no_grad()
def frame_scores(pred: np.ndarray, truth: np.ndarray, regions: bool = True,
                 layout: str | Layout = "default") -> dict[str, np.ndarray]:
    """ssim, psnr, exact_share, wrong_pixels (and canvas_ssim, toolbar_ssim on `layout`'s regions if
    `regions`): (B,) float64 each."""
    x, y = to_float(pred), to_float(truth)
    if regions:
        full = ssim_map(x, y, full=True)  # (B, 224, 224); its interior is exactly the map `ssim` averages
        r = RADIUS
        out = {"ssim": full[:, r:-r, r:-r].mean(dim=(-2, -1)),
               **{f"{name}_ssim": masked_mean(full, m) for name, m in _region_masks(_layout_name(layout)).items()}}
    else:
        out = {"ssim": ssim_map(x, y).mean(dim=(-2, -1))}
    out["psnr"] = psnr(x, y)
    out = {k: v.double().numpy() for k, v in out.items()}
    out["exact_share"] = exact_share(pred, truth).astype(np.float64)
    out["wrong_pixels"] = wrong_pixels(pred, truth).astype(np.float64)
    return out


def first_step(flags: np.ndarray) -> int | None:
    """1-based index of the first True in a per-step bool array, or None."""
    hits = np.flatnonzero(flags)
    return int(hits[0]) + 1 if hits.size else None


# ----------------------------------------------------------------------------- toolbar state
State = tuple[str, int, int]  # tool, colour index, brush size
TOOLBAR_ATTRIBUTES = ("tool", "color", "size")


def toolbar_references(layout: str | Layout = "default") -> tuple[list[State], torch.Tensor]:
    """Every (tool, colour, size) state of `layout` and its rendered toolbar crop, (N, h * w * 3)
    float64 for a toolbar rectangle of h x w (integer-valued: the distances below are exact
    integers, so a true frame is at distance 0)."""
    return _toolbar_references(_layout_name(layout))


@functools.lru_cache(maxsize=None)
def _toolbar_references(name: str) -> tuple[list[State], torch.Tensor]:
    layout = get_layout(name)
    x, y, w, h = layout.rect("toolbar")
    app = Minipaint(layout)
    states, crops = [], []
    for tool in TOOLS:
        for color in range(len(layout.colors)):
            for size in layout.sizes:
                frame = app.reset(MinipaintState(tool=tool, color=color, size=size))
                states.append((tool, color, size))
                crops.append(frame[y : y + h, x : x + w].reshape(-1))
    return states, torch.from_numpy(np.stack(crops)).double()


def read_toolbar(frames: np.ndarray, layout: str | Layout = "default") -> tuple[list[State], np.ndarray]:
    """The nearest state rendered on `layout` of each frame's toolbar (B, 224, 224, 3) and its mean
    squared distance per value (0 for a true Minipaint frame of that layout)."""
    states, refs = toolbar_references(layout)
    x, y, w, h = get_layout(layout).rect("toolbar")
    crops = torch.from_numpy(frames[:, y : y + h, x : x + w].reshape(len(frames), -1).astype(np.float64))
    d = (crops.pow(2).sum(1, keepdim=True) - 2 * crops @ refs.T + refs.pow(2).sum(1)[None]) / refs.shape[1]
    best = d.argmin(dim=1)
    return [states[int(i)] for i in best], d.gather(1, best[:, None])[:, 0].clamp(min=0).numpy()


def response_correct(control: str, pred: State, truth: State) -> bool:
    """Does the predicted toolbar show what pressing `control` should have selected?"""
    if control in TOOLS:
        return pred[0] == truth[0]
    if control.startswith("color"):
        return pred[1] == truth[1]
    if control == "slider":
        return pred[2] == truth[2]
    raise ValueError(f"not a control: {control!r}")


def eraser_l1(prev_truth: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> float | None:
    """Mean |pred - truth| x255 over the pixels the true step changed (None if it changed none)."""
    changed = (prev_truth != truth).any(axis=-1)
    if not changed.any():
        return None
    return float(np.abs(pred.astype(np.int16) - truth.astype(np.int16))[changed].mean())


# ------------------------------------------------------------------------------- accumulator
def _nan(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.nan)


def _share(hits: list[bool]) -> dict[str, Any]:
    return {"value": float(np.mean(hits)) if hits else None, "n": len(hits)}


# Behaviour groups: recorded agent activities (`data.agents.ACTIVITIES`) scored as events of their own.
BEHAVIOURS = {"drags_from_controls": ("control_drag", "button_drag"), "presses_near_edges": ("edge_work",)}
_GROUP_OF = {a: g for g, acts in BEHAVIOURS.items() for a in acts}


def event_errors(truth_before: np.ndarray, truth: np.ndarray, pred_before: np.ndarray,
                 pred: np.ndarray) -> tuple[int, int]:
    """(made-up pixels, missed pixels) of an event: pixels the prediction changed visibly where the
    truth did not, and pixels the truth changed visibly that are visibly wrong in the prediction."""
    truth_changed = _diff(truth, truth_before) > VISIBLE_DELTA
    made_up = (_diff(pred, pred_before) > VISIBLE_DELTA) & ~truth_changed
    missed = truth_changed & (_diff(pred, truth) > VISIBLE_DELTA)
    return int(made_up.sum()), int(missed.sum())


class Tracker:
    """Per-episode, per-step scores (small float matrices, NaN where an episode has no step) and
    the behaviour events of episodes on one layout; fed one step of a batch at a time, summarised
    at any point."""

    SCORES = ("ssim", "psnr", "canvas_ssim", "toolbar_ssim", "exact_share", "wrong_pixels",
              "ceiling_ssim", "ceiling_psnr", "ceiling_wrong_pixels")

    def __init__(self, lengths: list[int], layout: str | Layout = "default") -> None:
        self.layout = _layout_name(layout)
        self.controls = get_layout(layout).controls
        self.lengths = list(lengths)
        shape = (len(lengths), max(lengths) if lengths else 0)
        self.scores = {k: _nan(shape) for k in self.SCORES}
        self.responses: dict[str, dict[str, list[bool]]] = {c: {p: [] for p, *_ in PHASES} for c in self.controls}
        self.eraser: dict[str, list[float]] = {p: [] for p, *_ in PHASES}
        self.strokes: dict[str, list[bool]] = {p: [] for p, *_ in PHASES}
        self.ink: dict[str, list[float]] = {p: [] for p, *_ in PHASES}  # per stroke: share of its footprint in the right colour
        self.ink_by_colour: dict[str, list[float]] = {}
        # Open stroke per episode: first step, footprint (224, 224) bool, prediction before it.
        self._stroke: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        # Toolbar state per episode and step: 1 when the prediction shows the true state, 0 when not.
        self.toolbar_right = _nan(shape)
        self.slips: list[tuple[int, int, str, list[str]]] = []  # (episode, step, kind, attributes that went wrong)
        # Behaviour events: per group and phase, (made up, missed) per finished event; open ones per episode.
        self.events: dict[str, dict[str, list[tuple[bool, bool]]]] = {g: {p: [] for p, *_ in PHASES} for g in BEHAVIOURS}
        self._event: dict[int, tuple[str, int, np.ndarray, np.ndarray]] = {}

    def update(self, step: int, episodes: np.ndarray, kinds: list[str], prev_truth: np.ndarray,
               truth: np.ndarray, prev_pred: np.ndarray, pred: np.ndarray,
               ceiling: np.ndarray | None = None, activities: list[str] | None = None) -> dict[str, np.ndarray]:
        """Score step `step` (1-based) of the given episodes (rows of the batch arrays);
        `activities`, the recorded agent activity of each, for the behaviour events."""
        s = frame_scores(pred, truth, layout=self.layout)
        if ceiling is not None:
            c = frame_scores(ceiling, truth, regions=False, layout=self.layout)
            s["ceiling_ssim"], s["ceiling_psnr"], s["ceiling_wrong_pixels"] = c["ssim"], c["psnr"], c["wrong_pixels"]
        phase = phase_of(step)
        pred_states, _ = read_toolbar(pred, self.layout)
        true_states, _ = read_toolbar(truth, self.layout)
        for i, kind in enumerate(kinds):
            if kind.startswith("press_"):
                control = kind[len("press_"):]
                self.responses[control][phase].append(response_correct(control, pred_states[i], true_states[i]))
        right = np.array([p == t for p, t in zip(pred_states, true_states)], dtype=np.float64)
        was_right = self.toolbar_right[episodes, step - 2] if step > 1 else np.ones(len(kinds))
        for i in np.flatnonzero((right == 0) & (was_right != 0)):  # NaN (not scored) counts as right
            wrong = [a for a, p, t in zip(TOOLBAR_ATTRIBUTES, pred_states[i], true_states[i]) if p != t]
            self.slips.append((int(episodes[i]), step, kinds[i], wrong))
        for i, kind in enumerate(kinds):
            e = int(episodes[i])
            if kind == "erase":
                l1 = eraser_l1(prev_truth[i], truth[i], pred[i])
                if l1 is not None:
                    self.eraser[phase].append(l1)
            if kind == "draw":
                if e not in self._stroke:
                    self._stroke[e] = (step, np.zeros(truth.shape[1:3], bool), prev_pred[i].copy())
                self._stroke[e][1][(prev_truth[i] != truth[i]).any(axis=-1)] = True
                if step == self.lengths[e]:
                    self._close_stroke(e, pred[i], truth[i])
            elif e in self._stroke:
                self._close_stroke(e, prev_pred[i], prev_truth[i])
            group = _GROUP_OF.get(activities[i]) if activities is not None else None
            if e in self._event and self._event[e][0] != group:
                self._close_event(e, prev_truth[i], prev_pred[i])
            if group is not None and e not in self._event:
                self._event[e] = (group, step, prev_truth[i].copy(), prev_pred[i].copy())
            if e in self._event and step == self.lengths[e]:
                self._close_event(e, truth[i], pred[i])
        for k, v in s.items():  # last, all at once: an interrupt leaves whole steps
            self.scores[k][episodes, step - 1] = v
        self.toolbar_right[episodes, step - 1] = right
        return s

    def _close_stroke(self, e: int, pred_end: np.ndarray, truth_end: np.ndarray) -> None:
        first, footprint, before = self._stroke.pop(e)
        if footprint.any():
            drawn = _diff(pred_end, before)[footprint] > VISIBLE_DELTA
            self.strokes[phase_of(first)].append(not drawn.any())
            right = float((_diff(pred_end, truth_end)[footprint] <= VISIBLE_DELTA).mean())
            self.ink[phase_of(first)].append(right)
            colours, counts = np.unique(truth_end[footprint], axis=0, return_counts=True)
            ink = "#" + "".join(f"{int(v):02x}" for v in colours[counts.argmax()])
            self.ink_by_colour.setdefault(ink, []).append(right)

    def _close_event(self, e: int, truth: np.ndarray, pred: np.ndarray) -> None:
        group, first, truth_before, pred_before = self._event.pop(e)
        made_up, missed = event_errors(truth_before, truth, pred_before, pred)
        self.events[group][phase_of(first)].append((made_up >= VISIBLE_PIXELS, missed >= VISIBLE_PIXELS))

    def _behaviour_summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for group, phases in self.events.items():
            out[group] = {}
            for p, ev in [*phases.items(), ("all", [x for v in phases.values() for x in v])]:
                out[group][p] = {"right": _share([not (a or b) for a, b in ev]), "made_up": _share([a for a, _ in ev]),
                                 "missed": _share([b for _, b in ev])}
        return out

    def _slip_summary(self, n_steps: int) -> dict[str, Any]:
        right = self.toolbar_right[:, :n_steps]
        out: dict[str, Any] = {"phases": {},
                               "per_episode": [[{"step": t, "kind": k, "wrong": w} for e2, t, k, w in self.slips if e2 == e]
                                               for e in range(len(self.lengths))]}
        for name, *_ in PHASES:
            out["phases"][name] = {"slips": sum(1 for _, t, _, _ in self.slips if phase_of(t) == name),
                                   "wrong_share": _scalar(1 - _nanmean(right[:, phase_slice(name, n_steps)].ravel()))}
        out["by_kind"] = dict(Counter(kind for _, _, kind, _ in self.slips))
        return out

    # ---------------------------------------------------------------------------- summary
    def summary(self) -> dict[str, Any]:
        """The metric part of metrics.json (with the layout's name), over the steps scored so far."""
        sc = self.scores
        done = ~np.isnan(sc["ssim"])
        n_steps = int(np.flatnonzero(done.any(axis=0)).max()) + 1 if done.any() else 0
        sc = {k: v[:, :n_steps] for k, v in sc.items()}
        done = done[:, :n_steps]

        def mean(a: np.ndarray) -> list[float | None]:
            return _clean(_nanmean(a, axis=0))

        def std(a: np.ndarray) -> list[float | None]:
            return _clean(_nanstd(a, axis=0))

        onsets = [first_step(sc["ssim"][e] < SSIM_CLIFF) for e in range(len(self.lengths))]
        visible = [first_step(sc["wrong_pixels"][e] >= VISIBLE_PIXELS) for e in range(len(self.lengths))]
        ceiling_visible = [first_step(sc["ceiling_wrong_pixels"][e] >= VISIBLE_PIXELS) for e in range(len(self.lengths))]
        out: dict[str, Any] = {
            "layout": self.layout,
            "steps": list(range(1, n_steps + 1)),
            "ssim_mean": mean(sc["ssim"]), "ssim_std": std(sc["ssim"]),
            "psnr_mean": mean(sc["psnr"]), "psnr_std": std(sc["psnr"]),
            "ceiling_ssim": mean(sc["ceiling_ssim"]), "ceiling_psnr": mean(sc["ceiling_psnr"]),
            "exact_share": mean(sc["exact_share"]), "exact_share_std": std(sc["exact_share"]),
            "episodes_per_step": [int(n) for n in done.sum(axis=0)],
            **_onset_stats("onset_095", onsets),
            "visible_error_onset": {**_onset_stats("", visible, prefix=False),
                                    "ceiling": _onset_stats("", ceiling_visible, prefix=False)},
            "phases": {},
            "regions": {r: {} for r in REGIONS},
            "responses": {},
            "eraser_l1": {p: {"value": _mean_or_none(v), "n": len(v)} for p, v in self.eraser.items()},
            "empty_pen_strokes": {p: _share(v) for p, v in self.strokes.items()},
            "pen_ink": {**{p: {"value": _mean_or_none(v), "n": len(v)} for p, v in self.ink.items()},
                        "by_colour": {c: {"value": _mean_or_none(v), "n": len(v)} for c, v in sorted(self.ink_by_colour.items())}},
            "toolbar_slips": self._slip_summary(n_steps),
            "behaviour": self._behaviour_summary(),
            "definitions": DEFINITIONS,
        }
        for name, *_ in PHASES:
            cols = phase_slice(name, n_steps)
            block = {k: v[:, cols] for k, v in sc.items()}
            frames = int((~np.isnan(block["ssim"])).sum())
            out["phases"][name] = {
                "first_step": cols.start + 1, "last_step": cols.stop if cols.stop > cols.start else None,
                "frames": frames,
                **{k: _scalar(_nanmean(block[k].ravel())) for k in ("ssim", "psnr", "exact_share", "ceiling_ssim", "ceiling_psnr")},
                "ssim_std": _scalar(_nanstd(block["ssim"].ravel())),
                "psnr_std": _scalar(_nanstd(block["psnr"].ravel())),
            }
            for r in REGIONS:
                out["regions"][r][name] = _scalar(_nanmean(block[f"{r}_ssim"].ravel()))
        for r in REGIONS:
            out["regions"][r]["per_step"] = mean(sc[f"{r}_ssim"])
        for c in self.controls:
            out["responses"][c] = {p: _share(v) for p, v in self.responses[c].items()}
        groups = {"tool": [c for c in self.controls if c in TOOLS],
                  "color": [c for c in self.controls if c.startswith("color")]}
        for g, members in groups.items():
            out["responses"][g] = {p: _share([h for c in members for h in self.responses[c][p]]) for p, *_ in PHASES}
        return out


def _nanmean(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    with np.errstate(all="ignore"):
        n = (~np.isnan(a)).sum(axis=axis)
        return np.where(n > 0, np.nansum(a, axis=axis) / np.maximum(n, 1), np.nan)


def _nanstd(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    m = _nanmean(a, axis=axis)
    mm = m if axis is None else np.expand_dims(m, axis)
    return np.sqrt(_nanmean((a - mm) ** 2, axis=axis))


def _scalar(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def _clean(a: np.ndarray) -> list[float | None]:
    return [_scalar(v) for v in np.asarray(a, dtype=np.float64)]


def _mean_or_none(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def _onset_stats(key: str, onsets: list[int | None], prefix: bool = True) -> dict[str, Any]:
    hit = [o for o in onsets if o is not None]
    k = (lambda s: f"{key}_{s}") if prefix else (lambda s: s)
    return {
        k("mean"): float(np.mean(hit)) if hit else None,
        k("std"): float(np.std(hit)) if hit else None,
        k("never"): len(onsets) - len(hit),
        k("per_episode"): onsets,
    }
