import pytest
import torch

from infinipaint.models.dynamics import DYNAMICS_PRESETS, DynamicsConfig, LatentCNN


def test_shapes_and_zero_initial_delta():
    net = LatentCNN(DYNAMICS_PRESETS["tiny"]).eval()
    z = torch.randn(3, 16, 56, 56)
    planes = torch.rand(3, 4, 56, 56)
    delta = net(z, planes)
    assert delta.shape == z.shape
    # The head starts at zero: an untrained net says "nothing changes", in raw latent space too.
    assert torch.equal(delta, torch.zeros_like(z))
    assert torch.allclose(net.step(z, planes), z, atol=1e-6)
    assert len(net.block_norms) == DYNAMICS_PRESETS["tiny"].blocks


def test_step_is_delta_in_normalised_space():
    net = LatentCNN(DYNAMICS_PRESETS["tiny"]).eval()
    torch.nn.init.normal_(net.head.weight, std=0.1)
    net.set_latent_stats(torch.full((16,), 2.0), torch.full((16,), 3.0))
    z, planes = torch.randn(2, 16, 56, 56), torch.rand(2, 4, 56, 56)
    zn = (z - 2.0) / 3.0
    expected = (zn + net(zn, planes)) * 3.0 + 2.0
    assert torch.allclose(net.step(z, planes), expected, atol=1e-5)


def test_balanced_loss_weighs_sparse_changes_equally():
    net = LatentCNN(DYNAMICS_PRESETS["tiny"])
    target = torch.zeros(1, 16, 56, 56)
    target[0, :, 10, 10] = 1.0  # one changed position out of 3136
    changed = net.changed_mask(torch.zeros_like(target), target)
    assert changed.sum() == 1
    # Predicting "no change" misses the changed position entirely: half the loss, not 1/3136 of it.
    loss, logs = net.balanced_l1(torch.zeros_like(target), target, changed)
    assert loss.item() == pytest.approx(0.5)
    assert logs["l1_changed"] == pytest.approx(1.0) and logs["l1_same"] == 0.0
    # Getting the change right but disturbing everything else by 0.1 also costs.
    pred = target + 0.1
    pred[0, :, 10, 10] = 1.0
    loss, _ = net.balanced_l1(pred, target, changed)
    assert loss.item() == pytest.approx(0.05, rel=1e-4)
    # With nothing changed in the batch, the loss is the plain mean error.
    loss, _ = net.balanced_l1(torch.full_like(target, 0.2), torch.zeros_like(target),
                              torch.zeros(1, 1, 56, 56, dtype=torch.bool))
    assert loss.item() == pytest.approx(0.2)


@pytest.mark.slow
def test_tiny_learns_a_sparse_transition():
    """One-step error falls on a fixed sparse change driven by the action."""
    torch.manual_seed(0)
    net = LatentCNN(DYNAMICS_PRESETS["tiny"])
    z0 = torch.randn(2, 16, 56, 56) * 0.1
    z1 = z0.clone()
    z1[:, :, 20:23, 30:33] += 1.0  # a "stroke" at the cursor
    actions = torch.tensor([[[112, 112, 0], [126, 86, 1]]]).repeat(2, 1, 1)
    batch = {"z": torch.stack([z0, z1], 1), "actions": actions}
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss, _ = net.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first


def test_config_validation():
    with pytest.raises(ValueError):
        DynamicsConfig(hidden=30, groups=8)
    with pytest.raises(ValueError):
        DynamicsConfig(unroll=0)


def test_scheduled_sampling_moves_from_truth_to_predictions():
    net = LatentCNN(DynamicsConfig(preset="tiny", hidden=16, blocks=1, action_features=8, groups=4,
                                   sched_sampling=0.5)).train()
    pred, truth = torch.zeros(4000, 1), torch.ones(4000, 1)
    net.set_progress(0.0)
    assert torch.equal(net.feed(pred, truth), truth)  # all truth at the start
    net.set_progress(0.25)
    assert 0.45 < net.feed(pred, truth).mean() < 0.55  # half-way through the ramp
    net.set_progress(0.5)
    assert torch.equal(net.feed(pred, truth), pred)  # own predictions from then on
    net.set_progress(0.0)
    net.eval()
    assert torch.equal(net.feed(pred, truth), pred)  # validation always rolls out for real


def test_latent_crops_follow_the_cursor_and_channel_norm_is_crop_invariant():
    torch.manual_seed(0)
    cfg = DynamicsConfig(preset="tiny", hidden=16, blocks=1, action_features=8, groups=4, norm="channel",
                         train_crop=16, unroll=2)
    net = LatentCNN(cfg)
    z = torch.randn(64, 3, 16, 56, 56)
    actions = torch.tensor([[0, 0, 0], [200, 40, 1], [204, 44, 1]]).repeat(64, 1, 1)
    crops, planes, boxes, k = net.windows({"z": z, "actions": actions})
    assert len(boxes) == 64 and all(0 <= x <= 40 and 0 <= y <= 40 for x, y in boxes)
    assert k == 2 and crops.shape == (64, 3, 16, 16, 16) and planes[0].shape == (64, 4, 16, 16)
    # most crops hold the cursor (latent (50.5, 10.5)): the next action's heatmap peaks inside
    assert (planes[0][:, 2].amax(dim=(1, 2)) > 0.5).float().mean() > 0.6
    loss, _ = net.loss({"z": z[:4], "actions": actions[:4]})
    assert torch.isfinite(loss)
    # without spatial statistics, the net on a crop equals the crop of the net (away from the border)
    torch.nn.init.normal_(net.head.weight, std=0.1)
    net.eval()
    zz, pp = torch.randn(1, 16, 56, 56), torch.rand(1, 4, 56, 56)
    full = net(zz, pp)[..., 20:28, 20:28]
    part = net(zz[..., 10:38, 10:38], pp[..., 10:38, 10:38])[..., 10:18, 10:18]
    assert torch.allclose(full, part, atol=1e-5)


def test_global_context_reads_the_whole_latent_and_crops_take_it_whole():
    torch.manual_seed(0)
    cfg = DynamicsConfig(preset="tiny", hidden=16, blocks=1, action_features=8, groups=4, norm="channel",
                         train_crop=16, unroll=2, context=8)
    net = LatentCNN(cfg)
    torch.nn.init.normal_(net.head.weight, std=0.1)
    net.eval()
    zz, pp = torch.randn(1, 16, 56, 56), torch.rand(1, 4, 56, 56)
    with torch.no_grad():
        base = net(zz, pp)
        # a 1-block net sees ~4 cells around it: only the context carries state from afar, from
        # any part of the latent (no region is special)
        for rows, cols in ((slice(0, 4), slice(0, 8)), (slice(50, 56), slice(48, 56)), (slice(26, 30), slice(0, 4))):
            other = zz.clone()
            other[:, :, rows, cols] += 1
            far = (slice(None), slice(None), slice(36, 44), slice(16, 32)) if rows.start < 40 else \
                  (slice(None), slice(None), slice(4, 12), slice(16, 32))
            assert not torch.allclose(base[far], net(other, pp)[far], atol=1e-4)
        # a crop given the whole latent computes what the whole latent does inside it
        part = net(zz[..., 30:50, 10:38], pp[..., 30:50, 10:38], zz)[..., 6:14, 6:22]
        assert torch.allclose(base[..., 36:44, 16:32], part, atol=1e-5)
    z = torch.randn(4, 3, 16, 56, 56)
    actions = torch.tensor([[0, 0, 0], [100, 200, 1], [104, 204, 1]]).repeat(4, 1, 1)
    batch = {"z": z, "actions": actions}
    crops, planes, boxes, k = net.windows(batch)
    assert crops.shape[-1] == 16
    # the context of an unrolled step reads the true latent with the rolled-out crop pasted in
    state = torch.zeros(4, 16, 16, 16)
    whole = net.denormalize(net.context_input(batch, 1, state, boxes))
    x, y = boxes[0]
    assert torch.allclose(whole[0, :, y : y + 16, x : x + 16], state[0], atol=1e-6)
    outside = torch.ones(56, 56, dtype=torch.bool)
    outside[y : y + 16, x : x + 16] = False
    assert torch.allclose(whole[0][:, outside], z[0, 1][:, outside], atol=1e-5)
    net.train()
    loss, _ = net.loss(batch)
    loss.backward()
    assert net.context_net[0].weight.grad.abs().sum() > 0


def test_a_model_told_about_minipaint_is_refused_by_name():
    with pytest.raises(ValueError, match="'toolbar_head' no longer exists"):
        DynamicsConfig.from_dict({**DynamicsConfig().to_dict(), "toolbar_head": True})
    with pytest.raises(ValueError, match="unknown field 'colour'"):
        DynamicsConfig.from_dict({**DynamicsConfig().to_dict(), "colour": 1})
    assert DynamicsConfig.from_dict(DYNAMICS_PRESETS["cpu"].to_dict()) == DYNAMICS_PRESETS["cpu"]


def test_channel_norm_normalises_each_position_over_its_channels():
    from infinipaint.models.dynamics import ChannelNorm

    h = torch.randn(2, 8, 5, 7).contiguous(memory_format=torch.channels_last) * 3 + 1
    var, mean = torch.var_mean(h, dim=1, keepdim=True, correction=0)
    assert torch.allclose(ChannelNorm()(h), (h - mean) / torch.sqrt(var + 1e-5), atol=1e-5)


def grown_net(field, **base_fields):
    """(a trained-looking tiny net, the same net with `field` on started from it by `initial_state`,
    a latent, two actions and a drag origin) for the tests of new inputs."""
    from infinipaint.models.dynamics import initial_state

    torch.manual_seed(0)
    base = DynamicsConfig(preset="tiny", hidden=16, blocks=1, action_features=8, groups=4, norm="channel",
                          train_crop=16, unroll=2, context=8, **base_fields)
    old = LatentCNN(base)
    torch.nn.init.normal_(old.head.weight, std=0.1)
    new = LatentCNN(DynamicsConfig(**{**base.to_dict(), field: True}))
    new.load_state_dict(initial_state(new, old.state_dict(), base))
    old.eval(), new.eval()
    z = torch.randn(2, 16, 56, 56)
    prev, act = torch.tensor([[100, 100, 1], [60, 60, 0]]), torch.tensor([[104, 100, 1], [60, 64, 1]])
    return old, new, z, prev, act, torch.tensor([[10, 12], [60, 64]])


def test_drag_origin_input_starts_from_a_trained_net_and_is_learned():
    from infinipaint.models.encoding import drag_origins

    old, new, z, prev, act, origin = grown_net("drag_origin")
    planes = new.action_input(prev, act, origin=origin)
    assert planes.shape == (2, 5, 56, 56)
    with torch.no_grad():  # zero weights on the new input: the trained net's outputs
        assert torch.equal(old(z, old.action_input(prev, act)), new(z, planes))
        assert torch.allclose(old.step(z[:, :, :16, :16], old.action_input(prev, act)[..., :16, :16], z),
                              new.step(z[:, :, :16, :16], planes[..., :16, :16], z, planes), atol=1e-6)
    with pytest.raises(ValueError, match="drag origin"):
        new.action_input(prev, act)
    actions = torch.tensor([[0, 0, 0], [100, 200, 1], [104, 204, 1]]).repeat(4, 1, 1)
    batch = {"z": torch.randn(4, 3, 16, 56, 56), "actions": actions}
    new.train()
    with pytest.raises(ValueError, match="origins"):
        new.loss(dict(batch))
    batch["origins"] = torch.from_numpy(drag_origins(actions[0].numpy())).repeat(4, 1, 1)
    loss, _ = new.loss(batch)
    loss.backward()  # the origin's weights learn, in the window and in the context
    assert new.a_in.weight.grad[:, 4].abs().sum() > 0 and new.context_net[0].weight.grad[:, 16].abs().sum() > 0


def test_offset_planes_give_the_cursor_to_the_pixel_from_every_cell():
    from infinipaint.models.encoding import OFFSET_RANGE, offset_planes

    p = offset_planes(torch.tensor([[101, 13, 1]]))
    assert p.shape == (1, 2, 56, 56)
    # cell (i=3, j=25) has its centre at screen (101.5, 13.5): the cursor is half a pixel up-left
    assert p[0, 0, 3, 25].item() == pytest.approx(-0.5 / OFFSET_RANGE) and p[0, 1, 3, 25].item() == pytest.approx(-0.5 / OFFSET_RANGE)
    assert p[0, 0, 0, 24].item() == pytest.approx(3.5 / OFFSET_RANGE)  # one cell to the left: 4 px more
    assert torch.equal(p[0, 0, :, 25], p[0, 0, 0, 25].expand(56))  # x offset the same down a column
    assert p[0, 0, 0, 0].item() == 1.0 and p[0, 1, 55, 0].item() == -1.0  # clipped far away
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        offset_planes(torch.zeros(2, 2))


def test_cursor_offsets_start_from_a_trained_net_and_are_learned():
    from infinipaint.models.dynamics import initial_state

    old, new, z, prev, act, origin = grown_net("cursor_offsets", drag_origin=True)
    planes = new.action_input(prev, act, origin=origin)
    assert planes.shape == (2, 9, 56, 56)
    with torch.no_grad():  # zero weights on the new input: the trained net's outputs, its context reading the origin
        assert torch.equal(old(z, old.action_input(prev, act, origin=origin)), new(z, planes))
    with pytest.raises(ValueError, match="more action inputs"):
        initial_state(old, new.state_dict(), new.config)
    actions = torch.tensor([[0, 0, 0], [100, 200, 1], [104, 204, 1]]).repeat(4, 1, 1)
    from infinipaint.models.encoding import drag_origins

    batch = {"z": torch.randn(4, 3, 16, 56, 56), "actions": actions,
             "origins": torch.from_numpy(drag_origins(actions[0].numpy())).repeat(4, 1, 1)}
    new.train()
    loss, _ = new.loss(batch)
    loss.backward()
    assert new.a_in.weight.grad[:, 5:].abs().sum() > 0


def test_hard_negatives_weigh_the_worst_unchanged_positions_like_changes():
    err = torch.zeros(1, 1, 10, 10)
    changed = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    changed[0, 0, 0, :2] = True
    err[0, 0, 5, 5] = 8.0  # one unchanged position badly wrong among 98
    plain, _, l_same = LatentCNN.balance(err, changed)
    assert plain.item() == pytest.approx(0.5 * 8 / 98)
    hard, _, _ = LatentCNN.balance(err, changed, hard=0.5)
    k = LatentCNN.HARD_MIN  # fewer changes than that: the term averages the 64 worst
    assert hard.item() == pytest.approx(0.5 * 8 / 98 + 0.5 * 8 / k)
    with pytest.raises(ValueError, match="hard_same"):
        DynamicsConfig(hard_same=-1)


@pytest.mark.parametrize("n_changed, size", [(100, 20), (0, 20), (10, 8)])
def test_hard_negatives_take_as_many_positions_as_change_within_what_there_is(n_changed, size):
    torch.manual_seed(0)
    err = torch.rand(1, 1, size, size)
    changed = torch.zeros(1, 1, size, size, dtype=torch.bool)
    changed.view(-1)[:n_changed] = True
    same = err[~changed]
    k = min(max(n_changed, LatentCNN.HARD_MIN), same.numel())  # 100 changes; none: 64; 54 unchanged: all of them
    plain, _, _ = LatentCNN.balance(err, changed)
    hard, _, _ = LatentCNN.balance(err, changed, hard=1.0)
    assert hard.item() == pytest.approx(plain.item() + same.topk(k).values.mean().item(), rel=1e-6)
