"""The training objective: weighted loss terms that see the whole Batch, padded points excluded."""

import pytest
import torch

from oplearn.data.batch import Batch
from oplearn.errors import ConfigError
from oplearn.losses import get_loss, relative_lp_loss
from oplearn.train.config import validate
from oplearn.train.objective import TERMS, Objective, register_term, relative_l2


def grid_batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randn(3, 2, 16, 16, generator=generator, dtype=torch.float64)
    return Batch(torch.zeros_like(targets), targets), targets + 0.1 * torch.randn(targets.shape, generator=generator,
                                                                                  dtype=torch.float64)


def test_a_name_is_the_loss_of_that_name():
    batch, prediction = grid_batch()
    for name in ("relative_l2", "h1", "h-1"):
        torch.testing.assert_close(Objective.from_config(name)(prediction, batch),
                                   get_loss(name)(prediction, batch.targets, reduction="none"), rtol=0, atol=0)


def test_weighted_terms_add_up():
    batch, prediction = grid_batch(1)
    objective = Objective.from_config([{"name": "relative_l2", "weight": 2.0}, {"name": "h1", "weight": 0.5}])
    expected = (2.0 * get_loss("relative_l2")(prediction, batch.targets, reduction="none")
                + 0.5 * get_loss("h1")(prediction, batch.targets, reduction="none"))
    torch.testing.assert_close(objective(prediction, batch), expected)


def test_config_takes_a_name_or_a_list_of_terms():
    base = {"data": {"train": {"path": "a.h5"}, "test": {"path": "b.h5"}}}
    assert validate({**base, "train": {"loss": "h-1"}}).train.loss == "h-1"
    config = validate({**base, "train": {"loss": [{"name": "relative_l2"}, {"name": "h1", "weight": 0.1}]}})
    assert [(t.name, t.weight) for t in config.train.loss] == [("relative_l2", 1.0), ("h1", 0.1)]
    with pytest.raises(ConfigError, match="weight"):
        validate({**base, "train": {"loss": [{"name": "h1", "weight": -1}]}})


def test_unknown_terms_and_options_are_refused():
    with pytest.raises(ConfigError, match="unknown loss 'h3'"):
        Objective.from_config("h3")
    with pytest.raises(ConfigError, match="takes no option"):
        Objective.from_config([{"name": "relative_l2", "p": 1}])


def test_a_registered_term_sees_the_batch():
    seen = {}

    @register_term("test_pde_name")
    def factory(scale: float = 1.0):
        def term(prediction, batch):
            seen["pde"], seen["params"] = batch.pde, batch.params
            return scale * prediction.flatten(1).abs().mean(1)
        return term

    try:
        batch = Batch(torch.ones(2, 1, 4), None, kind="points", coords=torch.zeros(2, 1, 4), pde="poisson",
                      params={"f": 1.0})
        value = Objective.from_config([{"name": "test_pde_name", "scale": 3.0}])(torch.ones(2, 1, 4), batch)
        assert value.tolist() == [3.0, 3.0] and seen == {"pde": "poisson", "params": {"f": 1.0}}
    finally:
        TERMS.pop("test_pde_name")


def test_padded_points_do_not_count():
    """Two point sets of 5 and 3 points: padded to 5, the relative L2 of each equals its own, unpadded one."""
    generator = torch.Generator().manual_seed(2)
    sizes = (5, 3)
    targets = [torch.randn(2, n, generator=generator) for n in sizes]
    predictions = [t + 0.3 * torch.randn(t.shape, generator=generator) for t in targets]
    padded_targets, padded_predictions = torch.zeros(2, 2, 5), torch.full((2, 2, 5), 7.0)  # garbage at padding
    for i, n in enumerate(sizes):
        padded_targets[i, :, :n], padded_predictions[i, :, :n] = targets[i], predictions[i]
    mask = torch.arange(5)[None] < torch.tensor(sizes)[:, None]
    batch = Batch(torch.zeros(2, 1, 5), padded_targets, kind="points", coords=torch.zeros(2, 2, 5), mask=mask)
    expected = torch.stack([relative_lp_loss(p[None], t[None]) for p, t in zip(predictions, targets)])
    torch.testing.assert_close(relative_l2(padded_predictions, batch), expected)
    torch.testing.assert_close(Objective.from_config("relative_l2")(padded_predictions, batch), expected)
    with pytest.raises(ConfigError, match="uniform grids"):
        Objective.from_config("h1")(padded_predictions, batch)
