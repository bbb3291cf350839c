import torch

from oplearn.losses import relative_lp_loss


def test_relative_l2_per_sample():
    target = torch.stack([torch.ones(1, 4, 4), 2 * torch.ones(1, 4, 4)])
    prediction = target.clone()
    prediction[0] += 0.5  # relative error 0.5
    prediction[1] *= 0.9  # relative error 0.1
    per_sample = relative_lp_loss(prediction, target, reduction="none")
    torch.testing.assert_close(per_sample, torch.tensor([0.5, 0.1]))
    torch.testing.assert_close(relative_lp_loss(prediction, target), torch.tensor(0.3))
    torch.testing.assert_close(relative_lp_loss(prediction, target, reduction="sum"), torch.tensor(0.6))


def test_relative_l1_and_scale_invariance():
    target = torch.randn(3, 2, 8)
    prediction = target + 0.1 * torch.randn(3, 2, 8)
    l1 = relative_lp_loss(prediction, target, p=1, reduction="none")
    expected = (prediction - target).abs().sum(dim=(1, 2)) / target.abs().sum(dim=(1, 2))
    torch.testing.assert_close(l1, expected)
    torch.testing.assert_close(relative_lp_loss(7 * prediction, 7 * target), relative_lp_loss(prediction, target))
