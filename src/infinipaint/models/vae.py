"""The convolutional VAE: 224x224 RGB frames <-> (16, 56, 56) latents (SPEC §4).

    from infinipaint.models.vae import VAE, VAE_PRESETS, load, save
    vae = VAE(VAE_PRESETS["cpu"])
    z = vae.encode(frames)                 # float (B, 3, 224, 224) in [0, 1] -> (B, 16, 56, 56), posterior mean
    x = vae.decode(z)                      # (B, 3, 224, 224), clamped to [0, 1]
    loss, logs = vae.loss(batch)           # batch: uint8 (B, 3, 224, 224) (or (B, 224, 224, 3))
    out = vae.reconstruct(frames_u8)       # numpy uint8 (B, 224, 224, 3) -> same
    save(vae, "weights/cpu", meta={...}); vae = load("weights/cpu")

One architecture family, shaped by `VAEConfig` (a preset is data). The encoder first folds
`patch` x `patch` pixels into channels (pixel-unshuffle; patch 1 = none), then runs stages of
residual blocks at decreasing resolution, each stage halving it (a stride-2 conv, or
pixel-unshuffle + conv), and ends in a conv giving the posterior mean and log-variance. The decoder
mirrors it and ends with pixel-shuffle (depth-to-space) back to 224x224. The total compression
`patch * 2 ** (len(channels) - 1)` must be 4.

- `paper`: the write-up's LDM-style VAE: patch 1, channels 128/256/512 at 224/112/56, 2 residual
  blocks (GroupNorm + SiLU) per stage, stride-2 conv down, nearest-upsample + conv up, no
  attention. 27,974,435 parameters; 0.3-0.6 s per decode on this 2-core CPU (bf16).
- `cpu` (default): pixel-unshuffle by 4, then everything at 56x56: 96 channels, 3 residual blocks,
  ReLU, no normalisation; 1,121,168 parameters, decode 9.1 ms and encode 9.5 ms at batch 1 (bf16,
  channels_last, 2 threads); trains on 112x112 crops. Measurements in weights/cpu/DESIGN.md.
- `tiny`: 16 channels, 1 block, for tests (30 k parameters).

Run it under `torch.autocast(device, torch.bfloat16)` with inputs in channels_last for speed; the
model converts its own weights and inputs to channels_last and never picks a device itself.

Decoder output is linear (no sigmoid, so pure 0 and 1 are easy targets): `decode` clamps it to
[0, 1]; `loss` trains the unclamped output. Loss = l1 * L1 + ssim * (1 - SSIM) + kl * KL (+ lpips *
LPIPS), where KL is the mean over latent elements of KL(q(z|x) || N(0, 1)).

Outputs (`VAEConfig.output`):
- `rgb`: a linear RGB image (above).
- `palette`: frames of a program that draws a few exact colours (no anti-aliasing; Minipaint's
  hold a dozen) can be classified instead of regressed: per pixel, logits over `palette` (the colours, found in the
  training frames when the run starts), trained with cross-entropy (+ L1 and 1 - SSIM of the
  expected colour); `decode` shows the most likely colour, so a confident decoder gives the exact
  frame. The output conv is 1x1 (cheaper than the rgb head's 3x3).

Latent kinds (`VAEConfig.latent`):
- `continuous`: the posterior mean and log-variance; z is sampled in training, the mean otherwise.
- `fsq` (finite scalar quantisation): the encoder gives one value per channel, bounded by tanh and
  rounded to `fsq_levels` evenly spaced values in [-1, 1] (straight-through gradient); no KL. A
  latent is then a grid of integer codes (`to_codes` / `from_codes`), which the `levels` dynamics
  head predicts by classification, so a right prediction reproduces the state exactly.

Cell-local codes (`encoder_kernel=1`, with patch 4 and no normalisation): every encoder conv is
1x1, so a cell's code is a function of its own 4x4 pixels alone. With the 3x3 encoder of the
shipped weights a stroke step repaints ~10 cells but changes the codes of ~48 (the codes read
their neighbours), and the dynamics has to predict all of those; with 1x1 it changes only the
cells it paints. The decoder keeps its 3x3 convs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import CheckpointError
from ..metrics import psnr, ssim
from .checkpoint import load_state_strict, load_weights, read_info, save_weights

FRAME = 224
COMPRESSION = 4
ACTS = ("silu", "relu", "gelu")
NORMS = ("group", "none")
RESAMPLES = ("conv", "shuffle")
LATENTS = ("continuous", "fsq")
OUTPUTS = ("rgb", "palette")


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and loss of a VAE. Saved in every checkpoint; `VAE(config)` rebuilds the model."""

    preset: str = "cpu"  # name of the preset this config started from (recorded, not interpreted)
    latent_channels: int = 16  # channels of the 56x56 latent z
    patch: int = 4  # pixels folded into channels first (pixel-unshuffle), 1, 2 or 4
    channels: tuple[int, ...] = (96,)  # width of each stage, from highest resolution down to 56x56
    blocks: tuple[int, ...] = (3,)  # residual blocks per stage (same order), in encoder and decoder
    norm: str = "none"  # "group" (GroupNorm, 32 groups) or "none" inside residual blocks
    act: str = "relu"  # activation: "silu", "relu" or "gelu"
    resample: str = "shuffle"  # between stages: "conv" (stride-2 / nearest+conv) or "shuffle" (pixel-(un)shuffle)
    l1_weight: float = 1.0  # weight of the mean L1 reconstruction error
    ssim_weight: float = 0.2  # weight of the structural term (1 - SSIM)
    kl_weight: float = 1e-6  # beta: weight of the mean per-element KL
    init_logvar: float = -6.0  # initial posterior log-variance (bias of the encoder's log-variance half)
    lpips_weight: float = 0.0  # weight of LPIPS; > 0 needs lpips_path
    lpips_path: str | None = None  # local LPIPS-VGG state dict (.safetensors/.pth), never downloaded
    train_crop: int = 112  # if > 0, loss() trains on a random crop of this size (multiple of 4) of each frame
    crop_on_ink: float = 0.5  # share of training crops centred on a random non-white pixel (the rest: uniform)
    latent: str = "continuous"  # "continuous" (Gaussian posterior) or "fsq" (finite scalar quantisation)
    fsq_levels: int = 5  # values per channel of an fsq latent (odd, >= 3)
    output: str = "rgb"  # "rgb" (regress colours) or "palette" (classify each pixel among `palette`)
    palette: tuple[tuple[int, int, int], ...] = ()  # output "palette": the RGB colours (set from the data)
    ce_weight: float = 1.0  # output "palette": weight of the per-pixel cross-entropy
    encoder_kernel: int = 3  # kernel of every encoder conv; 1 with patch 4: each cell's code is its own pixels' alone

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))  # JSON gives lists
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "palette", tuple(tuple(int(v) for v in c) for c in self.palette))
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1, got {self.latent_channels}")
        if self.patch not in (1, 2, 4):
            raise ValueError(f"patch must be 1, 2 or 4, got {self.patch}")
        if not self.channels or len(self.channels) != len(self.blocks):
            raise ValueError(f"channels {self.channels} and blocks {self.blocks} must be non-empty and equally long")
        if any(c < 1 for c in self.channels) or any(b < 0 for b in self.blocks):
            raise ValueError(f"channels must be >= 1 and blocks >= 0: {self.channels}, {self.blocks}")
        if self.patch * 2 ** (len(self.channels) - 1) != COMPRESSION:
            raise ValueError(
                f"patch {self.patch} with {len(self.channels)} stages compresses by "
                f"{self.patch * 2 ** (len(self.channels) - 1)}, must be {COMPRESSION} (224 -> 56)"
            )
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.norm == "group" and any(c % 32 for c in self.channels):
            raise ValueError(f"GroupNorm(32) needs channels divisible by 32, got {self.channels}")
        if self.act not in ACTS:
            raise ValueError(f"act must be one of {ACTS}, got {self.act!r}")
        if self.resample not in RESAMPLES:
            raise ValueError(f"resample must be one of {RESAMPLES}, got {self.resample!r}")
        for name in ("l1_weight", "ssim_weight", "kl_weight", "lpips_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lpips_weight > 0 and not self.lpips_path:
            raise ValueError("lpips_weight > 0 needs lpips_path: a local LPIPS-VGG weights file (nothing is downloaded)")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette):
            raise ValueError(f"palette must hold (r, g, b) colours with values 0-255, got {self.palette}")
        if len(set(self.palette)) != len(self.palette):
            raise ValueError("palette colours must be distinct")
        if self.latent not in LATENTS:
            raise ValueError(f"latent must be one of {LATENTS}, got {self.latent!r}")
        if self.encoder_kernel not in (1, 3):
            raise ValueError(f"encoder_kernel must be 1 or 3, got {self.encoder_kernel}")
        if self.encoder_kernel != 3 and self.resample != "shuffle":
            raise ValueError("encoder_kernel 1 needs resample 'shuffle' (a strided conv reads across cells)")
        if self.encoder_kernel != 3 and self.norm != "none":
            raise ValueError("encoder_kernel 1 needs norm 'none' (GroupNorm reads the whole frame)")
        if self.fsq_levels < 3 or self.fsq_levels % 2 == 0:
            raise ValueError(f"fsq_levels must be odd and >= 3, got {self.fsq_levels}")
        if not 0 <= self.crop_on_ink <= 1:
            raise ValueError(f"crop_on_ink must be in [0, 1], got {self.crop_on_ink}")
        if self.train_crop < 0 or self.train_crop % COMPRESSION or self.train_crop > FRAME:
            raise ValueError(f"train_crop must be 0 or a multiple of {COMPRESSION} up to {FRAME}, got {self.train_crop}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"], d["blocks"] = list(self.channels), list(self.blocks)
        d["palette"] = [list(c) for c in self.palette]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VAEConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown VAEConfig fields: {', '.join(unknown)}")
        return cls(**d)


VAE_PRESETS: dict[str, VAEConfig] = {
    "tiny": VAEConfig(preset="tiny", channels=(16,), blocks=(1,), train_crop=0),
    # the kind of the shipped weights/cpu VAE: a discrete latent, a cell-local encoder, a palette decoder
    "cpu": VAEConfig(preset="cpu", latent="fsq", encoder_kernel=1, output="palette"),
    "paper": VAEConfig(
        preset="paper", patch=1, channels=(128, 256, 512), blocks=(2, 2, 2),
        norm="group", act="silu", resample="conv", train_crop=0,
    ),
}


# ------------------------------------------------------------------------------------ FSQ
def fsq(h: torch.Tensor, levels: int) -> torch.Tensor:
    """Bound to (-1, 1) and round to `levels` evenly spaced values in [-1, 1]; straight-through gradient."""
    half = (levels - 1) / 2
    bounded = torch.tanh(h.float()) * half  # in (-half, half)
    return (bounded + (torch.round(bounded) - bounded).detach()) / half


def to_codes(z: torch.Tensor, levels: int) -> torch.Tensor:
    """FSQ values in [-1, 1] -> integer codes 0..levels-1 (int64, same shape)."""
    half = (levels - 1) / 2
    return (z.float() * half).round().add(half).clamp(0, levels - 1).long()


def from_codes(codes: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer codes 0..levels-1 -> FSQ values in [-1, 1] (float32)."""
    half = (levels - 1) / 2
    return (codes.float() - half) / half


FSQ_INIT_GAIN = 8.0  # continuous latents have std ~0.05: scaled so that they span the levels


def fsq_state_from_continuous(state: dict[str, torch.Tensor], latent_channels: int,
                              gain: float = FSQ_INIT_GAIN) -> dict[str, torch.Tensor]:
    """Weights of a continuous VAE as the start of an fsq one of the same shape otherwise: the
    encoder keeps only the mean half of its output conv, scaled by `gain`, and the decoder's input
    conv is divided by `gain`, so that in tanh's linear range the two compute what they did."""
    out = dict(state)
    for key in ("encoder.conv_out.weight", "encoder.conv_out.bias"):
        out[key] = state[key][:latent_channels] * gain
    out["decoder.conv_in.weight"] = state["decoder.conv_in.weight"] / gain
    return out


def initial_state(model: "VAE", state: dict[str, torch.Tensor], source: VAEConfig) -> dict[str, torch.Tensor]:
    """Trained weights of a VAE with config `source` as the start of `model` (`--init-from`): an fsq
    model takes a continuous one's encoder through `fsq_state_from_continuous`; a model whose output
    (rgb / palette, or the palette's colours) differs keeps its own fresh output conv; an encoder of
    1x1 kernels (`encoder_kernel=1`) takes the centre taps of a 3x3 one."""
    out = dict(state)
    if model.config.latent == "fsq" and source.latent == "continuous":
        out = fsq_state_from_continuous(out, model.config.latent_channels)
    if model.config.encoder_kernel < source.encoder_kernel:
        k, c = model.config.encoder_kernel, source.encoder_kernel // 2 - model.config.encoder_kernel // 2
        for key, w in out.items():
            if key.startswith("encoder.") and w.dim() == 4 and w.shape[-1] == source.encoder_kernel:
                out[key] = w[..., c : c + k, c : c + k].clone()
    if (model.config.output, model.config.palette) != (source.output, source.palette):
        own = model.state_dict()
        for key in ("decoder.conv_out.weight", "decoder.conv_out.bias"):
            out[key] = own[key]
    return out


def encoder_sha256(model: "VAE") -> str:
    """A hash of the encoder's weights alone: the latent space a dynamics network was trained in.
    A decoder retrained with the encoder frozen (`train vae --freeze-encoder`) keeps it."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


MAX_PALETTE = 64


def palette_of(frames: np.ndarray | torch.Tensor) -> tuple[tuple[int, int, int], ...]:
    """The distinct colours of uint8 frames (..., 3) or (B, 3, H, W), most frequent first;
    ValueError if there are more than MAX_PALETTE (the frames are not palette-indexed)."""
    x = frames.numpy() if torch.is_tensor(frames) else np.asarray(frames)
    if x.dtype != np.uint8:
        raise ValueError(f"palette_of takes uint8 frames, got {x.dtype}")
    if x.ndim == 4 and x.shape[1] == 3 and x.shape[-1] != 3:
        x = x.transpose(0, 2, 3, 1)
    x = x.reshape(-1, 3).astype(np.uint32)
    packed, counts = np.unique(x[:, 0] << 16 | x[:, 1] << 8 | x[:, 2], return_counts=True)  # 1-D: fast
    colours = np.stack([packed >> 16, packed >> 8 & 255, packed & 255], axis=1)
    if len(colours) > MAX_PALETTE:
        raise ValueError(f"the frames hold {len(colours)} colours (more than {MAX_PALETTE}): they are not "
                         "palette-indexed; use output 'rgb'")
    return tuple(tuple(int(v) for v in colours[i]) for i in np.argsort(-counts, kind="stable"))


# ------------------------------------------------------------------------------------- layers
def activation(name: str) -> nn.Module:
    return {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU}[name]()


def normalization(name: str, channels: int) -> nn.Module:
    return nn.GroupNorm(32, channels, eps=1e-6) if name == "group" else nn.Identity()


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(act(norm(conv(act(norm(x)))))); the last conv starts at zero."""

    def __init__(self, channels: int, norm: str, act: str, kernel: int = 3) -> None:
        super().__init__()
        self.norm1, self.act1 = normalization(norm, channels), activation(act)
        self.conv1 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.norm2, self.act2 = normalization(norm, channels), activation(act)
        self.conv2 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act1(self.norm1(x)))
        return x + self.conv2(self.act2(self.norm2(h)))


def downsample(cin: int, cout: int, kind: str, kernel: int = 3) -> nn.Module:
    """Halve the resolution: (B, cin, H, W) -> (B, cout, H/2, W/2)."""
    if kind == "conv":
        return nn.Conv2d(cin, cout, 3, stride=2, padding=1)
    return nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * cin, cout, kernel, padding=kernel // 2))


def upsample(cin: int, cout: int, kind: str) -> nn.Module:
    """Double the resolution: (B, cin, H, W) -> (B, cout, 2H, 2W)."""
    if kind == "conv":
        return nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1))
    return nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2))


class Encoder(nn.Module):
    def __init__(self, c: VAEConfig) -> None:
        super().__init__()
        ch, k = c.channels, c.encoder_kernel
        self.unshuffle = nn.PixelUnshuffle(c.patch)
        self.conv_in = nn.Conv2d(3 * c.patch**2, ch[0], k, padding=k // 2)
        stages: list[nn.Module] = []
        for i, (width, n) in enumerate(zip(ch, c.blocks)):
            stages += [ResBlock(width, c.norm, c.act, k) for _ in range(n)]
            if i + 1 < len(ch):
                stages.append(downsample(width, ch[i + 1], c.resample, k))
        self.stages = nn.Sequential(*stages)
        self.norm_out, self.act_out = normalization(c.norm, ch[-1]), activation(c.act)
        outputs = 2 * c.latent_channels if c.latent == "continuous" else c.latent_channels
        self.conv_out = nn.Conv2d(ch[-1], outputs, k, padding=k // 2)
        if c.latent == "continuous":
            # Start nearly deterministic: with logvar ~ 0 the sampled z is mostly noise and the first
            # thousand steps go to shrinking it.
            nn.init.constant_(self.conv_out.bias[c.latent_channels :], c.init_logvar)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(self.unshuffle(x))  # (B, ch[0], 224/patch, 224/patch)
        h = self.stages(h)  # (B, ch[-1], 56, 56)
        return self.conv_out(self.act_out(self.norm_out(h)))  # (B, 2 * latent or latent (fsq), 56, 56)


class Decoder(nn.Module):
    def __init__(self, c: VAEConfig) -> None:
        super().__init__()
        ch = c.channels
        self.conv_in = nn.Conv2d(c.latent_channels, ch[-1], 3, padding=1)
        stages: list[nn.Module] = []
        for i in reversed(range(len(ch))):
            stages += [ResBlock(ch[i], c.norm, c.act) for _ in range(c.blocks[i])]
            if i > 0:
                stages.append(upsample(ch[i], ch[i - 1], c.resample))
        self.stages = nn.Sequential(*stages)
        self.norm_out, self.act_out = normalization(c.norm, ch[0]), activation(c.act)
        if c.output == "palette":  # logits over the palette for each of the patch x patch pixels
            self.conv_out = nn.Conv2d(ch[0], len(c.palette) * c.patch**2, 1)
        else:
            self.conv_out = nn.Conv2d(ch[0], 3 * c.patch**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(c.patch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.conv_in(z))  # (B, ch[0], 224/patch, 224/patch)
        h = self.conv_out(self.act_out(self.norm_out(h)))  # (B, 3 * patch^2, 224/patch, 224/patch)
        return self.shuffle(h)  # (B, 3, 224, 224) unclamped, or (B, P, 224, 224) palette logits


# -------------------------------------------------------------------------------------- model
def frames_to_float(batch: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 frames (B, 3, H, W) or (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]; float (B, 3, H, W) passes."""
    x = torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
    if x.ndim != 4:
        raise ValueError(f"expected a batch of frames (B, 3, H, W) or (B, H, W, 3), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[1] != 3 and x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)
        x = x.float() / 255.0
    elif not x.is_floating_point():
        raise ValueError(f"frames must be uint8 or float, got {x.dtype}")
    if x.shape[1] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(x.shape)}")
    return x


class VAE(nn.Module):
    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        if self.config.output == "palette" and len(self.config.palette) < 2:
            raise ValueError("a palette decoder needs its colours: set config.palette (palette_of(frames)); "
                             "`infinipaint train vae` finds them in the training frames")
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self._lpips: list[nn.Module] = []  # loaded on the first loss() that needs it; kept out of state_dict
        self.to(memory_format=torch.channels_last)

    # -------------------------------------------------------------------------------- inference
    def posterior(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean and log-variance of q(z | x): (B, 3, 224, 224) -> 2 x (B, latent, 56, 56).

        For an fsq latent: the quantised z (straight-through) and None."""
        self._check_frames(frames)
        h = self.encoder(frames.contiguous(memory_format=torch.channels_last))
        if self.config.latent == "fsq":
            return fsq(h, self.config.fsq_levels), None
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Posterior mean (no sampling; fsq: the quantised values): float (B, 3, 224, 224) in [0, 1] -> (B, latent, 56, 56)."""
        return self.posterior(frames)[0]

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output: (B, latent, 56, 56) -> unclamped RGB (B, 3, 224, 224), or for a palette
        decoder the logits (B, P, 224, 224)."""
        return self.decoder(z.contiguous(memory_format=torch.channels_last))

    def decode_radius(self) -> int | None:
        """How many latent cells around a cell can change its decoded pixels, when the decoder is
        local (one 56x56 stage, no GroupNorm: convolutions only); None otherwise. A latent that
        changed in a few cells then needs decoding only around them (`WorldModel.step`)."""
        c = self.config
        if c.norm != "none" or len(c.channels) != 1:
            return None
        return sum((m.kernel_size[0] // 2) * m.dilation[0] for m in self.decoder.modules() if isinstance(m, nn.Conv2d))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Frames in [0, 1]: (B, latent, 56, 56) -> (B, 3, 224, 224) (palette: the most likely colours)."""
        out = self.decode_raw(z)
        return self.palette_image(out) if self.config.output == "palette" else out.clamp(0.0, 1.0)

    def palette_image(self, logits: torch.Tensor) -> torch.Tensor:
        """Palette logits (B, P, H, W) -> the most likely colours, float (B, 3, H, W) in [0, 1]."""
        return self.palette_rgb(logits.device)[logits.argmax(dim=1)].permute(0, 3, 1, 2)

    def decode_uint8(self, z: torch.Tensor) -> torch.Tensor:
        """Frames to show: (B, latent, 56, 56) -> uint8 (B, 224, 224, 3) (a palette decoder looks
        its colours up directly)."""
        out = self.decode_raw(z)
        if self.config.output == "palette":
            pal = torch.tensor(self.config.palette, dtype=torch.uint8, device=out.device)
            return pal[out.argmax(dim=1)]
        return (out.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)

    def palette_rgb(self, device: torch.device) -> torch.Tensor:
        """The palette as float (P, 3) in [0, 1]."""
        return torch.tensor(self.config.palette, dtype=torch.float32, device=device) / 255.0

    def palette_index(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) in [0, 1] -> index of the nearest palette colour per pixel (B, H, W)."""
        pal = self.palette_rgb(x.device)
        return (x.float().unsqueeze(1) - pal.view(1, -1, 3, 1, 1)).pow(2).sum(dim=2).argmin(dim=1)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(unclamped reconstruction, mean, logvar); z is sampled in training mode, the mean otherwise
        (fsq: z is the quantised latent and logvar is None)."""
        mean, logvar = self.posterior(frames)
        sample = self.training and logvar is not None
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return self.decode_raw(z), mean, logvar

    @torch.no_grad()
    def reconstruct(self, frames: np.ndarray, bf16: bool = False) -> np.ndarray:
        """Encode then decode uint8 frames (B, 224, 224, 3) -> uint8 (B, 224, 224, 3), in eval mode."""
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise ValueError(f"reconstruct takes a numpy uint8 array, got {type(frames).__name__} {getattr(frames, 'dtype', '')}")
        if frames.ndim != 4 or frames.shape[1:] != (FRAME, FRAME, 3):
            raise ValueError(f"reconstruct takes frames of shape (B, {FRAME}, {FRAME}, 3), got {frames.shape}")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        x = frames_to_float(frames).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            y = self.decode_uint8(self.encode(x))
        self.train(was_training)
        return y.cpu().numpy()

    # ---------------------------------------------------------------------------------- training
    def loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss of a batch of uint8 frames (B, 3, 224, 224) (or (B, 224, 224, 3)) -> (loss, logs)."""
        x = self._crop(frames_to_float(batch).to(next(self.parameters()).device))
        raw, mean, logvar = self(x)
        raw = raw.float()
        c = self.config
        logs: dict[str, float] = {}
        ce = torch.zeros((), device=x.device)
        if c.output == "palette":  # classify each pixel; the image terms see the expected colour
            logits = raw
            ce = nn.functional.cross_entropy(logits, self.palette_index(x))
            logs["ce"] = ce.item()
            raw = torch.einsum("bphw,pc->bchw", logits.softmax(dim=1), self.palette_rgb(x.device))
        l1 = (raw - x).abs().mean()
        if logvar is None:  # fsq: no prior to match
            kl = torch.zeros((), device=x.device)
        else:
            kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float()).mean()
        total = c.l1_weight * l1 + c.kl_weight * kl + c.ce_weight * ce
        logs.update({"l1": l1.item(), "kl": kl.item()})
        if c.ssim_weight > 0:
            s = 1.0 - ssim(raw, x).mean()
            total = total + c.ssim_weight * s
            logs["1-ssim"] = s.item()
        if c.lpips_weight > 0:
            p = self.lpips_net(x.device)(raw, x).mean()
            total = total + c.lpips_weight * p
            logs["lpips"] = p.item()
        with torch.no_grad():
            shown = self.palette_image(logits) if c.output == "palette" else raw
            logs["psnr"] = psnr(shown.detach().clamp(0, 1), x).mean().item()
        logs["loss"] = total.item()
        return total, logs

    # ----------------------------------------------------------------------------------- helpers
    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        """One crop per frame, on the latent grid: most of a frame is usually background, so a share
        `crop_on_ink` of the crops is centred on a random pixel of another colour than the frame's
        most common one (strokes, controls)."""
        size = self.config.train_crop
        if not self.training or size == 0 or size >= min(x.shape[-2:]):
            return x
        h, w = x.shape[-2:]
        crops = []
        for frame in x:
            ink = torch.empty(0)
            if float(torch.rand(())) < self.config.crop_on_ink:
                rgb = (frame * 255).round().long().flatten(1)  # (3, H * W)
                key = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]  # one integer per colour
                ink = (key != key.mode().values).nonzero()[:, 0]  # pixels not of the background colour
            if len(ink):
                cy, cx = divmod(int(ink[torch.randint(0, len(ink), ())]), w)
                y0 = min(max(cy - size // 2, 0), h - size) // COMPRESSION * COMPRESSION
                x0 = min(max(cx - size // 2, 0), w - size) // COMPRESSION * COMPRESSION
            else:
                y0 = int(torch.randint(0, (h - size) // COMPRESSION + 1, ())) * COMPRESSION
                x0 = int(torch.randint(0, (w - size) // COMPRESSION + 1, ())) * COMPRESSION
            crops.append(frame[:, y0 : y0 + size, x0 : x0 + size])
        return torch.stack(crops)

    def lpips_net(self, device: torch.device) -> nn.Module:
        """The frozen LPIPS network, loaded from `config.lpips_path` on first use (CheckpointError if unusable)."""
        if not self._lpips:
            from .lpips import LPIPS

            self._lpips.append(LPIPS.from_file(self.config.lpips_path))
        return self._lpips[0].to(device)

    @staticmethod
    def _check_frames(frames: torch.Tensor) -> None:
        if not torch.is_tensor(frames) or not frames.is_floating_point():
            raise ValueError("encode takes float frames in [0, 1]; convert uint8 with frames_to_float")
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[-1] % COMPRESSION or frames.shape[-2] % COMPRESSION:
            raise ValueError(f"expected frames (B, 3, H, W) with H, W multiples of {COMPRESSION}, got {tuple(frames.shape)}")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ------------------------------------------------------------------------------------- files
NAME = "vae"


def save(model: VAE, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `DIR/vae.safetensors` + `DIR/vae.json` (config and meta), atomically."""
    meta = {"parameters": model.num_parameters(), **(meta or {})}
    return save_weights(model, directory, NAME, config=model.config.to_dict(), meta=meta)


def load(directory: str | Path, preset: str | None = None, map_location: str | torch.device = "cpu") -> VAE:
    """Rebuild a VAE from `DIR/vae.json` + `DIR/vae.safetensors` alone (eval mode).

    `preset`, if given, must match the one recorded; every mismatch raises CheckpointError.
    """
    info = read_info(directory, NAME)
    try:
        config = VAEConfig.from_dict(info["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(directory) / 'vae.json'}: bad VAE config ({e})") from None
    if preset is not None and config.preset != preset:
        raise CheckpointError(f"{directory}: holds a {config.preset!r} VAE, expected preset {preset!r}")
    state, _ = load_weights(directory, NAME)
    model = VAE(config)
    load_state_strict(model, state, source=str(Path(directory) / "vae.safetensors"))
    return model.to(map_location).eval()
