"""LatentCNN: predicts the next latent from the current one and two consecutive actions (SPEC §4).

    from infinipaint.models.dynamics import LatentCNN, DYNAMICS_PRESETS
    net = LatentCNN(DYNAMICS_PRESETS["cpu"])
    delta = net(z, planes)                 # z (B, 16, 56, 56), planes (B, 4, 56, 56) -> (B, 16, 56, 56)
                                           # (planes = net.action_input(prev, next): (B, 3) actions each)
    z_next = z + delta
    loss, logs = net.loss(batch)           # batch from the latent-transition dataset

A flat, single-resolution 56x56 CNN. The latent and the four action channels ([a_prev, a_next]:
cursor heatmap and button plane each) are projected to the hidden width and summed; residual
blocks follow, each normalised by Spatial Adaptive GroupNorm (GroupNorm whose per-position scale
and shift come from action features); the head predicts the delta z_{t+1} - z_t, zero-initialised
so an untrained net predicts "nothing changes".

Loss ("balanced L1"): mean |error| over latent positions that change plus mean |error| over those
that do not, averaged, so the sparse changes (under 1 % of positions for a stroke) are not drowned
by the unchanged majority. Training also perturbs the input latent with Gaussian noise and unrolls
the model on its own predictions for `unroll` steps, with scheduled sampling (early in training,
unrolled steps are fed the truth instead, less and less often; see `loss`).

The `levels` head (for an FSQ VAE, `head="levels"`): instead of a delta, the net gives, per
position and channel, logits over the `levels` FSQ values, added to a learned bias towards the
current value (so an untrained net also predicts "nothing changes"); the next latent is the most
likely value, so a right prediction reproduces the state exactly and small errors cannot pile up.
Its loss is the balanced cross-entropy (mean over changed positions and over unchanged ones,
averaged); its input noise flips a share `flip_prob` of the codes by one level; unrolled steps feed
the hard prediction back with the gradient of the soft one (straight-through).

Two inputs beyond the write-up's, off by default (`context` is on in the `cpu` preset and weights):
- `context`: the toolbar strip (tool, colour, brush size) -> one vector added to every position.
  The convolutions see ~21 cells around a position; a stroke at the bottom of the canvas is 40
  cells from the colour swatches, so without it a new stroke's colour, tool and size are guesses.
- `geometry`: `actions.stroke_geometry`, 16 planes giving, for each pixel of each cell, how near it
  is to the segment the brush sweeps this step, so the footprint is known to the pixel and not only
  to the fraction of a cell that the heatmaps give. `geometry_kind=brush` gives instead
  `actions.brush_footprint`: per pixel, which brush sizes would paint it, exactly as Minipaint
  rasterises the stroke (pygame's discs are off-centre by half a pixel and not round), so a
  pixel is painted when its plane clears one threshold per size.

The paint head (`paint_palette`, the VAE's colours: `train dynamics --paint`; it needs the levels
head, a palette VAE with cell-local codes and `geometry_kind=brush`): a stroke step that covers
part of a cell gives it a code that the encoder assigns to a mixed 4x4 pattern, and the levels head
got ~30 % of such cells wrong. So the head also says, per position, whether the step paints, with
which brush size and in which colour (`paint_probs`); with the footprint this gives each pixel's
probability of being painted. `WorldModel.advance` recolours the painted pixels of the current
frame and encodes those cells again: right pixels give exactly the right code. Canvas codes change
only there (`paint_owns_canvas`: Minipaint draws nothing else on the canvas); the toolbar is still
the levels head's. Loss: each canvas pixel's next colour, p(new) = p(keep) [old == new] + p(paint)
p(colour = new), averaged over the pixels near the stroke and apart over the rest (`paint_loss`).
Two more lessons for it: `select_weight` scores its global brush-size and colour logits against
what Minipaint has selected at every step (`selection_loss`; the labels are replayed from the
episodes' actions, `data.latents.selection_labels`), where the paint loss says it only through
the few pixels where two sizes differ. `paint_reader` gives the head a toolbar reader of its own
(a copy of the context net's), so that `paint_only` can train the head alone on a frozen trunk:
the levels head, and with it the toolbar, stays exactly the source network's, and a step costs a
forward pass of the trunk without its backward or an unrolled window.

The toolbar head (`toolbar_head`, `infinipaint train toolbar`; `models/toolbar.py`): the toolbar
rows get the recorded codes of the selected state that a small classifier predicts from the one
read off the current toolbar and the two actions (`next_toolbar`), instead of the levels head's
per-code guesses. With the paint head, no code of the next latent comes from the levels head.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from infinipaint.minipaint.layout import COLORS, LAYOUT, WHITE

ACTION_CHANNELS = 4
BRUSH_SIZES = len(LAYOUT.sizes)  # Minipaint's brush sizes, which `actions.brush_footprint` encodes
HEADS = ("delta", "levels")
NORMS = ("group", "channel")
GEOMETRY_KINDS = ("distance", "brush")


@dataclass
class DynamicsConfig:
    """Architecture and loss of the LatentCNN. Saved in every checkpoint."""

    preset: str = "cpu"  # preset this config started from (recorded, not interpreted)
    latent_channels: int = 16  # channels of z; must match the VAE
    hidden: int = 96  # width of the 56x56 feature map
    blocks: int = 4  # residual blocks
    action_features: int = 32  # width of the action feature map that drives the AdaGN
    groups: int = 8  # GroupNorm groups
    dilations: tuple[int, ...] = ()  # dilation of each block's first conv (empty: all 1); widens the receptive field
    ada_kernel: int = 3  # kernel of the conv mapping action features to AdaGN scale/shift (1 or 3)
    change_threshold: float = 0.05  # |z_{t+1} - z_t| above this (any channel) marks a changed position
    noise_std: float = 0.02  # std of Gaussian noise added to the input latent during training
    unroll: int = 1  # training steps fed back on the model's own predictions (1: one-step)
    norm: str = "group"  # "group" (GroupNorm) or "channel" (over the channels of each position: crop-invariant)
    train_crop: int = 0  # if > 0, train on crops of this many latent cells around the cursor's path (the net is local)
    sched_sampling: float = 0.0  # scheduled sampling: the share of training over which unrolled inputs move from truth to own predictions
    head: str = "delta"  # "delta" (continuous latent: z + delta) or "levels" (FSQ latent: classify each value)
    levels: int = 0  # FSQ values per channel (head "levels"; set from the VAE)
    flip_prob: float = 0.01  # head "levels": share of input codes moved one level during training
    context: int = 0  # width of the toolbar context vector (0: none); see `LatentCNN.toolbar_context`
    context_rows: int = 8  # latent rows of the toolbar (32 px / 4), the context's input
    geometry: bool = False  # also feed the stroke's pixel-precise footprint (`actions.stroke_geometry`)
    geometry_kind: str = "distance"  # "distance" (`stroke_geometry`) or "brush" (`brush_footprint`, exact)
    keep_margin: float = 0.0  # head "levels", stepping only: added to the keep bias (see `step`)
    paint_palette: tuple = ()  # the VAE's palette (RGB triples): a paint head for the canvas (see `paint_probs`); () = none
    paint_weight: float = 1.0  # weight of the paint head's loss
    paint_margin: float = 0.0  # stepping only: a pixel is painted when its logit exceeds this
    paint_owns_canvas: bool = True  # stepping only: canvas codes change only where the paint head paints
    select_weight: float = 0.0  # weight of `selection_loss` (the global brush-size and colour logits against what is selected)
    paint_reader: bool = False  # the paint head reads the toolbar with its own net (`paint_context`), not the trunk's context vector
    paint_only: bool = False  # training only: the trunk and the levels head are frozen; only the paint head (and reader) learn
    toolbar_head: bool = False  # head "levels": the toolbar's codes come from `models.toolbar.ToolbarHead` (`train toolbar`)

    def __post_init__(self) -> None:
        self.dilations = tuple(self.dilations) or (1,) * self.blocks
        if len(self.dilations) != self.blocks or min(self.dilations) < 1:
            raise ValueError(f"dilations {self.dilations} must give one value >= 1 per block ({self.blocks})")
        if self.ada_kernel not in (1, 3):
            raise ValueError(f"ada_kernel must be 1 or 3, got {self.ada_kernel}")
        if min(self.latent_channels, self.hidden, self.blocks, self.action_features, self.groups, self.unroll) < 1:
            raise ValueError("latent_channels, hidden, blocks, action_features, groups and unroll must be >= 1")
        if self.hidden % self.groups:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by groups ({self.groups})")
        if self.change_threshold <= 0 or self.noise_std < 0:
            raise ValueError("change_threshold must be > 0 and noise_std >= 0")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head == "levels" and (self.levels < 3 or self.levels % 2 == 0):
            raise ValueError(f"head 'levels' needs the VAE's FSQ levels (odd, >= 3), got levels={self.levels}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if not 0 <= self.train_crop <= 56:
            raise ValueError(f"train_crop must be 0 (whole latent) or 1-56 cells, got {self.train_crop}")
        if not 0 <= self.sched_sampling <= 1:
            raise ValueError(f"sched_sampling must be in [0, 1], got {self.sched_sampling}")
        if not 0 <= self.flip_prob < 1:
            raise ValueError(f"flip_prob must be in [0, 1), got {self.flip_prob}")
        if not 0 <= self.keep_margin < 100:
            raise ValueError(f"keep_margin must be in [0, 100), got {self.keep_margin}")
        if self.geometry_kind not in GEOMETRY_KINDS:
            raise ValueError(f"geometry_kind must be one of {GEOMETRY_KINDS}, got {self.geometry_kind!r}")
        self.paint_palette = tuple(tuple(int(v) for v in rgb) for rgb in self.paint_palette)
        if self.paint_palette:
            if self.head != "levels" or not self.geometry or self.geometry_kind != "brush":
                raise ValueError("the paint head needs head 'levels' and geometry=true with geometry_kind=brush")
            if len(self.paint_palette) < 2 or any(len(c) != 3 or not all(0 <= v < 256 for v in c) for c in self.paint_palette):
                raise ValueError(f"paint_palette must be >= 2 RGB triples in 0-255, got {self.paint_palette}")
        if self.select_weight < 0:
            raise ValueError(f"select_weight must be >= 0, got {self.select_weight}")
        if (self.paint_reader or self.paint_only) and self.paint_palette and not (self.context and self.paint_reader):
            raise ValueError("paint_reader needs the toolbar context (context > 0); paint_only needs paint_reader "
                             "(a frozen trunk's context vector cannot learn what is selected)")
        if self.select_weight > 0 and self.paint_palette and not self.context:
            raise ValueError("select_weight needs the toolbar context (context > 0): it trains the paint head's global logits")
        if self.paint_weight < 0 or abs(self.paint_margin) >= 100:
            raise ValueError(f"paint_weight must be >= 0 and |paint_margin| < 100, got {self.paint_weight}, {self.paint_margin}")
        if self.toolbar_head and self.head != "levels":
            raise ValueError("toolbar_head needs head 'levels' (an FSQ latent): it writes recorded toolbar codes")
        if self.context < 0 or not 2 <= self.context_rows <= 56:
            raise ValueError(f"context must be >= 0 and context_rows 2-56, got {self.context}, {self.context_rows}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DYNAMICS_PRESETS: dict[str, DynamicsConfig] = {
    "tiny": DynamicsConfig(preset="tiny", hidden=16, blocks=1, action_features=8, groups=4),
    "cpu": DynamicsConfig(preset="cpu", hidden=48, blocks=4, action_features=32, groups=8,
                          dilations=(1, 2, 4, 8), ada_kernel=1, norm="channel", train_crop=32, unroll=4,
                          sched_sampling=0.3, context=64),
    "paper": DynamicsConfig(preset="paper", hidden=256, blocks=4, action_features=64, groups=32),
}


class ChannelNorm(nn.Module):
    """Normalise each position over its channels (no spatial statistics: the same on a crop as on
    the whole map, and cheap)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # layer_norm over the last dim of the (B, H, W, C) view: one fused kernel (a channels_last
        # tensor is already laid out that way), instead of var_mean and four elementwise passes.
        x = h.permute(0, 2, 3, 1)
        return F.layer_norm(x, (x.shape[-1],), eps=self.eps).permute(0, 3, 1, 2)


def make_norm(kind: str, groups: int, channels: int, affine: bool = True) -> nn.Module:
    return nn.GroupNorm(groups, channels, affine=affine) if kind == "group" else ChannelNorm()


class SpatialAdaGN(nn.Module):
    """Norm(h) * (1 + scale(a)) + shift(a), with per-position scale and shift from action features;
    Norm is GroupNorm (the write-up's) or ChannelNorm."""

    def __init__(self, channels: int, features: int, groups: int, kernel: int = 3, norm: str = "group") -> None:
        super().__init__()
        self.norm = make_norm(norm, groups, channels, affine=False)
        self.to_scale_shift = nn.Conv2d(features, 2 * channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, h: torch.Tensor, a: torch.Tensor, scale_shift: torch.Tensor | None = None) -> torch.Tensor:
        """`scale_shift`: (1 + scale, shift) already computed from `a` (see `LatentCNN.ada_inputs`)."""
        if scale_shift is not None:
            scale1, shift = scale_shift.chunk(2, dim=1)
            return torch.addcmul(shift, self.norm(h), scale1)
        scale, shift = self.to_scale_shift(a).chunk(2, dim=1)  # (B, C, 56, 56) each
        return self.norm(h) * (1 + scale) + shift


class AdaBlock(nn.Module):
    def __init__(self, c: DynamicsConfig, dilation: int = 1) -> None:
        super().__init__()
        self.norm1 = SpatialAdaGN(c.hidden, c.action_features, c.groups, c.ada_kernel, c.norm)
        self.conv1 = nn.Conv2d(c.hidden, c.hidden, 3, padding=dilation, dilation=dilation)
        self.norm2 = SpatialAdaGN(c.hidden, c.action_features, c.groups, c.ada_kernel, c.norm)
        self.conv2 = nn.Conv2d(c.hidden, c.hidden, 3, padding=1)

    def forward(self, h: torch.Tensor, a: torch.Tensor, scale_shift: tuple | None = None) -> torch.Tensor:
        ss1, ss2 = scale_shift or (None, None)
        r = self.conv1(F.silu(self.norm1(h, a, ss1)))
        r = self.conv2(F.silu(self.norm2(r, a, ss2)))
        return h + r


class LatentCNN(nn.Module):
    def __init__(self, config: DynamicsConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or DynamicsConfig()
        self.z_in = nn.Conv2d(c.latent_channels, c.hidden, 3, padding=1)
        self.a_in = nn.Conv2d(self.action_channels, c.hidden, 3, padding=1)
        self.a_features = nn.Sequential(
            nn.Conv2d(self.action_channels, c.action_features, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c.action_features, c.action_features, 3, padding=1), nn.SiLU(),
        )
        if c.context:
            # The toolbar strip (tool, colour, brush size: global state that a stroke far below it
            # needs, out of reach of the convolutions) -> one vector, added to every position.
            rows = (c.context_rows + 1) // 2  # after the stride-2 conv
            self.context_net = nn.Sequential(
                nn.Conv2d(c.latent_channels, 16, 3, stride=2, padding=1), nn.SiLU(),
                nn.Flatten(), nn.Linear(16 * rows * 28, c.context), nn.SiLU(),
                nn.Linear(c.context, c.hidden + c.action_features),
            )
        self.blocks = nn.ModuleList(AdaBlock(c, d) for d in c.dilations)
        self.out_norm = make_norm(c.norm, c.groups, c.hidden)
        outputs = c.latent_channels * (c.levels if c.head == "levels" else 1)
        self.head = nn.Conv2d(c.hidden, outputs, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if c.head == "levels":  # logit bonus of the current value: "nothing changes" until learned otherwise
            self.keep_bias = nn.Parameter(torch.tensor(4.0))
        if c.paint_palette:  # per position: does the step paint, with which brush size, in which colour
            self.paint_head = nn.Conv2d(c.hidden, 1 + BRUSH_SIZES + len(c.paint_palette), 3, padding=1)
            nn.init.zeros_(self.paint_head.weight)
            if c.context:  # brush size and colour are global: also read them off the toolbar context
                self.paint_global = nn.Linear(c.context, BRUSH_SIZES + len(c.paint_palette))
                if c.paint_reader:  # with a toolbar reader of its own (`context_net`'s but the last layer)
                    self.paint_reader = copy.deepcopy(self.context_net[:-1])
                nn.init.zeros_(self.paint_global.weight)
                nn.init.zeros_(self.paint_global.bias)
            with torch.no_grad():  # untrained: nothing is painted
                self.paint_head.bias.zero_()
                self.paint_head.bias[0] = -8.0
            self._palette_lut: torch.Tensor | None = None
            self._select_lut: torch.Tensor | None = None
        if c.toolbar_head:  # the toolbar: one of the selected states' recorded codes (see `next_toolbar`)
            from .toolbar import ToolbarHead

            self.toolbar = ToolbarHead(c.latent_channels, c.context_rows)
        # Per-channel latent statistics of the training data: the net works on normalised latents,
        # so noise, the change threshold and the loss mean the same for any VAE.
        self.register_buffer("z_mean", torch.zeros(c.latent_channels))
        self.register_buffer("z_std", torch.ones(c.latent_channels))
        self.block_norms: list[float] = []  # per-block activation RMS of the last forward (viewer)
        self.context_vector: torch.Tensor | None = None  # the toolbar context of the last forward (B, context)
        self.toolbar_strip: torch.Tensor | None = None  # the normalised toolbar strip of the last forward
        self.progress = 1.0  # share of training done (set by the training loop): drives scheduled sampling

    @property
    def action_channels(self) -> int:
        from infinipaint.actions import GEOMETRY_CHANNELS

        return ACTION_CHANNELS + (GEOMETRY_CHANNELS if self.config.geometry else 0)

    def action_input(self, prev: torch.Tensor, next: torch.Tensor) -> torch.Tensor:
        """The action planes this net reads for the transition prev -> next ((B, 3) each):
        (B, action_channels, 56, 56) = `pair_planes` (+ `stroke_geometry` or `brush_footprint` with `geometry`)."""
        from infinipaint.actions import brush_footprint, pair_planes, stroke_geometry

        planes = pair_planes(prev, next)
        if not self.config.geometry:
            return planes
        footprint = brush_footprint if self.config.geometry_kind == "brush" else stroke_geometry
        return torch.cat([planes, footprint(prev, next)], dim=1)

    def set_progress(self, progress: float) -> None:
        self.progress = float(progress)

    def truth_share(self) -> float:
        """Probability that an unrolled step is fed the true latent instead of the model's own
        prediction: 1 at the start of training, falling linearly to 0 over the first
        `sched_sampling` of it; always 0 outside training (validation measures real rollouts)."""
        if not self.training or self.config.sched_sampling == 0:
            return 0.0
        return max(0.0, 1.0 - self.progress / self.config.sched_sampling)

    def feed(self, pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """The next unrolled input: per sample, the truth with probability `truth_share`, else `pred`."""
        share = self.truth_share()
        if share == 0.0:
            return pred
        use_truth = (torch.rand(pred.shape[0], device=pred.device) < share).view(-1, *[1] * (pred.ndim - 1))
        return torch.where(use_truth, truth.to(pred.dtype), pred)

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.z_mean.copy_(mean)
        self.z_std.copy_(std.clamp(min=1e-4))

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.z_mean.view(1, -1, 1, 1)) / self.z_std.view(1, -1, 1, 1)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.z_std.view(1, -1, 1, 1) + self.z_mean.view(1, -1, 1, 1)

    def step(self, z: torch.Tensor, planes: torch.Tensor, toolbar: torch.Tensor | None = None) -> torch.Tensor:
        """Next raw latent for raw (VAE-scale) latents: z + delta, or (levels) the most likely values.
        z may be a window of the map if `toolbar`, the whole map's raw toolbar strip, is given.

        Head "levels": `keep_margin` is added to the logit of each current value before the argmax.
        The balanced loss weighs the few changed positions as much as all unchanged ones, so the
        trained argmax changes values too readily (stray pixels around strokes, under hovers); the
        margin moves the decision back towards "unchanged" (`scripts/error_budget.py --keep-margin`
        measures it)."""
        return self.predict(z, planes, toolbar)[0]

    def predict(self, z: torch.Tensor, planes: torch.Tensor,
                toolbar: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """`step`'s next latent, and with a paint head what it paints: (pixels (B, 16, H, W) bool, in
        the layout of `actions.brush_footprint`, and the colour of each cell (B, H, W), an index into
        `paint_palette`); None without one. The canvas cells it paints get their codes from the VAE
        encoder (`WorldModel.advance`), not from the levels head."""
        zn = self.normalize(z.float())
        if toolbar is not None and self.config.context:
            toolbar = self.normalize(toolbar.float())
        if self.config.head == "levels":
            from .vae import from_codes

            features = self.features(zn, planes, toolbar)
            # argmax over a contiguous last dim: over dim 2 of the (B, C, L, H, W) logits it is ~10x slower
            logits = self.level_logits(z, zn, planes, toolbar, self.config.keep_margin, features)
            codes = logits.movedim(2, -1).contiguous().argmax(dim=-1)
            paint = None
            if self.config.paint_palette:
                log_paint, log_keep, colour = self.paint_probs(features, planes)
                paint = (log_paint - log_keep > self.config.paint_margin, colour.argmax(dim=1))
            return from_codes(codes, self.config.levels), paint
        return self.denormalize(zn + self(zn, planes, toolbar).float()), None

    @torch.no_grad()
    def next_toolbar(self, z: torch.Tensor, prev: torch.Tensor,
                     action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Toolbar head: the next toolbar rows (B, C, context_rows, W) as raw latent values, for raw
        latents z (B, C, H, W) and the step's actions prev/action (B, 3) (the selected state read off
        z's toolbar, its successor, that state's recorded codes), and (B,) bool: whether that state
        was recorded (where not, the levels head's toolbar stands). None without a toolbar head or
        with an empty table (untrained)."""
        if not self.config.toolbar_head or not self.toolbar.ready:
            return None
        from .vae import from_codes, to_codes

        levels = self.config.levels
        state = self.toolbar.read(to_codes(z[:, :, : self.config.context_rows], levels))
        following = self.toolbar.next_state(state, prev.to(z.device), action.to(z.device))
        return from_codes(self.toolbar.codes(following).long(), levels), self.toolbar.seen[following]

    # ------------------------------------------------------------------------------ paint head
    def paint_probs(self, features: torch.Tensor, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Paint head: (log p(painted), log p(not painted)) of each pixel of each cell (B, 16, H, W),
        and colour logits (B, P, H, W) over `paint_palette`.

        The head gives per position a gate (does this step paint here), a distribution over the
        brush sizes and one over the colours (with `context`, plus global logits read off the toolbar
        context vector of the same forward: what is selected is one state for the whole screen); the stroke's exact `brush_footprint` (the last 16
        action planes) says which sizes would paint each pixel (size s: where the plane reads
        >= (11 - s) / 10), so p(painted) = sigmoid(gate) * p(size >= the smallest that covers it). The
        net only has to tell whether the pen paints and what is selected; the footprint does the
        geometry, to the pixel."""
        from infinipaint.actions import GEOMETRY_CHANNELS

        out = self.paint_head(features).float()
        if self.config.context:  # global logits of the brush size and colour, from the toolbar context
            glob = self.paint_global(self.paint_context())[:, :, None, None]
            out = torch.cat([out[:, :1], out[:, 1:] + glob], dim=1)
        gate, size_logits, colour = out[:, :1], out[:, 1 : 1 + BRUSH_SIZES], out[:, 1 + BRUSH_SIZES :]
        # at_least[:, j] = p(size >= j + 1); index BRUSH_SIZES (no size covers the pixel): 0
        at_least = size_logits.softmax(dim=1).flip(1).cumsum(dim=1).flip(1)
        at_least = torch.cat([at_least, torch.zeros_like(at_least[:, :1])], dim=1)
        footprint = planes[:, -GEOMETRY_CHANNELS:].float()
        smallest = (BRUSH_SIZES + 1 - BRUSH_SIZES * footprint).round().long().clamp(1, BRUSH_SIZES + 1)
        covered = at_least.gather(1, smallest - 1).clamp(0, 1)  # (B, 16, H, W)
        log_paint = F.logsigmoid(gate) + covered.clamp(min=1e-12).log()
        log_keep = torch.log1p(-log_paint.exp().clamp(max=1 - 1e-7))
        return log_paint, log_keep, colour

    def paint_context(self) -> torch.Tensor:
        """The vector the paint head's global logits read (B, context), of the last forward's
        toolbar: the trunk's context vector, or with `paint_reader` the head's own reader's."""
        if self.config.paint_reader:
            return self.paint_reader(self.toolbar_strip.float()).float()
        return self.context_vector.float()

    def selection_loss(self, selected: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of the paint head's global logits (`paint_global` of `paint_context`, the
        last forward's toolbar) against what is selected before the step: `selected`
        (B, 3) = (tool, colour, size index) as `data.latents.selection_labels`; the target colour is
        the one the brush paints (white for the eraser). The paint loss teaches the size only through
        the few pixels where two sizes differ; this says it at every step."""
        glob = self.paint_global(self.paint_context())
        size_logits, colour_logits = glob[:, :BRUSH_SIZES], glob[:, BRUSH_SIZES:]
        if self._select_lut is None or self._select_lut.device != selected.device:  # (tool, colour) -> palette index
            palette = list(self.config.paint_palette)
            self._select_lut = torch.tensor([[palette.index(c) if c in palette else -100 for c in COLORS],
                                             [palette.index(WHITE) if WHITE in palette else -100] * len(COLORS)],
                                            device=selected.device)
        size, colour = selected[:, 2], self._select_lut[selected[:, 0], selected[:, 1]]
        loss = F.cross_entropy(size_logits, size) + F.cross_entropy(colour_logits, colour, ignore_index=-100)
        with torch.no_grad():
            logs = {"select_ce": float(loss.detach()),
                    "select_wrong_size": float((size_logits.argmax(dim=1) != size).float().mean()),
                    "select_wrong_colour": float((colour_logits.argmax(dim=1) != colour).float().mean())}
        return loss, logs

    def palette_cells(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (..., 224, 224, 3) -> palette indices per cell (..., 16, 56, 56) (int64; -1:
        a colour not in `paint_palette`)."""
        from infinipaint.actions import cell_planes

        if self._palette_lut is None or self._palette_lut.device != frames.device:
            lut = torch.full((1 << 24,), -1, dtype=torch.int8, device=frames.device)
            for i, (r, g, b) in enumerate(self.config.paint_palette):
                lut[(r << 16) | (g << 8) | b] = i
            self._palette_lut = lut
        f = frames.to(torch.int32)
        idx = self._palette_lut[(f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]].long()
        cells = cell_planes(idx.reshape(-1, *idx.shape[-2:]))  # (N, 16, 56, 56)
        return cells.view(*idx.shape[:-2], *cells.shape[1:])

    def paint_loss(self, features: torch.Tensor, planes: torch.Tensor, old: torch.Tensor, new: torch.Tensor,
                   canvas: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Negative log-likelihood of each canvas pixel's next colour `new` (B, 16, H, W) given its
        colour `old` (palette indices; -1 is left out): p(new) = p(keep) [old == new] + p(paint)
        p(colour = new), so a pixel already of the brush colour is right either way. `canvas` (B, 1,
        H, W) bool: the cells it covers (the toolbar is the levels head's).

        Averaged over the pixels near the stroke (inside the largest brush's footprint, or changed)
        and, apart, over all others, then the two means averaged. Near the stroke every pixel weighs
        the same, so painting one pixel too many costs as much as one too few: the levels loss's
        balance (changed against all unchanged) would make a stray pixel 10,000 times cheaper than a
        missed one, and the head would paint the largest brush it could be."""
        from infinipaint.actions import GEOMETRY_CHANNELS

        log_paint, log_keep, colour_logits = self.paint_probs(features, planes)
        valid = canvas & (old >= 0) & (new >= 0)
        target = new.clamp(min=0)
        lp_paint = log_paint + colour_logits.log_softmax(dim=1).gather(1, target)  # one colour per cell
        lp_keep = torch.where(old == new, log_keep, torch.full_like(log_keep, -1e4))
        nll = -torch.logaddexp(lp_paint, lp_keep)
        changed = (old != new) & valid
        near = (planes[:, -GEOMETRY_CHANNELS:] > 0) | changed
        loss, l_near, l_far = self.balance(nll, near & valid, valid)
        with torch.no_grad():
            pred = torch.where(log_paint > log_keep, colour_logits.argmax(dim=1, keepdim=True), old)
            wrong = pred != new
            same = valid & ~changed
            logs = {"paint_nll_near": float(l_near.detach()), "paint_nll_far": float(l_far.detach()),
                    "paint_wrong_changed": float((wrong & changed).sum() / changed.sum().clamp(min=1)),
                    "paint_wrong_same": float((wrong & same).sum() / same.sum().clamp(min=1)),
                    "paint_wrong_near_same": float((wrong & same & near).sum() / (same & near).sum().clamp(min=1))}
        return loss, logs

    def level_logits(self, z: torch.Tensor, zn: torch.Tensor, planes: torch.Tensor,
                     toolbar: torch.Tensor | None = None, margin: float = 0.0,
                     features: torch.Tensor | None = None) -> torch.Tensor:
        """Head "levels": logits (B, C, L, 56, 56) of the next value of each channel, from the raw
        latent z (its current codes get the keep bias, plus `margin`) and its normalised zn (the
        net's input); `toolbar` as in `forward`; `features`: those of (zn, planes, toolbar), if
        already computed."""
        from .vae import to_codes

        b, c, h, w = z.shape
        if features is None:
            features = self.features(zn, planes, toolbar)
        logits = self.head(features).float().view(b, c, self.config.levels, h, w)
        current = to_codes(z, self.config.levels).unsqueeze(2)  # (B, C, 1, H, W)
        return logits.scatter_add(2, current, (self.keep_bias + margin).expand(current.shape))

    def toolbar_context(self, toolbar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden, action-feature) biases (B, hidden, 1, 1), (B, action_features, 1, 1) from the
        normalised toolbar strip (B, C, context_rows, 56): what is selected, for every position."""
        rows = self.config.context_rows
        if toolbar.shape[-2:] != (rows, 56):
            raise ValueError(f"toolbar strip must be (B, C, {rows}, 56), got {tuple(toolbar.shape)}")
        vector = self.context_net[:-1](toolbar)  # (B, context)
        self.context_vector = vector  # the paint head's global brush size and colour read it
        g = self.context_net[-1](vector)[:, :, None, None]
        return g[:, : self.config.hidden], g[:, self.config.hidden :]

    def forward(self, z: torch.Tensor, planes: torch.Tensor, toolbar: torch.Tensor | None = None) -> torch.Tensor:
        """The delta of a normalised latent z (B, C, 56, 56) under action planes (B, 4, 56, 56);
        head "levels": (B, C * L, 56, 56) logits, without the keep bias (see `level_logits`).

        With `context`, `toolbar` is the normalised toolbar strip of the whole latent (B, C,
        context_rows, 56); None takes it from z, which must then be the whole latent (training on
        crops passes it)."""
        return self.head(self.features(z, planes, toolbar))

    def features(self, z: torch.Tensor, planes: torch.Tensor, toolbar: torch.Tensor | None = None) -> torch.Tensor:
        """The last feature map (B, hidden, 56, 56), which the heads read; arguments as `forward`."""
        h = self.z_in(z) + self.a_in(planes)  # (B, hidden, 56, 56)
        if self.config.context:
            if toolbar is None:
                toolbar = z[:, :, : self.config.context_rows]
            self.toolbar_strip = toolbar
            g_h, g_a = self.toolbar_context(toolbar)
            h = h + g_h
            a = F.silu(self.a_features[:-1](planes) + g_a)  # (B, action_features, 56, 56)
        else:
            a = self.a_features(planes)  # (B, action_features, 56, 56)
        norms = []
        # Inference: every AdaGN's scale/shift from one convolution (eight small ones cost more).
        ada = self.ada_inputs(a) if not self.training else [None] * len(self.blocks)
        for block, scale_shift in zip(self.blocks, ada):
            h = block(h, a, scale_shift)
            norms.append(h.detach().float().pow(2).mean().sqrt())
        self.block_norms = [float(n) for n in norms] if not self.training else []
        return F.silu(self.out_norm(h))

    def ada_inputs(self, a: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per block, the (1 + scale, shift) inputs of its two AdaGNs, stacked (B, 2 * hidden, H, W),
        computed by one convolution whose weights are those of all the AdaGNs side by side."""
        convs = [n.to_scale_shift for b in self.blocks for n in (b.norm1, b.norm2)]
        one = torch.ones(self.config.hidden, device=a.device)
        bias = torch.cat([c.bias + torch.cat([one, torch.zeros_like(one)]) for c in convs])
        k = convs[0].kernel_size[0]
        out = F.conv2d(a, torch.cat([c.weight for c in convs]), bias, padding=k // 2)
        parts = out.chunk(len(convs), dim=1)
        return [(parts[2 * i], parts[2 * i + 1]) for i in range(len(self.blocks))]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --------------------------------------------------------------------------------- loss
    @staticmethod
    def balance(err: torch.Tensor, changed: torch.Tensor,
                valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, mean over changed, mean over unchanged) of a per-position error (B, 1, H, W): the
        two means averaged; a side with no positions in the batch contributes nothing. `valid`
        (bool, as `changed`): the positions counted (None: all)."""
        mask = changed.float()
        rest = 1 - mask if valid is None else (valid & ~changed).float()
        n_changed, n_same = mask.sum(), rest.sum()
        l_changed = (err * mask).sum() / n_changed.clamp(min=1)
        l_same = (err * rest).sum() / n_same.clamp(min=1)
        loss = l_same if n_changed == 0 else l_changed if n_same == 0 else 0.5 * (l_changed + l_same)
        return loss, l_changed, l_same

    def balanced_l1(self, pred: torch.Tensor, target: torch.Tensor, changed: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Mean L1 over changed positions and over unchanged ones, averaged.

        pred/target: next latents (B, C, H, W); changed: bool (B, 1, H, W). A side with no
        positions in the batch contributes nothing (the other side alone is the loss).
        """
        err = (pred.float() - target.float()).abs().mean(dim=1, keepdim=True)  # (B, 1, H, W)
        loss, l_changed, l_same = self.balance(err, changed)
        return loss, {"l1_changed": float(l_changed.detach()), "l1_same": float(l_same.detach()),
                      "changed_share": float(changed.float().mean())}

    def changed_mask(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        return (z1.float() - z0.float()).abs().amax(dim=1, keepdim=True) > self.config.change_threshold

    def normalize_seq(self, zs: torch.Tensor) -> torch.Tensor:
        b, t = zs.shape[:2]
        return self.normalize(zs.flatten(0, 1)).unflatten(0, (b, t))

    def windows(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor], list, int, dict]:
        """(latents (B, K+1, C, h, w), action planes for each of the k trained transitions
        [(B, 4, h, w)], the true toolbar strips of their inputs, normalised, [(B, C, context_rows,
        56)] (or [None] * k without `context`), k, paint targets) of a batch; with `train_crop` > 0,
        h = w = train_crop cells around the cursor's path over the window (the changes are there),
        each sample cropped on its own. Paint targets, with a paint head and `batch["frames"]`
        (uint8 (B, K+1, 224, 224, 3)): {"cells": palette indices (B, K+1, 16, h, w), "canvas":
        (B, 1, h, w) bool, the cells below the toolbar}; else {}."""
        z, actions = batch["z"], batch["actions"]
        k = min(self.config.unroll, actions.shape[1] - 1)
        planes = [self.action_input(actions[:, t], actions[:, t + 1]).to(z.dtype) for t in range(k)]
        rows = self.config.context_rows
        toolbars = [self.normalize(z[:, t, :, :rows].float()) if self.config.context else None for t in range(k)]
        paint = {}
        if self.config.paint_palette and "frames" in batch:
            canvas = torch.ones(z.shape[0], 1, *z.shape[-2:], dtype=torch.bool, device=z.device)
            canvas[:, :, :rows] = False
            paint = {"cells": self.palette_cells(batch["frames"][:, : k + 1]), "canvas": canvas}
        size, full = self.config.train_crop, z.shape[-1]
        if size == 0 or size >= full:
            return z, planes, toolbars, k, paint
        centre = actions[:, 1 : k + 1, :2].float().mean(dim=1) * full / 224.0  # (B, 2) latent x, y
        centre = centre + torch.randn_like(centre) * size / 6  # vary where the cursor sits in the crop
        anywhere = torch.rand(centre.shape[0], device=centre.device) < 0.25  # and some crops far from it
        centre = torch.where(anywhere[:, None], torch.rand_like(centre) * full, centre)
        x0 = (centre[:, 0] - size / 2).round().clamp(0, full - size).long().tolist()
        y0 = (centre[:, 1] - size / 2).round().clamp(0, full - size).long().tolist()

        def crop(t: torch.Tensor) -> torch.Tensor:
            return torch.stack([t[i, ..., y : y + size, x : x + size] for i, (x, y) in enumerate(zip(x0, y0))])

        return crop(z), [crop(p) for p in planes], toolbars, k, {key: crop(v) for key, v in paint.items()}

    def balanced_ce(self, logits: torch.Tensor, target: torch.Tensor, changed: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Head "levels": cross-entropy per position (mean over channels), averaged over changed and
        unchanged positions as in `balanced_l1`. logits (B, C, L, H, W), target codes (B, C, H, W)."""
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(dim=1, keepdim=True)
        loss, l_changed, l_same = self.balance(ce, changed)
        with torch.no_grad():
            wrong = (logits.argmax(dim=2) != target).any(dim=1, keepdim=True).float()
            _, wrong_changed, wrong_same = self.balance(wrong, changed)
        return loss, {"ce_changed": float(l_changed.detach()), "ce_same": float(l_same.detach()),
                      "changed_share": float(changed.float().mean()),
                      "wrong_changed": float(wrong_changed), "wrong_same": float(wrong_same)}

    def loss_levels(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Head "levels": unrolled balanced cross-entropy over a window (see `loss`)."""
        from .vae import from_codes, to_codes

        levels = self.config.levels
        zs, all_planes, toolbars, k, paint = self.windows(batch)
        codes = to_codes(zs, levels)  # (B, K+1, C, H, W)
        values = from_codes(torch.arange(levels, device=codes.device), levels).view(1, 1, levels, 1, 1)
        z = from_codes(codes[:, 0], levels)
        total = torch.zeros((), device=z.device)
        logs: dict[str, float] = {}
        for t in range(k):
            planes = all_planes[t].float()
            if self.config.flip_prob > 0:  # move a few codes one level up or down
                flip = (torch.rand_like(z) < self.config.flip_prob).float()
                sign = torch.randint_like(z, 0, 2) * 2 - 1
                noisy = (z + flip * sign * 2 / (levels - 1)).clamp(-1, 1)
            else:
                noisy = z
            target = codes[:, t + 1]
            if self.config.paint_only:  # a frozen trunk: its features, no levels loss
                with torch.no_grad():
                    features = self.features(self.normalize(z), planes, toolbars[t])
                loss_t, logs_t = torch.zeros((), device=z.device), {}
            else:
                features = self.features(self.normalize(noisy), planes, toolbars[t])
                logits = self.level_logits(noisy.detach(), None, planes, features=features)
                loss_t, logs_t = self.balanced_ce(logits, target, (target != codes[:, t]).any(dim=1, keepdim=True))
            if paint:  # the true pixels before and after (not the unrolled state's: the footprint is the lesson)
                cells = paint["cells"]
                paint_t, paint_logs = self.paint_loss(features, planes, cells[:, t], cells[:, t + 1], paint["canvas"])
                loss_t = loss_t + self.config.paint_weight * paint_t
                logs_t.update(paint_logs)
            if self.config.select_weight > 0 and paint and "selected" in batch:
                select_t, select_logs = self.selection_loss(batch["selected"][:, t])
                loss_t = loss_t + self.config.select_weight * select_t
                logs_t.update(select_logs)
            total = total + loss_t / k
            if t == 0:
                logs.update(logs_t)
            if self.config.paint_only:  # the true next state (the paint head learns from true pixels)
                z = from_codes(target, levels)
                continue
            soft = (logits.softmax(dim=2) * values).sum(dim=2)
            hard = from_codes(logits.argmax(dim=2), levels)
            z = self.feed(hard + soft - soft.detach(), from_codes(target, levels))  # straight-through: hard values, soft gradient
        logs[f"loss_step{k}"] = float(loss_t.detach())
        if not self.training and not self.config.paint_only:
            logs.update(self.clean_rollout_errors(codes, all_planes, toolbars, k))
        return total, logs

    @torch.no_grad()
    def clean_rollout_errors(self, codes: torch.Tensor, planes: list[torch.Tensor], toolbars: list,
                             k: int) -> dict[str, float]:
        """Head "levels", validation: the window rolled out as the simulator does (no input noise,
        the most likely codes fed back) from its first true codes (B, K+1, C, H, W), and the shares
        of positions with any wrong code after k steps, over the positions the window changes and
        over the others. The noised loss also counts noise the net did not undo; these count only
        its own errors."""
        from .vae import from_codes

        levels = self.config.levels
        pred = codes[:, 0]
        for t in range(k):
            z = from_codes(pred, levels)
            pred = self.level_logits(z, self.normalize(z), planes[t].float(), toolbars[t]).argmax(dim=2)
        target = codes[:, k]
        wrong = (pred != target).any(dim=1, keepdim=True).float()
        _, wrong_changed, wrong_same = self.balance(wrong, (target != codes[:, 0]).any(dim=1, keepdim=True))
        return {"clean_wrong_changed": float(wrong_changed), "clean_wrong_same": float(wrong_same)}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Unrolled balanced-L1 loss over a window of K transitions.

        batch["z"]: (B, K+1, C, 56, 56) raw VAE latents of frames t..t+K; batch["actions"]:
        (B, K+1, 3) the steps, `actions[:, 0]` being `a_prev` of the first transition. The first
        input gets Gaussian noise; from the second transition on, the input is the model's own
        (noised) prediction, so the model learns to correct its own drift. Transition losses are
        averaged over the first `unroll` transitions of the window.
        """
        if self.config.head == "levels":
            return self.loss_levels(batch)
        raw, all_planes, toolbars, k, _ = self.windows(batch)
        zs = self.normalize_seq(raw.float())
        z = zs[:, 0]
        total = torch.zeros((), device=zs.device)
        logs: dict[str, float] = {}
        for t in range(k):
            planes = all_planes[t].to(zs.dtype)  # (B, 4, h, w)
            noisy = z + self.config.noise_std * torch.randn_like(z)
            pred = noisy + self(noisy, planes, toolbars[t]).float()
            target = zs[:, t + 1]
            loss_t, logs_t = self.balanced_l1(pred, target, self.changed_mask(zs[:, t], target))
            total = total + loss_t / k
            if t == 0:
                logs.update(logs_t)
            z = self.feed(pred, target)
        logs[f"loss_step{k}"] = float(loss_t.detach())
        return total, logs


# The convolutions that read the action planes: the only weights whose shape `geometry` changes.
ACTION_INPUT_WEIGHTS = ("a_in.weight", "a_features.0.weight")


def initial_state(model: LatentCNN, state: dict[str, torch.Tensor], source: DynamicsConfig) -> dict[str, torch.Tensor]:
    """Trained weights of a network with config `source` as the start of `model` (`--init-from`).
    A model that also reads the stroke geometry (`--model-set geometry=true`) where the source did
    not gets the source's action convolutions with zero weights for the new planes appended, so it
    starts out predicting exactly what the source predicts and learns what the planes add. A model
    with a paint head (`--paint`) where the source had none gets the head untrained (it paints
    nothing until it learns to)."""
    out = dict(state)
    if model.config.geometry and not source.geometry:
        own = model.state_dict()
        for key in ACTION_INPUT_WEIGHTS:
            w = out[key]
            extra = own[key].shape[1] - w.shape[1]
            out[key] = torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], dim=1)
    own = model.state_dict()
    if model.config.paint_reader and not any(k.startswith("paint_reader.") for k in out):
        # the paint head's own toolbar reader starts as the source's (trained) one
        out.update({"paint_reader." + k[len("context_net."):]: v for k, v in out.items()
                    if k.startswith("context_net.") and "paint_reader." + k[len("context_net."):] in own})
    if model.config.toolbar_head and any(k not in out or own[k].shape != out[k].shape
                                         for k in own if k.startswith("toolbar.")):
        out.update({k: v for k, v in own.items() if k.startswith("toolbar.")})  # untrained: an empty table
    elif not model.config.toolbar_head:
        out = {k: v for k, v in out.items() if not k.startswith("toolbar.")}
    for head in ("paint_head.", "paint_global."):
        if any(own[k].shape != out.get(k, own[k][:0]).shape for k in own if k.startswith(head)):
            # a new paint head (or one of another shape): its untrained start
            out.update({k: v for k, v in own.items() if k.startswith(head)})
    return out
