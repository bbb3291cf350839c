"""Point operators map their coordinates from the training data's bounding box onto the unit box: fitted
once, saved with the config, and the same model whatever affine scaling of the axes the points come in."""

import numpy as np
import pytest
import torch
from train.test_point_data import write_mesh_file

from oplearn.data.sources import open_data
from oplearn.errors import ConfigError
from oplearn.models import build

SMALL = {"transolver": {"width": 8, "n_layers": 2, "n_heads": 2, "n_slices": 3},
         "galerkin": {"width": 8, "n_layers": 2, "n_heads": 2},
         "gnot": {"width": 8, "n_layers": 1, "n_heads": 2, "n_experts": 2},
         "gno": {"width": 8, "n_layers": 2, "kernel_width": 8, "radius": 0.3, "projection_channels": 8},
         "geo_fno": {"modes": [3, 3], "width": 6}}


def model(name, domain):
    torch.manual_seed(0)
    dim = {} if name == "geo_fno" else {"dim": 2}  # geo_fno's dimension is its number of modes
    return build(name, 1, 2, domain=domain, **dim, **SMALL[name]).double().eval()


@pytest.mark.parametrize("name", ["transolver", "galerkin", "gnot", "gno"])
def test_the_domain_is_the_training_points_bounding_box_and_is_saved(name, tmp_path):
    path = write_mesh_file(tmp_path / "mesh.h5", 5, 1)
    train = open_data(str(path))
    points = np.concatenate([train.batch([i]).coords[0].T.numpy() for i in range(5)])  # one sample: no padding
    fresh = build(name, 1, 1, **SMALL[name])
    updates = fresh.fit_to_data(train)
    np.testing.assert_allclose(updates["domain"], [points.min(0), points.max(0)], rtol=1e-6)
    assert fresh.hyper.domain == tuple(map(tuple, updates["domain"]))
    assert build(name, 1, 1, domain=[[0, 0], [1, 1]], **SMALL[name]).fit_to_data(train).get("domain") is None


@pytest.mark.parametrize("name", list(SMALL))
def test_an_affine_change_of_the_axes_with_its_domain_is_the_same_model(name):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 40, generator=generator, dtype=torch.float64)
    unit = torch.rand(2, 2, 40, generator=generator, dtype=torch.float64)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False
    scale, shift = torch.tensor([40.0, 0.5], dtype=torch.float64), torch.tensor([-20.0, 3.0], dtype=torch.float64)
    stretched = unit * scale[:, None] + shift[:, None]
    box = [shift.tolist(), (shift + scale).tolist()]
    expected = model(name, [[0.0, 0.0], [1.0, 1.0]])(x, coords=unit, mask=mask)
    torch.testing.assert_close(model(name, box)(x, coords=stretched, mask=mask), expected, rtol=1e-10, atol=1e-10)
    if name in ("transolver", "galerkin", "gnot"):  # unfitted: the coordinates as they are
        assert not torch.allclose(model(name, None)(x, coords=stretched, mask=mask), expected, atol=1e-3)


@pytest.mark.parametrize("name", ["transolver", "galerkin", "gnot"])
def test_a_domain_of_the_wrong_dimension_is_refused(name):
    with pytest.raises(ConfigError, match=rf"model {name}: domain must be \[\[low...\], \[high...\]\] with 2"):
        build(name, 1, 1, dim=2, domain=[[0, 0, 0], [1, 1, 1]], **SMALL[name])
