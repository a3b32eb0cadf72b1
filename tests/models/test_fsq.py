"""Finite scalar quantisation: the quantiser, the FSQ VAE and the classification ("levels") dynamics."""

import pytest
import torch

from infinipaint.errors import CheckpointError
from infinipaint.models import vae as vae_files
from infinipaint.models.dynamics import DynamicsConfig, LatentCNN
from infinipaint.models.vae import VAE, VAEConfig, from_codes, fsq, to_codes
from infinipaint.models.world_model import WorldModel

LEVELS = 5
TINY_FSQ = VAEConfig(preset="tiny", channels=(16,), blocks=(1,), train_crop=0, latent="fsq", fsq_levels=LEVELS)


def levels_net(**changes) -> LatentCNN:
    cfg = dict(preset="tiny", hidden=16, blocks=1, action_features=8, groups=4, head="levels", levels=LEVELS)
    return LatentCNN(DynamicsConfig(**{**cfg, **changes}))


def test_quantiser_values_and_round_trip():
    h = torch.linspace(-6, 6, 1001)
    z = fsq(h, LEVELS)
    assert set(z.unique().tolist()) == {-1.0, -0.5, 0.0, 0.5, 1.0}
    assert torch.all(z[1:] >= z[:-1])  # monotone in the encoder output
    codes = to_codes(z, LEVELS)
    assert codes.min() == 0 and codes.max() == LEVELS - 1
    assert torch.equal(from_codes(codes, LEVELS), z)
    assert torch.equal(to_codes(from_codes(codes, LEVELS), LEVELS), codes)
    # fp16 (the latent cache) holds every value exactly.
    assert torch.equal(z.half().float(), z)


def test_straight_through_gradient():
    h = torch.tensor([-0.3, 0.01, 0.4, 2.0], requires_grad=True)
    fsq(h, LEVELS).sum().backward()
    # d/dh of tanh(h) * 2 / 2, as if there were no rounding
    assert torch.allclose(h.grad, 1 - torch.tanh(h.detach()) ** 2)


def test_config_checks():
    with pytest.raises(ValueError, match="fsq_levels"):
        VAEConfig(latent="fsq", fsq_levels=4)
    with pytest.raises(ValueError, match="latent"):
        VAEConfig(latent="gumbel")
    with pytest.raises(ValueError, match="levels"):
        DynamicsConfig(head="levels", levels=0)


@pytest.mark.slow
def test_fsq_vae_encodes_to_the_grid_and_trains(minipaint_frames):
    torch.manual_seed(0)
    vae = VAE(TINY_FSQ)
    assert vae.encoder.conv_out.out_channels == 16  # no log-variance half
    z = vae.eval().encode(vae_files.frames_to_float(minipaint_frames[:2]))
    assert torch.equal(from_codes(to_codes(z, LEVELS), LEVELS), z)
    vae.train()
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, logs = vae.loss(minipaint_frames)
        assert logs["kl"] == 0.0
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_levels_head_keeps_an_unchanged_latent_exactly():
    net = levels_net().eval()
    z = from_codes(torch.randint(0, LEVELS, (2, 16, 56, 56)), LEVELS)
    hover = torch.zeros(2, 4, 56, 56)
    hover[:, 0, 30, 30] = hover[:, 2, 30, 31] = 1.0  # cursor moves, button up
    nxt = net.step(z, hover)
    assert torch.equal(nxt, z)
    assert torch.equal(net.step(nxt, hover), z)  # and again: nothing drifts


def test_balanced_ce_on_a_sparse_change():
    net = levels_net()
    target = torch.full((1, 16, 56, 56), 2)
    target[0, 3, 10, 10] = 4
    changed = torch.zeros(1, 1, 56, 56, dtype=torch.bool)
    changed[0, 0, 10, 10] = True
    confident = torch.nn.functional.one_hot(torch.full_like(target, 2), LEVELS).permute(0, 1, 4, 2, 3).float() * 20
    loss, logs = net.balanced_ce(confident, target, changed)
    # Unchanged positions are right (CE ~ 0); the one changed position is wrong in 1 of 16 channels
    # (CE ~ 20): the changed side alone weighs half the loss.
    assert logs["ce_same"] == pytest.approx(0.0, abs=1e-6)
    assert logs["ce_changed"] == pytest.approx(20 / 16, rel=1e-3)
    assert loss.item() == pytest.approx(0.5 * 20 / 16, rel=1e-3)
    assert logs["wrong_changed"] == 1.0 and logs["wrong_same"] == 0.0


@pytest.mark.slow
def test_levels_head_learns_a_sparse_transition_exactly():
    torch.manual_seed(0)
    net = levels_net(flip_prob=0.0, unroll=2)
    codes0 = torch.randint(1, LEVELS - 1, (2, 16, 56, 56))
    codes1 = codes0.clone()
    codes1[:, :, 20:23, 30:33] = LEVELS - 1  # a "stroke" at the cursor
    z = torch.stack([from_codes(c, LEVELS) for c in (codes0, codes1, codes1)], 1)
    actions = torch.tensor([[[112, 112, 0], [126, 86, 1], [126, 86, 0]]]).repeat(2, 1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    batch = {"z": z, "actions": actions}
    net.eval()
    with torch.no_grad():
        _, before = net.loss(batch)
    # Untrained, the keep bias holds every code: the stroke is missing, nothing else is wrong.
    assert before["clean_wrong_changed"] == 1.0 and before["clean_wrong_same"] == 0.0
    net.train()
    for _ in range(150):
        loss, logs = net.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["wrong_changed"] == 0.0 and logs["wrong_same"] == 0.0
    assert "clean_wrong_changed" not in logs  # validation only
    net.eval()
    with torch.no_grad():
        _, after = net.loss(batch)
    assert after["clean_wrong_changed"] == 0.0 and after["clean_wrong_same"] == 0.0
    from infinipaint.models.encoding import pair_planes

    net.eval()
    with torch.no_grad():
        pred = net.step(z[:, 0], pair_planes(actions[:, 0], actions[:, 1]))
    assert torch.equal(pred, z[:, 1])


def test_keep_margin_moves_the_argmax_towards_unchanged_values_when_stepping_only():
    torch.manual_seed(0)
    net = levels_net().eval()
    torch.nn.init.normal_(net.head.weight, std=0.3)  # an untrained net that changes many values
    z = from_codes(torch.randint(0, LEVELS, (1, 16, 56, 56)), LEVELS)
    stroke = torch.zeros(1, 4, 56, 56)
    stroke[:, :, 28, 28] = 1.0
    changed = [int((net.step(z, stroke) != z).sum())]
    for margin in (1.0, 3.0, 60.0):
        net.config.keep_margin = margin
        changed.append(int((net.step(z, stroke) != z).sum()))
    assert changed[0] > changed[1] > changed[2] > 0 and changed[3] == 0  # fewer and fewer, then none
    # training's logits do not see it: the loss is the same with and without a margin
    zn = net.normalize(z)
    net.config.keep_margin = 0.0
    before = net.level_logits(z, zn, stroke)
    net.config.keep_margin = 3.0
    assert torch.equal(net.level_logits(z, zn, stroke), before)
    with pytest.raises(ValueError, match="keep_margin"):
        DynamicsConfig(keep_margin=-1.0)


def test_world_model_overrides_the_saved_keep_margin(tmp_path):
    from infinipaint.models.checkpoint import read_info, save_weights

    vae = VAE(TINY_FSQ)
    vae_files.save(vae, tmp_path)
    net = levels_net(keep_margin=0.5)
    sha = read_info(tmp_path, "vae")["weights"]["sha256"]
    save_weights(net, tmp_path, "dynamics", net.config.to_dict(), {"vae_sha256": sha})
    assert WorldModel.load(tmp_path).dynamics.config.keep_margin == 0.5  # saved with the weights
    assert WorldModel.load(tmp_path, keep_margin=2.0).dynamics.config.keep_margin == 2.0
    with pytest.raises(ValueError, match="keep_margin"):
        WorldModel.load(tmp_path, keep_margin=-0.5)


def test_world_model_refuses_mismatched_levels():
    vae = VAE(TINY_FSQ)
    with pytest.raises(CheckpointError, match="levels"):
        WorldModel(vae, levels_net(levels=7))
    with pytest.raises(CheckpointError, match="continuous"):
        WorldModel(VAE(VAEConfig(preset="tiny", channels=(16,), blocks=(1,), train_crop=0)), levels_net())
    WorldModel(vae, levels_net())  # the right pair loads


def test_fsq_starts_from_a_continuous_vae(minipaint_frames):
    from infinipaint.models.vae import FSQ_INIT_GAIN, fsq_state_from_continuous

    torch.manual_seed(0)
    cont = VAE(VAEConfig(preset="tiny", channels=(16,), blocks=(1,), train_crop=0)).eval()
    quant = VAE(TINY_FSQ).eval()
    quant.load_state_dict(fsq_state_from_continuous(cont.state_dict(), 16))
    x = vae_files.frames_to_float(minipaint_frames[:2])
    mean = cont.encode(x)
    expected = fsq(mean * FSQ_INIT_GAIN, LEVELS)
    assert torch.allclose(quant.encode(x), expected, atol=1e-6)
    # the decoder undoes the gain: the same output for a latent in tanh's linear range
    assert torch.allclose(quant.decode_raw(mean * FSQ_INIT_GAIN), cont.decode_raw(mean), atol=1e-4)


def test_a_one_by_one_encoder_codes_each_cell_from_its_own_pixels(minipaint_frames):
    """encoder_kernel=1: painting inside one 4x4 cell changes that cell's code and no other; the
    3x3 encoder's change spreads to the cells around it."""
    x = vae_files.frames_to_float(minipaint_frames[:1])
    y = x.clone()
    y[:, :, 100:104, 120:124] = 1.0 - y[:, :, 100:104, 120:124]  # cell (25, 30)
    spread = {}
    for kernel in (1, 3):
        torch.manual_seed(0)
        vae = VAE(VAEConfig(**{**TINY_FSQ.to_dict(), "encoder_kernel": kernel, "fsq_levels": 255})).eval()
        with torch.no_grad():
            changed = (vae.encode(x) != vae.encode(y)).any(dim=1)[0]  # (56, 56)
        spread[kernel] = changed.nonzero().tolist()
    assert spread[1] == [[25, 30]]
    assert len(spread[3]) > 1 and [25, 30] in spread[3]
    with pytest.raises(ValueError, match="encoder_kernel"):
        VAEConfig(encoder_kernel=1, norm="group", channels=(32,))


def test_a_one_by_one_encoder_starts_from_the_centre_taps_of_a_three_by_three_one():
    from infinipaint.models.vae import initial_state

    torch.manual_seed(0)
    wide = VAE(TINY_FSQ)
    local = VAE(VAEConfig(**{**TINY_FSQ.to_dict(), "encoder_kernel": 1}))
    state = initial_state(local, wide.state_dict(), TINY_FSQ)
    local.load_state_dict(state)  # strict: every shape fits
    assert torch.equal(local.encoder.conv_in.weight, wide.encoder.conv_in.weight[..., 1:2, 1:2])
    assert torch.equal(local.decoder.conv_in.weight, wide.decoder.conv_in.weight)  # the decoder as it was
