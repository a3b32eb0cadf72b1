"""LPIPS (VGG-16 variant, Zhang et al. 2018) from a local weights file: an optional VAE loss term.

    net = LPIPS.from_file("/path/lpips_vgg.pth")   # or .safetensors; nothing is ever downloaded
    d = net(pred, target)                          # float (B, 3, H, W) in [0, 1] -> (B,)

The file is the state dict of the reference `lpips.LPIPS(net="vgg")` module, whose keys are
`net.slice{1..5}.{i}.weight|bias` (i = the torchvision VGG-16 `features` index) and
`lin{0..4}.model.1.weight` (the learned 1x1 heads), optionally `scaling_layer.shift|scale`. Someone
with that package can write it once with `torch.save(lpips.LPIPS(net="vgg").state_dict(), path)`;
this module only reads it (`torch.load(weights_only=True)` or safetensors), so no torchvision is
needed. A missing file, an unreadable file or a mismatched key raises CheckpointError.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import CheckpointError
from .checkpoint import load_state_strict

# torchvision VGG-16 `features`: conv widths, "M" = max-pool; LPIPS taps relu1_2 .. relu5_3.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # feature indices of each tap's slice
TAP_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _vgg_features() -> list[nn.Module]:
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
            cin = int(v)
    return layers


class _Head(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))  # index 0 was dropout


class _Slices(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        features = _vgg_features()
        for n, (lo, hi) in enumerate(SLICES, start=1):
            s = nn.Sequential()
            for i in range(lo, hi):
                s.add_module(str(i), features[i])
            setattr(self, f"slice{n}", s)


class _Scaling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))


class LPIPS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = _Scaling()
        self.net = _Slices()
        for k, c in enumerate(TAP_CHANNELS):
            setattr(self, f"lin{k}", _Head(c))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path | None) -> "LPIPS":
        """Load the frozen network from a local state-dict file (see module doc)."""
        if not path:
            raise CheckpointError("LPIPS needs a local weights file (config lpips_path); nothing is downloaded")
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: LPIPS weights file not found (nothing is downloaded; give a local path)")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read LPIPS weights ({e})") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: not a state dict")
        model = cls()
        state = {**{k: v for k, v in model.state_dict().items() if k.startswith("scaling_layer.")}, **state}
        load_state_strict(model, state, source=str(path))
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Perceptual distance of images in [0, 1]: 2 x (B, 3, H, W) -> (B,)."""
        with torch.autocast(x.device.type, enabled=False):
            s = self.scaling_layer
            hx, hy = (2 * x.float() - 1 - s.shift) / s.scale, (2 * y.float() - 1 - s.shift) / s.scale
            total = torch.zeros(x.shape[0], device=x.device)
            for k in range(len(SLICES)):
                block = getattr(self.net, f"slice{k + 1}")
                hx, hy = block(hx), block(hy)  # (B, C_k, H_k, W_k)
                d = (_unit(hx) - _unit(hy)) ** 2
                total = total + getattr(self, f"lin{k}").model(d).mean(dim=(1, 2, 3))
            return total


def _unit(t: torch.Tensor) -> torch.Tensor:
    """Normalise features to unit length over channels."""
    return t / (t.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
