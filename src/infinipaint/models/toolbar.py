"""ToolbarHead: the toolbar's next latent codes from what is selected and the mouse.

    head = ToolbarHead(latent_channels=16, rows=8)
    head.fill(codes, labels)                 # the toolbar codes seen with each selected state (training data)
    state = head.read(codes[:, :, :8])       # (B,) the selected state whose toolbar is nearest
    nxt = head.next_state(state, prev, act)  # (B,) what the step selects (prev/act: (B, 3) actions)
    toolbar = head.codes(nxt)                # (B, C, 8, 56) uint8 codes of its toolbar

Minipaint's toolbar shows exactly what is selected: the tool, the colour and the brush size (120
states), and nothing else (strokes are clipped to the canvas). With a cell-local encoder each
state's toolbar has one set of codes, which the training latents show (`fill`: every state occurs
in `data/cpu`, always with the same codes). The levels head had to re-predict the ~7,000 toolbar
codes every step, and its rare mistakes (a greyed slider knob, a selection lost on a dead click)
changed what later strokes painted. This head keeps the toolbar a function of one discrete state:
it reads the state from the current toolbar (the nearest recorded toolbar, so a frame encoded from
Minipaint reads exactly), predicts the next state with a small classifier of the state and the two
actions, and writes that state's recorded codes. A right prediction gives exactly the right
toolbar; a wrong one is a whole, clean toolbar of another state, never a damaged one.

The classifier: learned embeddings of each cursor coordinate of the two actions, per pixel (so a
control's edges and the slider's steps can be exact to the pixel) and per 4-px cell (shared by
neighbours), through one two-layer MLP for presses (the button goes down; it reads only where the
press is) and one for drags (it stays down; it reads both cursors) to logits of the tool, colour and size the step selects. A control sets its value
whatever was selected before, and only a press or a drag sets one: with the button up the logits
are the learned bonus of the current values alone. Minipaint also remembers where a press began (a
drag that began on the slider sets the size wherever it goes); the screen does not show it, so a
drag just below the slider is the one case the two actions leave open. Trained by
`infinipaint train toolbar` (`training/toolbar.py`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from infinipaint.minipaint.layout import COLORS, LAYOUT, SCREEN

TOOL_COUNT = 2  # pen, eraser
COLOUR_COUNT = len(COLORS)
SIZE_COUNT = len(LAYOUT.sizes)
PARTS = (TOOL_COUNT, COLOUR_COUNT, SIZE_COUNT)  # the selected state's parts, as `selection_labels` stores them
STATES = TOOL_COUNT * COLOUR_COUNT * SIZE_COUNT


def state_index(selected: torch.Tensor) -> torch.Tensor:
    """(..., 3) (tool, colour, size index) -> (...,) state index in 0..STATES-1."""
    selected = selected.long()
    return (selected[..., 0] * COLOUR_COUNT + selected[..., 1]) * SIZE_COUNT + selected[..., 2]


def state_parts(index: torch.Tensor) -> torch.Tensor:
    """(...,) state index -> (..., 3) (tool, colour, size index)."""
    index = index.long()
    return torch.stack([index // (COLOUR_COUNT * SIZE_COUNT), index // SIZE_COUNT % COLOUR_COUNT,
                        index % SIZE_COUNT], dim=-1)


class ToolbarHead(nn.Module):
    def __init__(self, latent_channels: int, rows: int, width: int = 56, embed: int = 32, hidden: int = 128) -> None:
        super().__init__()
        # the recorded toolbar codes of each selected state, and which states were recorded
        self.register_buffer("table", torch.zeros(STATES, latent_channels, rows, width, dtype=torch.uint8))
        self.register_buffer("seen", torch.zeros(STATES, dtype=torch.bool))
        # x, y of the previous action, then of this one: per pixel, plus per 4-px cell (shared by
        # neighbouring pixels, so a control is learnt from presses near its centre)
        self.coord_embed = nn.Embedding(4 * SCREEN, embed)
        self.cell_embed = nn.Embedding(4 * SCREEN // 4, embed)
        # one MLP for presses (the button goes down: they act where they happen, whatever the
        # previous cursor), one for drags (it stays down: where it was matters)
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(n * (embed + 1), hidden), nn.SiLU(),
                                               nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, sum(PARTS)))
                                 for n in (2, 4))
        self.keep_bias = nn.Parameter(torch.tensor(4.0))  # "the selection stays" until learned otherwise
        self._varying: torch.Tensor | None = None  # the table's positions that differ between states

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # a new table: `varying` is derived again
        self._varying = None
        super()._load_from_state_dict(*args, **kwargs)

    @property
    def ready(self) -> bool:
        """Whether the table holds any state (an untrained head has none). States the training data
        never showed have no toolbar: where one is predicted, the levels head's toolbar stands."""
        return bool(self.seen.any())

    @torch.no_grad()
    def fill(self, codes: torch.Tensor, selected: torch.Tensor) -> int:
        """Record the toolbar codes (B, C, rows, W) of frames whose selected states are `selected`
        (B, 3); returns how many of them disagree with what was recorded before (0 for Minipaint)."""
        index = state_index(selected.to(self.table.device))
        codes = codes.to(self.table.device, torch.uint8)
        known = self.seen[index]
        clashes = int((self.table[index[known]] != codes[known]).flatten(1).any(dim=1).sum())
        self.table[index[~known]] = codes[~known]
        self.seen[index] = True
        self._varying = None
        return clashes

    def varying(self) -> torch.Tensor:
        """Flat indices of the (channel, row, column) positions where recorded toolbars differ."""
        if self._varying is None or self._varying.device != self.table.device:
            rec = self.table[self.seen].flatten(1)
            self._varying = (rec != rec[:1]).any(dim=0).nonzero()[:, 0]
        return self._varying

    @torch.no_grad()
    def read(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, C, rows, W) toolbar codes -> (B,) the recorded state whose toolbar differs from them
        in the fewest codes."""
        pos = self.varying()
        have = codes.to(self.table.device).flatten(1)[:, pos].to(torch.uint8)  # (B, P)
        states = self.seen.nonzero()[:, 0]
        ref = self.table[states].flatten(1)[:, pos]  # (S, P)
        distance = (have[:, None] != ref[None]).sum(dim=2)  # (B, S)
        return states[distance.argmin(dim=1)]

    def logits(self, state: torch.Tensor, prev: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B, 2 + colours + sizes) logits of the next tool, colour and size index, given the current
        state (B,) and the step's actions prev/action (B, 3) = (x, y, button)."""
        prev, action = prev.long(), action.long()
        xy = torch.stack([prev[:, 0], prev[:, 1], action[:, 0], action[:, 1]], dim=1).clamp(0, SCREEN - 1)
        which = torch.arange(4, device=xy.device)
        coords = self.coord_embed(xy + which * SCREEN) + self.cell_embed(xy // 4 + which * (SCREEN // 4))  # (B, 4, E)
        down, held = (action[:, 2] > 0).float()[:, None], (prev[:, 2] > 0).float()[:, None]
        x = torch.cat([coords.flatten(1), xy.float() / SCREEN], dim=1)  # + the coordinates as numbers
        here = torch.cat([coords[:, 2:].flatten(1), xy[:, 2:].float() / SCREEN], dim=1)  # this action's alone
        # A control sets its value whatever was selected, and only with the button down: what the
        # actions select, from the press or the drag net, against the bonus of the current values.
        out = down * ((1 - held) * self.mlp[0](here) + held * self.mlp[1](x))
        parts = state_parts(state)
        keep = torch.cat([F.one_hot(parts[:, i], n) for i, n in enumerate(PARTS)], dim=1).float()
        return out + self.keep_bias * keep

    def next_state(self, state: torch.Tensor, prev: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B,) the most likely next state."""
        parts = [p.argmax(dim=1) for p in self.logits(state, prev, action).split(PARTS, dim=1)]
        return state_index(torch.stack(parts, dim=1))

    def codes(self, state: torch.Tensor) -> torch.Tensor:
        """(B,) states -> their recorded toolbar codes (B, C, rows, W) uint8."""
        return self.table[state]

    def loss(self, state: torch.Tensor, prev: torch.Tensor, action: torch.Tensor,
             target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Summed cross-entropy of the next tool, colour and size against `target` (B, 3)."""
        logits = self.logits(state, prev, action).split(PARTS, dim=1)
        loss = sum(F.cross_entropy(lg, target[:, i].long()) for i, lg in enumerate(logits))
        with torch.no_grad():
            wrong = torch.stack([lg.argmax(dim=1) != target[:, i] for i, lg in enumerate(logits)], dim=1).any(dim=1)
        return loss, {"ce": float(loss.detach()), "wrong": float(wrong.float().mean())}
