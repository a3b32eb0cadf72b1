"""The unrolled dynamics loss: after the first transition of a window, the network is fed its own
predictions (what it will be fed when it rolls out), not the recorded latents."""

import pytest
import torch

from infinipaint.models.dynamics import DynamicsConfig, LatentCNN
from infinipaint.models.vae import from_codes, to_codes

LEVELS = 5


def unrolled_net(**changes) -> LatentCNN:
    """A tiny net that does change the latent (the zero-initialised head made random), in eval mode:
    no scheduled sampling, so every unrolled input after the first is the net's own prediction."""
    torch.manual_seed(0)
    cfg = dict(preset="tiny", hidden=16, blocks=1, action_features=8, groups=4, unroll=3, noise_std=0.0, flip_prob=0.0)
    net = LatentCNN(DynamicsConfig(**{**cfg, **changes}))
    torch.nn.init.normal_(net.head.weight, std=0.1 if net.config.head == "delta" else 1.0)
    return net.eval()


def random_actions(n: int, steps: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    xy = torch.randint(0, 224, (n, steps, 2), generator=g)
    return torch.cat([xy, torch.randint(0, 2, (n, steps, 1), generator=g)], dim=-1)


def one_step_losses(net: LatentCNN, z: torch.Tensor, actions: torch.Tensor, fed: str) -> list[float]:
    """The one-step loss of each transition of a window z (B, K+1, C, H, W), its input the recorded
    latent (`fed="truth"`) or the net's own rollout from the first one (`fed="own"`)."""
    losses, state = [], z[:, 0]
    for t in range(z.shape[1] - 1):
        window = {"z": torch.stack([state if fed == "own" else z[:, t], z[:, t + 1]], 1), "actions": actions[:, t : t + 2]}
        losses.append(net.loss(window)[1]["loss_step1"])
        state = net.step(state, net.action_input(actions[:, t], actions[:, t + 1]))
    return losses


def test_unrolled_loss_feeds_predictions_back():
    # Every position counts as unchanged (an unreachable threshold): a transition's loss is then its
    # mean error, whichever latent it started from.
    net = unrolled_net(change_threshold=1e9)
    z, actions = torch.randn(2, 4, 16, 56, 56), random_actions(2, 4)
    with torch.no_grad():
        total, logs = net.loss({"z": z, "actions": actions})
        own, truth = one_step_losses(net, z, actions, "own"), one_step_losses(net, z, actions, "truth")
    assert total.item() == pytest.approx(sum(own) / 3, rel=1e-5)  # the mean of the three unrolled transitions
    assert logs["loss_step3"] == pytest.approx(own[2], rel=1e-5)
    assert own[0] == pytest.approx(truth[0], rel=1e-6)  # the first transition starts from the recorded latent
    assert abs(own[2] - truth[2]) > 0.05 * truth[2]  # fed the truth, the third would be another loss


def test_unrolled_loss_reaches_back_through_the_predictions_it_feeds():
    """The gradient of a later transition flows through the prediction it was fed into the earlier
    steps (the net learns to correct its own drift), not only through its own input."""
    net = unrolled_net(unroll=2).train()  # sched_sampling 0: its own predictions in training too
    z, actions = torch.randn(2, 3, 16, 56, 56), random_actions(2, 3)
    first = z[:, 0].clone().requires_grad_()
    total, _ = net.loss({"z": torch.cat([first[:, None], z[:, 1:]], 1), "actions": actions})
    through_both, head = torch.autograd.grad(total, [first, net.head.weight])
    step1, _ = net.loss({"z": torch.stack([first, z[:, 1]], 1), "actions": actions[:, :2]})
    (through_first,) = torch.autograd.grad(step1 / 2, first)  # what a detached feedback would leave
    assert not torch.allclose(through_both, through_first, atol=1e-6)
    assert head.abs().sum() > 0


def test_levels_head_feeds_its_most_likely_codes_back():
    net = unrolled_net(head="levels", levels=LEVELS)
    codes = torch.randint(0, LEVELS, (2, 4, 16, 56, 56), generator=torch.Generator().manual_seed(2))
    codes[:, :, 0] = torch.arange(4).view(1, 4, 1, 1)  # every position changes at every step
    z, actions = from_codes(codes, LEVELS), random_actions(2, 4)
    with torch.no_grad():
        total, logs = net.loss({"z": z, "actions": actions})
        own, truth = one_step_losses(net, z, actions, "own"), one_step_losses(net, z, actions, "truth")
        rolled = z[:, 0]
        for t in range(2):
            rolled = net.step(rolled, net.action_input(actions[:, t], actions[:, t + 1]))
    # Fed its own codes, the third transition still sees every position change (the balanced loss
    # weighs the same positions either way), and those codes are not the recorded ones.
    assert (to_codes(rolled, LEVELS) != codes[:, 3]).any(dim=1).all()
    assert not torch.equal(to_codes(rolled, LEVELS), codes[:, 2])
    assert total.item() == pytest.approx(sum(own) / 3, rel=1e-5)
    assert logs["loss_step3"] == pytest.approx(own[2], rel=1e-5)
    assert abs(own[2] - truth[2]) > 0.05 * truth[2]
