"""The VAE: presets, shapes, training signal, files round trip, refusal of bad checkpoints and inputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from infinipaint.errors import CheckpointError
from infinipaint.models.lpips import LPIPS
from infinipaint.models.vae import VAE, VAE_PRESETS, VAEConfig, load, save


@pytest.fixture
def tiny() -> VAE:
    torch.manual_seed(0)
    return VAE(VAE_PRESETS["tiny"])


def batch_of(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # uint8 (B, 3, 224, 224)


# ------------------------------------------------------------------------------------ config
def test_presets_are_data_and_cpu_is_the_shipped_kind():
    assert set(VAE_PRESETS) == {"tiny", "cpu", "paper"}
    shipped = json.loads((Path(__file__).parents[2] / "weights" / "cpu" / "vae.json").read_text())["config"]
    assert replace(VAEConfig.from_dict(shipped), palette=()) == VAE_PRESETS["cpu"]  # the palette comes from the data
    p = VAE_PRESETS["paper"]
    assert (p.patch, p.channels, p.blocks, p.latent_channels) == (1, (128, 256, 512), (2, 2, 2), 16)
    assert (p.norm, p.act, p.resample) == ("group", "silu", "conv")
    for name, c in VAE_PRESETS.items():
        assert c.preset == name
        assert VAEConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(patch=2), "compresses by 2"),
        (dict(channels=(16, 16)), "equally long"),
        (dict(norm="batch"), "norm"),
        (dict(act="tanh"), "act"),
        (dict(resample="bilinear"), "resample"),
        (dict(lpips_weight=0.1), "lpips_path"),
        (dict(train_crop=30), "train_crop"),
        (dict(kl_weight=-1.0), "kl_weight"),
        (dict(channels=(48,), norm="group"), "GroupNorm"),
    ],
)
def test_config_rejects_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        replace(VAE_PRESETS["tiny"], **change)
    with pytest.raises(ValueError, match="unknown"):
        VAEConfig.from_dict({**VAE_PRESETS["tiny"].to_dict(), "depth": 3})


# ---------------------------------------------------------------------------------- behaviour
def test_shapes_range_and_bf16(tiny, minipaint_frames):
    x = batch_of(minipaint_frames[:2]).float() / 255
    tiny.eval()
    z = tiny.encode(x)
    assert z.shape == (2, 16, 56, 56)
    y = tiny.decode(z)
    assert y.shape == (2, 3, 224, 224) and 0 <= y.min() and y.max() <= 1
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        yb = tiny.decode(tiny.encode(x))
    assert yb.shape == (2, 3, 224, 224) and torch.isfinite(yb).all()
    assert torch.equal(tiny.encode(x), z)  # encode is the posterior mean: deterministic


def test_loss_takes_both_uint8_layouts(tiny, minipaint_frames):
    tiny.eval()  # no sampling, no crop: the two calls see the same thing
    hwc = torch.from_numpy(minipaint_frames[:2])
    a, logs = tiny.loss(hwc)
    b, _ = tiny.loss(batch_of(minipaint_frames[:2]))
    assert a.item() == b.item()
    assert {"loss", "l1", "kl", "1-ssim", "psnr"} <= set(logs)
    with pytest.raises(ValueError):
        tiny.loss(torch.zeros(2, 224, 224, dtype=torch.uint8))


@pytest.mark.slow
def test_tiny_learns_real_frames(minipaint_frames):
    torch.manual_seed(0)
    model = VAE(replace(VAE_PRESETS["tiny"], train_crop=112))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = batch_of(minipaint_frames)
    model.eval()
    before = model.loss(batch)[1]
    model.train()
    for _ in range(40):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = model.loss(batch[:4])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after = model.loss(batch)[1]
    assert after["loss"] < 0.5 * before["loss"]
    assert after["psnr"] > before["psnr"] + 5


@pytest.mark.slow
def test_paper_builds_and_runs_forward_backward(minipaint_frames):
    torch.manual_seed(0)
    model = VAE(VAE_PRESETS["paper"])
    assert 27e6 < model.num_parameters() < 29e6  # 27,974,435
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs = model.loss(batch_of(minipaint_frames[:1]))
    loss.backward()
    assert np.isfinite(logs["loss"])
    assert all(p.grad is not None for p in model.decoder.conv_out.parameters())
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0


def test_reconstruct_checks_its_input(tiny, minipaint_frames):
    out = tiny.reconstruct(minipaint_frames[:2])
    assert out.dtype == np.uint8 and out.shape == (2, 224, 224, 3)
    bad = [
        minipaint_frames[:2].astype(np.float32),  # dtype
        minipaint_frames[0],  # no batch axis
        minipaint_frames[:2, :200],  # size
        np.ascontiguousarray(minipaint_frames[:2].transpose(0, 3, 1, 2)),  # channels first
        torch.from_numpy(minipaint_frames[:2]),  # not numpy
    ]
    for frames in bad:
        with pytest.raises(ValueError):
            tiny.reconstruct(frames)
    with pytest.raises(ValueError):
        tiny.encode(torch.from_numpy(minipaint_frames[:2]))  # uint8 into encode


# -------------------------------------------------------------------------------------- files
def test_save_load_gives_identical_outputs(tmp_path, tiny, minipaint_frames):
    with torch.no_grad():  # perturb the zero-initialised convs so the round trip is a real test
        for p in tiny.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save(tiny, tmp_path, meta={"step": 7})
    again = load(tmp_path)
    assert again.config == tiny.config and not again.training
    info = json.loads((tmp_path / "vae.json").read_text())
    assert info["meta"]["step"] == 7 and info["meta"]["parameters"] == tiny.num_parameters()
    assert np.array_equal(again.reconstruct(minipaint_frames[:2]), tiny.reconstruct(minipaint_frames[:2]))
    x = torch.rand(1, 3, 224, 224)
    tiny.eval()
    assert torch.equal(again.decode(again.encode(x)), tiny.decode(tiny.encode(x)))
    assert not list(tmp_path.glob("*.tmp"))


def _rewrite_weights(directory: Path, data: bytes) -> None:
    """Replace the weights and fix the JSON record, as a consistent but foreign checkpoint would."""
    import hashlib

    (directory / "vae.safetensors").write_bytes(data)
    info = json.loads((directory / "vae.json").read_text())
    info["weights"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (directory / "vae.json").write_text(json.dumps(info))


def test_bad_checkpoints_are_refused(tmp_path, tiny):
    good = tmp_path / "good"
    save(tiny, good)
    weights = (good / "vae.safetensors").read_bytes()

    def case(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "vae.safetensors").write_bytes(weights)
        (d / "vae.json").write_text((good / "vae.json").read_text())
        return d

    with pytest.raises(CheckpointError, match="no such file"):
        load(tmp_path / "absent")
    d = case("no_weights")
    (d / "vae.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no such file"):
        load(d)
    d = case("truncated")
    (d / "vae.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load(d)
    d = case("tampered")
    flipped = bytearray(weights)
    flipped[-10] ^= 0xFF
    (d / "vae.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum"):
        load(d)
    d = case("not_safetensors")
    _rewrite_weights(d, b"PK\x03\x04 this is a zip, not safetensors" * 10)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load(d)
    d = case("bad_json")
    (d / "vae.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load(d)
    with pytest.raises(CheckpointError, match="expected preset 'cpu'"):
        load(good, preset="cpu")


def test_mismatched_weights_name_the_key(tmp_path, tiny):
    # Config says cpu, weights are tiny's: a wrong-preset checkpoint.
    d = tmp_path / "wrong_preset"
    save(tiny, d)
    info = json.loads((d / "vae.json").read_text())
    info["config"] = VAEConfig().to_dict()  # the cpu body
    (d / "vae.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"tensor '.*' has shape|missing tensor"):
        load(d)
    # Same architecture but 8 latent channels: shapes differ at the latent convs.
    d = tmp_path / "wrong_shapes"
    other = VAE(replace(VAE_PRESETS["tiny"], latent_channels=8))
    save(other, d)
    save(tiny, tmp_path / "tiny")
    _rewrite_weights(tmp_path / "tiny", (d / "vae.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"'encoder\.conv_out\.weight' has shape \(16, 16, 3, 3\)"):
        load(tmp_path / "tiny")
    # A weights file with an extra tensor.
    from safetensors.torch import load as st_load, save as st_save

    d = tmp_path / "extra"
    save(tiny, d)
    state = st_load((d / "vae.safetensors").read_bytes())
    _rewrite_weights(d, st_save({**state, "extra.weight": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match="unexpected tensor 'extra.weight'"):
        load(d)


# -------------------------------------------------------------------------------------- LPIPS
def test_lpips_loads_only_from_a_local_file(tmp_path, minipaint_frames):
    with pytest.raises(CheckpointError, match="local"):
        LPIPS.from_file(None)
    with pytest.raises(CheckpointError, match="not found"):
        LPIPS.from_file(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        LPIPS.from_file(tmp_path / "junk.pth")
    torch.manual_seed(0)
    state = {k: v for k, v in LPIPS().state_dict().items() if not k.startswith("scaling_layer")}
    state = {k: (v.abs() if k.startswith("lin") else v) for k, v in state.items()}  # heads are >= 0
    torch.save({k: v for k, v in state.items() if k != "lin4.model.1.weight"}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="lin4.model.1.weight"):
        LPIPS.from_file(tmp_path / "partial.pth")
    torch.save(state, tmp_path / "lpips_vgg.pth")
    net = LPIPS.from_file(tmp_path / "lpips_vgg.pth")
    x = batch_of(minipaint_frames[:2, 96:160, 96:160]).float() / 255
    assert net(x, x).abs().max() < 1e-6
    assert (net(x, x.flip(-1)) > 0).all()

    config = replace(VAE_PRESETS["tiny"], lpips_weight=0.5, lpips_path=str(tmp_path / "lpips_vgg.pth"))
    model = VAE(config)
    loss, logs = model.loss(batch_of(minipaint_frames[:1, 96:160, 96:160]))
    loss.backward()
    assert logs["lpips"] > 0 and "lpips" not in "".join(model.state_dict())
    broken = VAE(replace(config, lpips_path=str(tmp_path / "missing.pth")))  # builds; fails at first use
    with pytest.raises(CheckpointError, match="not found"):
        broken.loss(batch_of(minipaint_frames[:1, 96:160, 96:160]))


def test_training_crops_follow_the_ink():
    torch.manual_seed(0)
    frames = torch.ones(8, 3, 224, 224)
    frames[:, :, 200, 17] = 0.0  # one dark pixel near a corner: the only ink
    on_ink = VAE(replace(VAE_PRESETS["tiny"], train_crop=64, crop_on_ink=1.0)).train()
    crops = on_ink._crop(frames)
    assert crops.shape == (8, 3, 64, 64)
    assert bool((crops.amin(dim=(1, 2, 3)) == 0).all())  # every crop holds the ink
    uniform = VAE(replace(VAE_PRESETS["tiny"], train_crop=64, crop_on_ink=0.0)).train()
    held = (uniform._crop(frames.repeat(8, 1, 1, 1)).amin(dim=(1, 2, 3)) == 0).float().mean()
    assert held < 0.5  # uniform crops mostly miss it
    blank = on_ink._crop(torch.ones(2, 3, 224, 224))  # no ink at all: uniform crops
    assert blank.shape == (2, 3, 64, 64)
