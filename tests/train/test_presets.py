"""Every packaged YAML preset validates and builds a model that runs on its training grid."""

from importlib import resources

import pytest
import torch

from oplearn.models import build
from oplearn.train.config import load_config

PRESETS = sorted(p.name for p in resources.files("oplearn.configs").iterdir() if p.name.endswith(".yaml"))


def test_the_presets_are_all_there():
    assert {"darcy_fno.yaml", "darcy_tfno.yaml", "darcy_gfno.yaml", "darcy_afno.yaml", "darcy_specboost.yaml",
            "darcy_refine.yaml", "darcy_neuraloperator_16.yaml"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_validates_and_builds(name):
    config = load_config(resources.files("oplearn.configs").joinpath(name))
    source = config.data.train
    n = source.resolution or 16
    grid = (n,) if source.pde == "burgers" else (n, n)
    hyper = config.model.hyperparameters()
    if config.model.name == "deeponet":  # its sensor grid comes from the training data
        hyper.update(sensors=list(grid), dim=len(grid))
    model = build(config.model.name, in_channels=1, out_channels=1, **hyper)
    with torch.no_grad():
        assert model(torch.randn(2, 1, *grid)).shape == (2, 1, *grid)
