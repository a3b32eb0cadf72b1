"""The palette decoder: per-pixel classification among the colours Minipaint draws."""

import numpy as np
import pytest
import torch

from infinipaint.models import vae as vae_files
from infinipaint.models.vae import VAE, VAEConfig, initial_state, palette_of


@pytest.fixture(scope="module")
def palette(minipaint_frames):
    return palette_of(minipaint_frames)


def tiny_palette(palette, **changes):
    return VAEConfig(**{**dict(preset="tiny", channels=(16,), blocks=(1,), train_crop=0, output="palette",
                               palette=palette), **changes})


def test_palette_of_real_and_foreign_frames(minipaint_frames, palette):
    assert palette[0] == (255, 255, 255)  # white canvas: the most frequent colour comes first
    assert 8 <= len(palette) <= 16 and len(set(palette)) == len(palette)
    assert palette_of(torch.from_numpy(minipaint_frames).permute(0, 3, 1, 2)) == palette  # (B, 3, H, W) too
    noise = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="not palette-indexed"):
        palette_of(noise)


def test_config_and_model_checks(palette):
    with pytest.raises(ValueError, match="distinct"):
        VAEConfig(output="palette", palette=((1, 2, 3), (1, 2, 3)))
    with pytest.raises(ValueError, match="output"):
        VAEConfig(output="hsv")
    with pytest.raises(ValueError, match="needs its colours"):
        VAE(VAEConfig(preset="tiny", channels=(16,), blocks=(1,), output="palette"))
    assert VAEConfig.from_dict(tiny_palette(palette).to_dict()) == tiny_palette(palette)  # JSON round trip


@pytest.mark.slow
def test_decoder_shows_only_palette_colours_and_learns(minipaint_frames, palette):
    torch.manual_seed(0)
    vae = VAE(tiny_palette(palette))
    x = vae_files.frames_to_float(minipaint_frames)
    assert torch.equal(vae.palette_rgb(x.device)[vae.palette_index(x)].permute(0, 3, 1, 2), x)  # exact indexing
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, logs = vae.loss(minipaint_frames)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or logs
    assert logs["ce"] < 0.5 * first["ce"] and logs["psnr"] > first["psnr"]
    out = vae.reconstruct(minipaint_frames[:2])
    assert set(map(tuple, out.reshape(-1, 3))) <= set(palette)


def test_save_load_keeps_the_palette(tmp_path, minipaint_frames, palette):
    torch.manual_seed(0)
    vae = VAE(tiny_palette(palette)).eval()
    vae_files.save(vae, tmp_path)
    again = vae_files.load(tmp_path)
    assert again.config.palette == palette
    assert np.array_equal(again.reconstruct(minipaint_frames[:2]), vae.reconstruct(minipaint_frames[:2]))


def test_rgb_weights_start_a_palette_decoder(palette):
    torch.manual_seed(0)
    rgb = VAE(VAEConfig(preset="tiny", channels=(16,), blocks=(1,), train_crop=0))
    pal = VAE(tiny_palette(palette))
    fresh = pal.decoder.conv_out.weight.clone()
    pal.load_state_dict(initial_state(pal, rgb.state_dict(), rgb.config))
    assert torch.equal(pal.encoder.conv_in.weight, rgb.encoder.conv_in.weight)  # the body is copied
    assert torch.equal(pal.decoder.conv_out.weight, fresh)  # the new head keeps its own start
