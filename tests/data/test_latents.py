"""The latent cache: built once per VAE, windows within episodes, oversampling of rare steps."""

import numpy as np
import pytest
import torch

from infinipaint.data.agents import KINDS
from infinipaint.data.latents import LatentTransitionDataset, build_latent_cache
from infinipaint.data.storage import DatasetReader
from infinipaint.errors import DataError
from infinipaint.models import vae as vae_files
from infinipaint.models.vae import VAE, VAE_PRESETS


@pytest.fixture(scope="module")
def cache(small_dataset, tmp_path_factory):
    torch.manual_seed(0)
    vae_dir = tmp_path_factory.mktemp("vae")
    vae_files.save(VAE(VAE_PRESETS["tiny"]), vae_dir)
    return vae_dir, build_latent_cache(small_dataset, vae_dir, "train", bf16=False)


def test_cache_matches_direct_encoding(small_dataset, cache):
    vae_dir, path = cache
    reader = DatasetReader(small_dataset)
    key = reader.keys("train")[1]
    ds = LatentTransitionDataset(path, k=3)
    vae = vae_files.load(vae_dir)
    frames = torch.from_numpy(reader.frames(key, 0, 4)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        z = vae.encode(frames)
    # The first window of the second episode starts at that episode's first cache row.
    assert ds.row(int(ds.offsets[1])) == ds.info["starts"][1]
    got = ds[int(ds.offsets[1])]
    assert got["z"].shape == (4, 16, 56, 56) and got["actions"].shape == (4, 3)
    assert torch.allclose(got["z"], z, atol=1e-2)  # float16 cache
    assert np.array_equal(got["actions"].numpy(), reader.arrays(key)["actions"][:4])
    assert build_latent_cache(small_dataset, vae_dir, "train") == path  # built once


def test_cache_follows_the_encoder_only(small_dataset, cache, tmp_path):
    vae_dir, path = cache
    vae = vae_files.load(vae_dir)
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(2.0)  # a retrained decoder: same latent, same cache
    vae_files.save(vae, tmp_path / "new-decoder")
    assert build_latent_cache(small_dataset, tmp_path / "new-decoder", "train") == path
    with torch.no_grad():
        vae.encoder.conv_out.bias.add_(1.0)  # a new encoder: a cache of its own
    vae_files.save(vae, tmp_path / "new-encoder")
    other = build_latent_cache(small_dataset, tmp_path / "new-encoder", "train", bf16=False)
    assert other != path and other.parent.name == vae_files.encoder_sha256(vae)[:16]
    z_old, z_new = np.load(path / "z.npy"), np.load(other / "z.npy")
    assert np.allclose(z_new, z_old + 1.0, atol=2e-2)


def test_windows_stay_inside_episodes(cache):
    _, path = cache
    ds = LatentTransitionDataset(path, k=5)
    starts = np.asarray(ds.info["starts"])
    assert len(ds) == int(np.sum(np.maximum(np.diff(starts) - 5, 0)))
    for i in range(0, len(ds), 7):
        r = ds.row(i)
        e = np.searchsorted(starts, r, side="right") - 1
        assert r + 5 < starts[e + 1]


def test_oversampling_weights(cache):
    _, path = cache
    kinds = np.load(path / "kinds.npy")
    ds = LatentTransitionDataset(path, k=2, oversample={"press_": 10.0, "erase": 3.0})
    w = ds.sampling_weights
    assert w.shape == (len(ds),) and set(np.unique(w)) <= {1.0, 3.0, 10.0}
    press = {i for i, k in enumerate(KINDS) if k.startswith("press_")}
    for i in range(len(ds)):
        r = ds.row(i)
        has_press = any(int(k) in press for k in kinds[r + 1 : r + 3])
        assert (w[i] == 10.0) == has_press
    with pytest.raises(ValueError):
        LatentTransitionDataset(path, k=1, oversample={"bogus": 2.0})
    with pytest.raises(DataError):
        LatentTransitionDataset(path.parent / "nope")
