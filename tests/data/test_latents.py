"""The latent cache: built once per VAE, windows within episodes, oversampling of rare steps."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from infinipaint.data import latents
from infinipaint.data.latents import LatentTransitionDataset, MixedWindows, build_latent_cache
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


def test_windows_carry_the_drag_origin_of_their_episode(small_dataset, cache):
    from infinipaint.models.encoding import drag_origins

    _, path = cache
    ds = LatentTransitionDataset(path, k=3)
    reader = DatasetReader(small_dataset)
    keys = reader.keys("train")
    starts = ds.info["starts"]
    held = 0
    for i in range(0, len(ds), 5):
        e, r = ds.locate(i)
        want = drag_origins(reader.arrays(keys[e])["actions"])[r - starts[e] : r - starts[e] + 4]
        item = ds[i]
        assert item["origins"].tolist() == want.tolist()
        held += int((item["actions"][:, 2] == 1).sum())
        assert ((item["origins"][:, 0] >= 0) == (item["actions"][:, 2] == 1)).all()
    assert held > 0  # some windows are inside drags


def test_the_cache_holds_frames_and_raw_actions_only(cache):
    """What the dynamics network learns from: latents and the raw (x, y, down) actions; the step
    kinds the agents record (what a step did to Minipaint) stay out of it."""
    _, path = cache
    assert sorted(p.name for p in path.iterdir()) == ["actions.npy", "index.json", "z.npy"]
    ds = LatentTransitionDataset(path, k=2)
    assert set(ds[0]) == {"z", "actions", "origins"}  # origins: from the actions alone
    assert ds.reset_action() == (112, 112, 0)  # every recorded episode's a_prev of its first step
    with pytest.raises(DataError):
        LatentTransitionDataset(path.parent / "nope")


@pytest.fixture(scope="module")
def fsq_vae(tmp_path_factory):
    torch.manual_seed(1)
    vae_dir = tmp_path_factory.mktemp("fsq-vae")
    vae_files.save(VAE(replace(VAE_PRESETS["tiny"], latent="fsq")), vae_dir)
    return vae_dir


class _CountingReads:
    """Records which episodes' frames a cache build reads (i.e. encodes); optionally fails on one."""

    def __init__(self, monkeypatch, fail_on: str | None = None) -> None:
        self.keys: list[str] = []
        original = DatasetReader.frames

        def frames(reader, key, *args, **kwargs):
            if key == fail_on:
                raise KeyboardInterrupt  # the build is killed here
            self.keys.append(key)
            return original(reader, key, *args, **kwargs)

        monkeypatch.setattr(DatasetReader, "frames", frames)


def test_fsq_cache_stores_codes_and_reads_back_exact_values(small_dataset, fsq_vae):
    path = build_latent_cache(small_dataset, fsq_vae, "train", bf16=False)
    codes = np.load(path / "codes.npy", mmap_mode="r")
    assert codes.dtype == np.uint8 and not (path / "z.npy").exists() and codes.max() < 5
    reader = DatasetReader(small_dataset)
    key = reader.keys("train")[0]
    frames = torch.from_numpy(reader.frames(key, 0, 3)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        z = vae_files.load(fsq_vae).encode(frames)
    got = LatentTransitionDataset(path, k=2)[0]["z"]
    assert torch.equal(got, z)  # codes round-trip to the very FSQ values


def test_killed_build_resumes_and_bigger_build_copies(small_dataset, fsq_vae, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data, ignore=shutil.ignore_patterns("latents"))
    keys = DatasetReader(data).keys("train")
    assert len(keys) >= 3
    reference = np.load(build_latent_cache(small_dataset, fsq_vae, "train", bf16=False) / "codes.npy")

    first = build_latent_cache(data, fsq_vae, "train", max_episodes=1, bf16=False)
    with monkeypatch.context() as m:
        reads = _CountingReads(m, fail_on=keys[2])
        with pytest.raises(KeyboardInterrupt):
            build_latent_cache(data, fsq_vae, "train", bf16=False)
    assert reads.keys == [keys[1]]  # episode 0 copied from the one-episode cache, episode 1 encoded
    assert (first / "index.json").exists()  # the finished cache is untouched by the killed build
    with monkeypatch.context() as m:
        reads = _CountingReads(m)
        path = build_latent_cache(data, fsq_vae, "train", bf16=False)
    assert reads.keys == keys[2:]  # resumed after the last episode written
    assert path == first and json.loads((path / "index.json").read_text())["keys"] == keys
    assert np.array_equal(np.load(path / "codes.npy"), reference)
    assert not (path.parent / (path.name + ".tmp")).exists()


def test_warm_reads_the_whole_latent_file_or_declines(cache, monkeypatch):
    _, path = cache
    ds = LatentTransitionDataset(path, k=1)
    size = (path / "z.npy").stat().st_size
    monkeypatch.setattr(latents, "available_memory", lambda: size * 10)
    thread = ds.warm(chunk=4096)
    thread.join(timeout=60)
    assert not thread.is_alive() and thread.bytes_read == size
    monkeypatch.setattr(latents, "available_memory", lambda: size)  # would not leave a fifth free
    assert ds.warm() is None
    monkeypatch.setattr(latents, "available_memory", lambda: None)  # the OS does not say
    assert ds.warm() is None


def test_mixed_windows_draw_each_dataset_in_its_share(cache):
    _, path = cache
    main = LatentTransitionDataset(path, k=2)
    extra = LatentTransitionDataset(path, k=2)
    mix = MixedWindows([main, extra], [0.8, 0.2])
    assert len(mix) == 2 * len(main)
    w = mix.sampling_weights
    assert np.isclose(w[: len(main)].sum(), 0.8) and np.isclose(w[len(main):].sum(), 0.2)
    assert np.allclose(w[: len(main)], w[0]) and np.allclose(w[len(main):], w[len(main)])
    assert mix.locate(len(main) + 3) == (1, 3)
    assert torch.equal(mix[len(main) + 3]["z"], extra[3]["z"])
    with pytest.raises(ValueError, match="sum to 1"):
        MixedWindows([main, extra], [0.8, 0.3])
    with pytest.raises(ValueError, match="different lengths"):
        MixedWindows([main, LatentTransitionDataset(path, k=3)], [0.5, 0.5])


def test_a_cell_local_encoder_encodes_only_the_changed_cells(small_dataset, tmp_path, monkeypatch):
    """`encoder_kernel=1`: the cache encodes the first frame and then only the cells each step
    changed, packed into images, and gets exactly the codes of encoding every frame whole."""
    torch.manual_seed(2)
    vae = VAE(replace(VAE_PRESETS["tiny"], latent="fsq", encoder_kernel=1, norm="none", resample="shuffle")).eval()
    vae_files.save(vae, tmp_path / "vae")
    reader = DatasetReader(small_dataset)
    frames = np.concatenate([reader.frames(k) for k in reader.keys("val")])
    whole = vae.encode(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    encoded = []
    real = vae_files.VAE.encode
    monkeypatch.setattr(vae_files.VAE, "encode", lambda self, x: encoded.append(len(x)) or real(self, x))
    path = build_latent_cache(small_dataset, tmp_path / "vae", "val", bf16=False)
    codes = np.load(path / "codes.npy")
    assert np.array_equal(codes, vae_files.to_codes(whole, vae.config.fsq_levels).numpy())
    assert sum(encoded) < len(frames) / 4  # far fewer images than frames
