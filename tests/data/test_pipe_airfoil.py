"""Sample layout, boundary values and parameter checks of the pipe and airfoil mesh PDEs."""

import numpy as np
import pytest
from helpers import assert_user_error, run_cli
from pydantic import ValidationError

from oplearn.data.pdes import get_pde
from oplearn.data.pdes.airfoil import Airfoil, naca_four_digit
from oplearn.data.pdes.pipe import Pipe
from oplearn.data.ragged import RaggedReader
from oplearn.errors import ConfigError


def signed_areas(points, cells):
    """Twice the signed area of each polygon (shoelace), positive when counter-clockwise."""
    x, y = points[cells, 0], points[cells, 1]
    return np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1)


def test_pipe_sample_is_the_mapped_lattice_with_its_boundary_values():
    pipe = Pipe()
    resolution = 17
    sample = pipe.solve_sample(0, 0, resolution)
    points, cells, inputs, outputs = (sample[key] for key in ("points", "cells", "inputs", "outputs"))
    assert points.shape == inputs.shape == (resolution**2, 2) and outputs.shape == (resolution**2, 3)
    assert cells.shape == ((resolution - 1) ** 2, 4) and cells.dtype == np.int64
    assert points.dtype == outputs.dtype == np.float64 and isinstance(sample["draw"], int)
    assert np.all(np.isfinite(outputs)) and cells.min() == 0 and cells.max() == resolution**2 - 1
    assert np.all(signed_areas(points, cells) > 0)
    # inputs: the reference square's lattice, along the pipe first
    s, r = inputs.reshape(resolution, resolution, 2).transpose(2, 0, 1)
    np.testing.assert_array_equal(s[:, 0], np.linspace(0, 1, resolution))
    np.testing.assert_array_equal(r[0], np.linspace(0, 1, resolution))
    # x = L s; vertical sections of width W about the centreline
    grid = points.reshape(resolution, resolution, 2)
    np.testing.assert_allclose(grid[..., 0], pipe.length * s, atol=1e-12)
    np.testing.assert_allclose(grid[:, -1, 1] - grid[:, 0, 1], pipe.width, atol=1e-12)
    velocity = outputs.reshape(resolution, resolution, 3)[..., :2]
    assert np.all(velocity[:, 0] == 0) and np.all(velocity[:, -1] == 0)  # no slip
    np.testing.assert_allclose(velocity[0, :, 0], 4 * r[0] * (1 - r[0]), atol=1e-15)  # parabolic inflow
    # mass conservation: the flux through the outlet equals the inflow's 2/3 U W (Simpson is exact on P2)
    outlet = velocity[-1, :, 0]
    flux = (outlet[0:-1:2] + 4 * outlet[1::2] + outlet[2::2]).sum() * pipe.width / (3 * (resolution - 1))
    assert flux == pytest.approx(2 / 3 * pipe.width, rel=1e-9)


def test_airfoil_sample_shapes_and_bernoulli():
    wing = Airfoil()
    sample = wing.solve_sample(2, 0, 24)
    points, cells, inputs, outputs = (sample[key] for key in ("points", "cells", "inputs", "outputs"))
    n = points.shape[0]
    assert points.shape == (n, 2) and cells.shape[1] == 3 and cells.dtype == np.int64
    assert inputs.shape == (n, 1) and outputs.shape == (n, 3) and sample["draw"] == 0
    assert np.all(np.isfinite(outputs)) and np.all(signed_areas(points, cells) > 0)
    assert set(np.unique(cells)) == set(range(n))
    pressure, u_x, u_y = outputs.T
    np.testing.assert_allclose(pressure, 1 - u_x**2 - u_y**2, atol=1e-14)
    distance = inputs[:, 0]
    radius = np.linalg.norm(points - [0.5, 0.0], axis=1)
    assert distance.min() == 0.0 and np.sum(distance == 0) >= 2 * 24 - 2  # the surface nodes
    far = radius > 0.99 * wing.far_field_radius
    assert far.sum() >= 24 and np.abs(u_x[far] - 1).max() < 0.02 and np.abs(u_y[far]).max() < 0.02


def test_naca_section_shape():
    section = naca_four_digit(0.02, 0.4, 0.12, 41)
    assert section.shape == (80, 2)
    np.testing.assert_array_equal(section[0], [1.0, 0.0])
    np.testing.assert_array_equal(section[40], [0.0, 0.0])
    assert signed_areas(section, np.arange(80)[None])[0] > 0  # counter-clockwise
    # NACA 0012: the largest thickness is 12% of the chord, at about 30% of it
    symmetric = naca_four_digit(0.0, 0.4, 0.12, 201)
    upper = symmetric[:200][::-1]
    top = np.argmax(upper[:, 1])
    assert 2 * upper[top, 1] == pytest.approx(0.12, rel=1e-3) and upper[top, 0] == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("pde, resolution", [(Pipe(), 16), (Pipe(), 3), (Pipe(), 17.0), (Airfoil(), 4)])
def test_bad_resolution_is_a_config_error(pde, resolution):
    with pytest.raises(ConfigError, match="resolution"):
        pde.solve_sample(0, 0, resolution)


@pytest.mark.parametrize("pde, params, message", [
    (Pipe, {"viscosity": 0.0}, "viscosity"),
    (Pipe, {"width": -1.0}, "width"),
    (Pipe, {"control_points": 1}, "control_points"),
    (Pipe, {"reynolds": 100}, "reynolds"),
    (Airfoil, {"thickness": (0.2, 0.1)}, "thickness must be a range"),
    (Airfoil, {"camber": (0.0, 0.3)}, "camber must be a range"),
    (Airfoil, {"angle_of_attack": (-5.0, 45.0)}, "angle_of_attack"),
    (Airfoil, {"far_field_radius": 2.0}, "far_field_radius"),
])
def test_non_physical_parameters_are_rejected(pde, params, message):
    with pytest.raises(ValidationError, match=message):
        pde(**params)


def test_pipe_and_airfoil_generate_mesh_files_through_the_cli(tmp_path, capsys):
    for name, resolution, cell_type in (("pipe", 9, "quad"), ("airfoil", 12, "triangle")):
        path = tmp_path / f"{name}.h5"
        status, out, err = run_cli(capsys, "generate", name, "--n", "2", "--resolution", resolution,
                                   "--workers", "1", "--seed", "4", "--out", path)
        assert status == 0, err
        pde = get_pde(name)
        with RaggedReader(path) as reader:
            assert reader.geometry == "mesh" and reader.cell_type == cell_type and reader.channels == pde.channels
            samples = reader.read_all()
        for index, sample in enumerate(samples):
            expected = pde.solve_sample(4, index, resolution)
            np.testing.assert_array_equal(sample["points"], expected["points"])
            np.testing.assert_array_equal(sample["cells"], expected["cells"])
            np.testing.assert_array_equal(sample["outputs"], expected["outputs"].astype(np.float32))
    assert_user_error(capsys, r"invalid parameter for pipe: viscosity: Input should be greater than 0", "generate",
                      "pipe", "--n", "1", "--resolution", "9", "--param", "viscosity=0", "--out", tmp_path / "x.h5")
    assert_user_error(capsys, r"pipe resolution must be an odd integer", "generate", "pipe", "--n", "1",
                      "--resolution", "10", "--out", tmp_path / "y.h5")


def test_an_airfoil_mesh_does_not_depend_on_what_the_process_meshed_before():
    """gmsh options are process-wide: a fine region meshed first (its size cap) must not refine the next airfoil."""
    from oplearn.data.pdes.meshing import mesh_region, unit_square

    before = Airfoil().solve_sample(0, 0, 16)
    mesh_region(unit_square(), 0.02)
    after = Airfoil().solve_sample(0, 0, 16)
    np.testing.assert_array_equal(before["points"], after["points"])
    np.testing.assert_array_equal(before["outputs"], after["outputs"])
