"""LatentCNN: predicts the next latent from the current one and two consecutive actions (SPEC §4).

    from infinipaint.models.dynamics import LatentCNN, DYNAMICS_PRESETS
    net = LatentCNN(DYNAMICS_PRESETS["cpu"])
    delta = net(z, planes)                 # z (B, 16, 56, 56), planes (B, A, 56, 56) -> (B, 16, 56, 56)
                                           # (planes = net.action_input(prev, next): (B, 3) actions each)
    z_next = net.step(z, planes)           # raw latents in, raw latents out
    loss, logs = net.loss(batch)           # batch from the latent-transition dataset

A flat, single-resolution CNN on the latent grid. It learns from recorded latents and raw
`(x, y, down)` actions alone: nothing in it knows which app made them. The latent and the A = 4
action channels ([a_prev, a_next]: cursor heatmap and button plane each; with `drag_origin` a fifth,
the point where the drag under way began; with `cursor_offsets` four more, each cell's pixel offset
to both cursors; see `models.encoding`) are projected to the hidden width
and summed; residual blocks follow, each normalised by Spatial Adaptive GroupNorm
(GroupNorm whose per-position scale and shift come from action features); the head predicts the
delta z_{t+1} - z_t, zero-initialised so an untrained net predicts "nothing changes".

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
averaged; with `hard_same`, plus the mean over the hardest unchanged positions, see `balance`);
its input noise flips a share `flip_prob` of the codes by one level; unrolled steps feed the hard
prediction back with the gradient of the soft one (straight-through).

The global context (`context` > 0): the convolutions see ~21 cells around a position, but what an
action does there can depend on state shown anywhere on the screen (in a paint program: the
selected colour, tool and brush size). The whole latent is read by two strided convolutions,
average-pooled to a fixed `CONTEXT_GRID` x `CONTEXT_GRID` map and one linear layer into a vector
that is added at every position (to the hidden map and to the action features). It is learned:
which part of the screen holds that state is for the network to find. The net may run on a window
of the latent (trained on crops, `train_crop`); the context always reads the whole latent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoding import SCALE, offset_planes, origin_plane, pair_planes

ACTION_CHANNELS = 4  # [a_prev, a_next]: cursor heatmap and button plane each; +1 with `drag_origin`, +4 with `cursor_offsets`
HEADS = ("delta", "levels")
NORMS = ("group", "channel")
CONTEXT_GRID = 14  # the context's pooled map: CONTEXT_GRID x CONTEXT_GRID cells, whatever the latent's size
# Fields of earlier versions that told the network about Minipaint (its toolbar rows, brush
# rasteriser, replayed selection labels, toolbar table); a model that has them is refused.
REMOVED_FIELDS = ("context_rows", "geometry", "geometry_kind", "paint_palette", "paint_weight", "paint_margin",
                  "paint_owns_canvas", "select_weight", "paint_reader", "paint_only", "toolbar_head")


@dataclass
class DynamicsConfig:
    """Architecture and loss of the LatentCNN. Saved in every checkpoint."""

    preset: str = "cpu"  # preset this config started from (recorded, not interpreted)
    latent_channels: int = 16  # channels of z; must match the VAE
    hidden: int = 96  # width of the feature map
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
    context: int = 0  # width of the global context vector read from the whole latent (0: none); see `LatentCNN.global_context`
    keep_margin: float = 0.0  # head "levels", stepping only: added to the keep bias (see `step`)
    hard_same: float = 0.0  # weight of a third loss term: the mean error over the hardest unchanged positions, as many as change (see `balance`)
    drag_origin: bool = False  # one more action plane: where the drag under way began (models.encoding); the context reads it too
    cursor_offsets: bool = False  # four more action planes: each cell's pixel offset to both cursors (models.encoding.offset_planes)
    reset_action: tuple[int, ...] = (0, 0, 0)  # a_prev of an episode's first step, as recorded in the training data (set by `train dynamics`)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DynamicsConfig":
        """A saved config; ValueError naming a field this version does not have."""
        known = {f.name for f in fields(cls)}
        for name in d:
            if name in REMOVED_FIELDS:
                raise ValueError(f"field {name!r} no longer exists: this network was given knowledge of Minipaint "
                                 "(toolbar rows, brush footprint, replayed labels) that the world model no longer "
                                 "takes; retrain it with `infinipaint train dynamics`")
            if name not in known:
                raise ValueError(f"unknown field {name!r}")
        return cls(**d)

    def __post_init__(self) -> None:
        self.dilations = tuple(self.dilations) or (1,) * self.blocks
        self.reset_action = tuple(int(v) for v in self.reset_action)
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
        if self.train_crop < 0:
            raise ValueError(f"train_crop must be 0 (whole latent) or a crop size in cells, got {self.train_crop}")
        if not 0 <= self.sched_sampling <= 1:
            raise ValueError(f"sched_sampling must be in [0, 1], got {self.sched_sampling}")
        if not 0 <= self.flip_prob < 1:
            raise ValueError(f"flip_prob must be in [0, 1), got {self.flip_prob}")
        if not 0 <= self.keep_margin < 100:
            raise ValueError(f"keep_margin must be in [0, 100), got {self.keep_margin}")
        if self.context < 0:
            raise ValueError(f"context must be >= 0, got {self.context}")
        if self.hard_same < 0:
            raise ValueError(f"hard_same must be >= 0, got {self.hard_same}")
        if len(self.reset_action) != 3 or min(self.reset_action) < 0 or self.reset_action[2] not in (0, 1):
            raise ValueError(f"reset_action must be (x, y, down) with x, y >= 0 and down 0 or 1, got {self.reset_action}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DYNAMICS_PRESETS: dict[str, DynamicsConfig] = {
    "tiny": DynamicsConfig(preset="tiny", hidden=16, blocks=1, action_features=8, groups=4),
    "cpu": DynamicsConfig(preset="cpu", hidden=48, blocks=4, action_features=32, groups=8,
                          dilations=(1, 2, 4, 8), ada_kernel=1, norm="channel", train_crop=32, unroll=4,
                          sched_sampling=0.3, context=64, keep_margin=1.0),
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
        self.action_channels = ACTION_CHANNELS + int(c.drag_origin) + 4 * int(c.cursor_offsets)
        self.z_in = nn.Conv2d(c.latent_channels, c.hidden, 3, padding=1)
        self.a_in = nn.Conv2d(self.action_channels, c.hidden, 3, padding=1)
        self.a_features = nn.Sequential(
            nn.Conv2d(self.action_channels, c.action_features, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c.action_features, c.action_features, 3, padding=1), nn.SiLU(),
        )
        if c.context:  # the whole latent -> one vector added at every position (see `global_context`)
            self.context_net = nn.Sequential(
                nn.Conv2d(c.latent_channels + int(c.drag_origin), 16, 3, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.SiLU(),
                nn.AdaptiveAvgPool2d(CONTEXT_GRID), nn.Flatten(),
                nn.Linear(16 * CONTEXT_GRID**2, c.context), nn.SiLU(),
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
        # Per-channel latent statistics of the training data: the net works on normalised latents,
        # so noise, the change threshold and the loss mean the same for any VAE.
        self.register_buffer("z_mean", torch.zeros(c.latent_channels))
        self.register_buffer("z_std", torch.ones(c.latent_channels))
        self.block_norms: list[float] = []  # per-block activation RMS of the last forward (viewer)
        self.progress = 1.0  # share of training done (set by the training loop): drives scheduled sampling

    def action_input(self, prev: torch.Tensor, next: torch.Tensor, grid: int = 56,
                     origin: torch.Tensor | None = None) -> torch.Tensor:
        """The action planes of the transition prev -> next ((B, 3) screen-pixel actions each) on a
        latent grid of `grid` cells a side: (B, 4, grid, grid) — with `drag_origin` one more, the
        drag origin at `next` (`origin`, (B, 2), see `encoding.drag_origins`), then with
        `cursor_offsets` four more, the offset planes of prev and of next."""
        planes = [pair_planes(prev, next, grid)]
        if self.config.drag_origin:
            if origin is None:
                raise ValueError("this dynamics network reads the drag origin: pass the origin of each step "
                                 "(infinipaint.models.encoding.drag_origins / next_origins)")
            planes.append(origin_plane(origin.to(planes[0].device), grid).to(planes[0].dtype))
        if self.config.cursor_offsets:
            planes += [offset_planes(prev, grid), offset_planes(next, grid)]
        return torch.cat(planes, dim=1) if len(planes) > 1 else planes[0]

    def context_source(self, whole: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
        """What the global context reads: the whole normalised latent (B, C, H, W), with the drag
        origin's plane of the whole-grid action planes appended under `drag_origin`."""
        if not self.config.drag_origin:
            return whole
        return torch.cat([whole, planes[:, ACTION_CHANNELS : ACTION_CHANNELS + 1].to(whole.dtype)], dim=1)

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

    def step(self, z: torch.Tensor, planes: torch.Tensor, whole: torch.Tensor | None = None,
             whole_planes: torch.Tensor | None = None) -> torch.Tensor:
        """Next raw latent for raw (VAE-scale) latents: z + delta, or (levels) the most likely values.
        z may be a window of the latent if `whole`, the whole raw latent, is given (the context reads
        it, and under `drag_origin` the origin plane of `whole_planes`, the whole grid's action planes).

        Head "levels": `keep_margin` is added to the logit of each current value before the argmax.
        The balanced loss weighs the few changed positions as much as all unchanged ones, so the
        trained argmax changes values too readily; the margin moves the decision back towards
        "unchanged"."""
        zn = self.normalize(z.float())
        wn = None
        if whole is not None:
            if self.config.drag_origin and whole_planes is None:
                raise ValueError("with `whole`, a drag-origin network needs `whole_planes` too")
            wn = self.context_source(self.normalize(whole.float()), whole_planes)
        if self.config.head == "levels":
            from .vae import from_codes

            logits = self.level_logits(z, zn, planes, wn, self.config.keep_margin)
            # argmax over a contiguous last dim: over dim 2 of the (B, C, L, H, W) logits it is ~10x slower
            codes = logits.movedim(2, -1).contiguous().argmax(dim=-1)
            return from_codes(codes, self.config.levels)
        return self.denormalize(zn + self(zn, planes, wn).float())

    def global_context(self, whole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden, action-feature) biases (B, hidden, 1, 1), (B, action_features, 1, 1) from the
        whole normalised latent (B, C, H, W) (see `context_source`): state shown anywhere on the
        screen, for every position."""
        g = self.context_net(whole)[:, :, None, None]
        return g[:, : self.config.hidden], g[:, self.config.hidden :]

    def forward(self, z: torch.Tensor, planes: torch.Tensor, whole: torch.Tensor | None = None) -> torch.Tensor:
        """The delta of a normalised latent z (B, C, h, w) under action planes (B, A, h, w); head
        "levels": (B, C * L, h, w) logits, without the keep bias (see `level_logits`).

        With `context`, `whole` is what the context reads (`context_source`: the whole normalised
        latent); None takes z and planes, which must then be the whole grid's."""
        return self.head(self.features(z, planes, whole))

    def features(self, z: torch.Tensor, planes: torch.Tensor, whole: torch.Tensor | None = None) -> torch.Tensor:
        """The last feature map (B, hidden, h, w), which the head reads; arguments as `forward`."""
        h = self.z_in(z) + self.a_in(planes)  # (B, hidden, h, w)
        if self.config.context:
            g_h, g_a = self.global_context(self.context_source(z, planes) if whole is None else whole)
            h = h + g_h
            a = F.silu(self.a_features[:-1](planes) + g_a)  # (B, action_features, h, w)
        else:
            a = self.a_features(planes)  # (B, action_features, h, w)
        norms = []
        exporting = torch.compiler.is_exporting()  # an exported graph (ONNX) has no diagnostics
        # Inference: every AdaGN's scale/shift from one convolution (eight small ones cost more).
        ada = self.ada_inputs(a) if not self.training else [None] * len(self.blocks)
        for block, scale_shift in zip(self.blocks, ada):
            h = block(h, a, scale_shift)
            if not (self.training or exporting):
                norms.append(h.detach().float().pow(2).mean().sqrt())
        if not exporting:
            self.block_norms = [float(n) for n in norms]
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

    def level_logits(self, z: torch.Tensor, zn: torch.Tensor, planes: torch.Tensor,
                     whole: torch.Tensor | None = None, margin: float = 0.0) -> torch.Tensor:
        """Head "levels": logits (B, C, L, h, w) of the next value of each channel, from the raw
        latent z (its current codes get the keep bias, plus `margin`) and its normalised zn (the
        net's input); `whole` as in `forward`."""
        from .vae import to_codes

        b, c, h, w = z.shape
        logits = self(zn, planes, whole).float().view(b, c, self.config.levels, h, w)
        current = to_codes(z, self.config.levels).unsqueeze(2)  # (B, C, 1, H, W)
        return logits.scatter_add(2, current, (self.keep_bias + margin).expand(current.shape))

    # --------------------------------------------------------------------------------- loss
    HARD_MIN = 64  # the hard-negative term's fewest positions per batch

    @staticmethod
    def balance(err: torch.Tensor, changed: torch.Tensor, hard: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, mean over changed, mean over unchanged) of a per-position error (B, 1, H, W): the
        two means averaged; a side with no positions in the batch contributes nothing.

        The mean over unchanged positions gives each of them a weight ~1/N_same, hundreds of times
        less than a changed one gets, so a change made up where nothing changes costs little. With
        `hard` > 0, the mean error over the hardest unchanged positions of the batch (as many as
        there are changed ones, at least `HARD_MIN`) is added with that weight: those few count
        as much as a change does."""
        mask = changed.float()
        rest = 1 - mask
        n_changed, n_same = mask.sum(), rest.sum()
        l_changed = (err * mask).sum() / n_changed.clamp(min=1)
        l_same = (err * rest).sum() / n_same.clamp(min=1)
        loss = l_same if n_changed == 0 else l_changed if n_same == 0 else 0.5 * (l_changed + l_same)
        if hard > 0 and n_same > 0:
            k = int(min(max(float(n_changed), LatentCNN.HARD_MIN), float(n_same)))
            loss = loss + hard * (err * rest).flatten().topk(k).values.mean()
        return loss, l_changed, l_same

    def balanced_l1(self, pred: torch.Tensor, target: torch.Tensor, changed: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Mean L1 over changed positions and over unchanged ones, averaged.

        pred/target: next latents (B, C, H, W); changed: bool (B, 1, H, W). A side with no
        positions in the batch contributes nothing (the other side alone is the loss).
        """
        err = (pred.float() - target.float()).abs().mean(dim=1, keepdim=True)  # (B, 1, H, W)
        loss, l_changed, l_same = self.balance(err, changed, self.config.hard_same)
        return loss, {"l1_changed": float(l_changed.detach()), "l1_same": float(l_same.detach()),
                      "changed_share": float(changed.float().mean())}

    def changed_mask(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        return (z1.float() - z0.float()).abs().amax(dim=1, keepdim=True) > self.config.change_threshold

    def windows(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor], list | None, int]:
        """(latents (B, K+1, C, h, w), action planes of each of the k trained transitions
        [(B, A, h, w)], the crop boxes [(x0, y0)] per sample or None, k) of a batch; with
        `train_crop` > 0, h = w = train_crop cells around the cursor's path over the window (the
        changes are there), each sample cropped on its own. The whole-grid planes are left in
        `batch["planes"]` for the context (`context_input`)."""
        z, actions = batch["z"], batch["actions"]
        k = min(self.config.unroll, actions.shape[1] - 1)
        full = z.shape[-1]
        origins = batch.get("origins")
        if self.config.drag_origin and origins is None:
            raise ValueError("a drag-origin network trains on batches with 'origins' (B, K+1, 2)")
        planes = [self.action_input(actions[:, t], actions[:, t + 1], full,
                                    None if origins is None else origins[:, t + 1]).to(z.dtype) for t in range(k)]
        batch["planes"] = planes
        size = self.config.train_crop
        if size == 0 or size >= full:
            return z, planes, None, k
        centre = (actions[:, 1 : k + 1, :2].float().mean(dim=1) + 0.5) / SCALE - 0.5  # (B, 2) latent x, y
        centre = centre + torch.randn_like(centre) * size / 6  # vary where the cursor sits in the crop
        anywhere = torch.rand(centre.shape[0], device=centre.device) < 0.25  # and some crops far from it
        centre = torch.where(anywhere[:, None], torch.rand_like(centre) * full, centre)
        x0 = (centre[:, 0] - size / 2).round().clamp(0, full - size).long().tolist()
        y0 = (centre[:, 1] - size / 2).round().clamp(0, full - size).long().tolist()
        boxes = list(zip(x0, y0))

        def crop(t: torch.Tensor) -> torch.Tensor:
            return torch.stack([t[i, ..., y : y + size, x : x + size] for i, (x, y) in enumerate(boxes)])

        return crop(z), [crop(p) for p in planes], boxes, k

    def context_input(self, batch: dict[str, torch.Tensor], t: int, state: torch.Tensor,
                      boxes: list | None) -> torch.Tensor | None:
        """The whole normalised latent the context reads at unrolled step t: the true latent of
        frame t with the window the net is rolling out (`state`, raw) pasted in; None where the
        net runs on the whole latent or has no context."""
        if not self.config.context or boxes is None:
            return None
        whole = batch["z"][:, t].float().clone()
        size = state.shape[-1]
        for i, (x, y) in enumerate(boxes):
            whole[i, :, y : y + size, x : x + size] = state[i].float()
        return self.context_source(self.normalize(whole), batch["planes"][t])

    def balanced_ce(self, logits: torch.Tensor, target: torch.Tensor, changed: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Head "levels": cross-entropy per position (mean over channels), averaged over changed and
        unchanged positions as in `balanced_l1`. logits (B, C, L, H, W), target codes (B, C, H, W)."""
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(dim=1, keepdim=True)
        loss, l_changed, l_same = self.balance(ce, changed, self.config.hard_same)
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
        zs, all_planes, boxes, k = self.windows(batch)
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
            whole = self.context_input(batch, t, noisy.detach(), boxes)
            logits = self.level_logits(noisy.detach(), self.normalize(noisy), planes, whole)
            loss_t, logs_t = self.balanced_ce(logits, target, (target != codes[:, t]).any(dim=1, keepdim=True))
            total = total + loss_t / k
            if t == 0:
                logs.update(logs_t)
            soft = (logits.softmax(dim=2) * values).sum(dim=2)
            hard = from_codes(logits.argmax(dim=2), levels)
            z = self.feed(hard + soft - soft.detach(), from_codes(target, levels))  # straight-through: hard values, soft gradient
        logs[f"loss_step{k}"] = float(loss_t.detach())
        if not self.training:
            logs.update(self.clean_rollout_errors(batch, codes, all_planes, boxes, k))
        return total, logs

    @torch.no_grad()
    def clean_rollout_errors(self, batch: dict[str, torch.Tensor], codes: torch.Tensor, planes: list[torch.Tensor],
                             boxes: list | None, k: int) -> dict[str, float]:
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
            whole = self.context_input(batch, t, z, boxes)
            pred = self.level_logits(z, self.normalize(z), planes[t].float(), whole).argmax(dim=2)
        target = codes[:, k]
        wrong = (pred != target).any(dim=1, keepdim=True).float()
        _, wrong_changed, wrong_same = self.balance(wrong, (target != codes[:, 0]).any(dim=1, keepdim=True))
        return {"clean_wrong_changed": float(wrong_changed), "clean_wrong_same": float(wrong_same)}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Unrolled loss over a window of K transitions.

        batch["z"]: (B, K+1, C, H, W) raw VAE latents of frames t..t+K; batch["actions"]:
        (B, K+1, 3) the steps, `actions[:, 0]` being `a_prev` of the first transition; with
        `drag_origin`, batch["origins"]: (B, K+1, 2) the drag origin at each step. The first
        input gets noise; from the second transition on, the input is the model's own (noised)
        prediction, so the model learns to correct its own drift. Transition losses are averaged
        over the first `unroll` transitions of the window. With `train_crop`, the net rolls out a
        crop, and the context reads the whole true latent with that crop pasted in.
        """
        if self.config.head == "levels":
            return self.loss_levels(batch)
        raw, all_planes, boxes, k = self.windows(batch)
        z = self.normalize(raw[:, 0].float())
        total = torch.zeros((), device=z.device)
        logs: dict[str, float] = {}
        for t in range(k):
            planes = all_planes[t].to(z.dtype)  # (B, A, h, w)
            noisy = z + self.config.noise_std * torch.randn_like(z)
            whole = self.context_input(batch, t, self.denormalize(noisy.detach()), boxes)
            pred = noisy + self(noisy, planes, whole).float()
            target = self.normalize(raw[:, t + 1].float())
            loss_t, logs_t = self.balanced_l1(pred, target, self.changed_mask(self.normalize(raw[:, t].float()), target))
            total = total + loss_t / k
            if t == 0:
                logs.update(logs_t)
            z = self.feed(pred, target)
        logs[f"loss_step{k}"] = float(loss_t.detach())
        return total, logs


def initial_state(model: LatentCNN, state: dict[str, torch.Tensor], source: DynamicsConfig) -> dict[str, torch.Tensor]:
    """Trained weights of a LatentCNN with config `source` as the start of `model` (`--init-from`):
    a model that also reads the drag origin (`drag_origin`) or the cursor offsets (`cursor_offsets`)
    takes them with zero weights on those inputs, so it starts as the trained network and learns
    what they add. ValueError where the source reads an input the model does not, or where the
    inputs would not line up (an origin plane added before existing offsets)."""
    c = model.config
    if source.cursor_offsets and not c.cursor_offsets or source.drag_origin and not c.drag_origin:
        raise ValueError("a network cannot start from one that reads more action inputs than it does")
    if source.cursor_offsets and c.drag_origin and not source.drag_origin:
        raise ValueError("a drag-origin network cannot start from a cursor-offset one without it (the origin plane "
                         "comes before the offsets)")
    new_origin = int(c.drag_origin and not source.drag_origin)
    extra = {"a_in.weight": new_origin + 4 * int(c.cursor_offsets and not source.cursor_offsets),
             "context_net.0.weight": new_origin}
    extra["a_features.0.weight"] = extra["a_in.weight"]
    out = dict(state)
    for key, n in extra.items():
        if n and key in out:
            w = out[key]
            out[key] = torch.cat([w, w.new_zeros(w.shape[0], n, *w.shape[2:])], dim=1)
    return out
