"""Mesh and point-cloud figures: the pictures are read back as images and checked for content."""

import json

import matplotlib.image
import numpy as np
import pytest
import scipy.io

from helpers import assert_user_error, run_cli
from oplearn.data.geofno import quad_cells
from oplearn.data.ragged import RaggedDatasetWriter
from oplearn.plot import mesh_triangles, plot_mesh_prediction
from oplearn.train import fit

DPI = 110


def curved_quad_mesh(rows=12, columns=9):
    """A structured annulus sector (a curvilinear quad mesh like the Geo-FNO ones), points numbered i columns + j."""
    i, j = np.meshgrid(np.linspace(0, np.pi, rows), np.linspace(1, 2, columns), indexing="ij")
    points = np.stack([(j * np.cos(i)).ravel(), (j * np.sin(i)).ravel()], axis=1)
    return points, quad_cells(rows, columns)


def fields_on(points, seed=0):
    """Input, truth and a prediction that is wrong mostly on one side: an error panel unlike the truth."""
    x, y = points[:, 0], points[:, 1]
    truth = np.sin(2 * x) * np.cos(3 * y)
    prediction = truth + 0.4 * np.exp(-((x - 1) ** 2 + (y - 1) ** 2) * 4)
    return np.stack([x * y]), truth[None], prediction[None]


def assert_a_real_picture(path, panels, width_inches):
    """The PNG has the figure's size, many colours, and its error panel (last) differs from its truth panel."""
    image = matplotlib.image.imread(path)
    assert image.shape == (round(3.4 * DPI), round(width_inches * DPI), 4)
    assert len(np.unique(image.reshape(-1, 4), axis=0)) > 200  # a colour map, not a blank or flat canvas
    width = image.shape[1] // panels
    strips = [image[:, k * width:(k + 1) * width, :3] for k in range(panels)]  # one panel and its colour bar each
    for strip in strips:
        assert strip.std() > 0.05  # every panel holds a drawing
    if panels == 4:
        assert np.abs(strips[1] - strips[3]).mean() > 0.02  # truth and |error| are different pictures
    return strips


def test_quads_split_into_two_triangles_covering_them_exactly():
    points, quads = curved_quad_mesh()
    triangles = mesh_triangles(quads)
    assert triangles.shape == (2 * len(quads), 3) and set(np.unique(triangles)) == set(np.unique(quads))

    def area(polygon):  # shoelace, (..., k, 2)
        x, y = polygon[..., 0], polygon[..., 1]
        return 0.5 * np.abs(np.sum(x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y, axis=-1))

    halves = area(points[triangles]).reshape(2, -1).sum(axis=0)
    np.testing.assert_allclose(halves, area(points[quads]), rtol=1e-13)  # convex quads: the halves tile them
    assert mesh_triangles(triangles) is triangles and mesh_triangles(None) is None
    assert mesh_triangles(np.zeros((3, 2), np.int64)) is None  # line cells: drawn as points


@pytest.mark.parametrize("kind", ["quad", "triangle", "points"])
def test_a_mesh_prediction_figure_draws_four_panels(tmp_path, kind):
    points, cells = curved_quad_mesh()
    if kind == "triangle":
        cells = mesh_triangles(cells)
    elif kind == "points":
        cells = None
    inputs, truth, prediction = fields_on(points)
    path = plot_mesh_prediction(points, cells, inputs, truth, prediction, tmp_path / f"{kind}.png", title=kind)
    assert_a_real_picture(path, 4, 4 * 3.6)


def write_mesh_file(path, n, seed):
    """Quad meshes of 6..9 x 5 points on an annulus sector: a = x y, u = sin(2x) cos(3y) + a / 2."""
    rng = np.random.default_rng(seed)
    with RaggedDatasetWriter(path, pde="toy", params={}, seed=seed, n_samples=n, geometry="mesh",
                             channels={"inputs": 1, "outputs": 1}, dim=2, cell_type="quad") as writer:
        for _ in range(n):
            points, cells = curved_quad_mesh(int(rng.integers(6, 10)), 5)
            points = points * rng.uniform(0.8, 1.2)
            a = (points[:, 0] * points[:, 1])[:, None]
            u = np.sin(2 * points[:, :1]) * np.cos(3 * points[:, 1:]) + a / 2
            writer.append([{"points": points, "cells": cells, "inputs": a, "outputs": u}])
    return path


def test_info_plot_draws_a_sample_of_mesh_and_grid_files(tmp_path, capsys, darcy_files):
    mesh = write_mesh_file(tmp_path / "mesh.h5", 3, 0)
    status, out, err = run_cli(capsys, "info", mesh, "--plot", tmp_path / "mesh.png", "--sample", 2)
    assert status == 0 and f"wrote {tmp_path / 'mesh.png'}" in out, err
    assert_a_real_picture(tmp_path / "mesh.png", 2, 2 * 3.6)
    status, out, err = run_cli(capsys, "info", darcy_files["test"], "--plot", tmp_path / "grid.png")
    assert status == 0, err
    left, right = assert_a_real_picture(tmp_path / "grid.png", 2, 7.5)
    assert np.abs(left - right).mean() > 0.02  # coefficient and solution are different pictures
    assert_user_error(capsys, r"--sample 3 is out of range: .*mesh.h5 holds 3 samples \(0..2\)",
                      "info", mesh, "--plot", tmp_path / "x.png", "--sample", 3)
    assert_user_error(capsys, "--plot writes a PNG; name it 'x.png'", "info", mesh, "--plot", tmp_path / "x.jpg")
    scipy.io.savemat(tmp_path / "darcy.mat", {"coeff": np.ones((2, 4, 4)), "sol": np.ones((2, 4, 4))})
    assert_user_error(capsys, "--plot draws oplearn dataset files; .*darcy.mat is not one",
                      "info", tmp_path / "darcy.mat", "--plot", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_eval_on_mesh_data_writes_the_mesh_figure(tmp_path, capsys):
    files = {split: str(write_mesh_file(tmp_path / f"{split}.h5", n, seed))
             for split, n, seed in (("train", 12, 1), ("test", 4, 2))}
    config = {"seed": 0, "device": "cpu", "data": {"train": {"path": files["train"]}, "test": {"path": files["test"]}},
              "model": {"name": "mlp", "width": 16}, "train": {"epochs": 3, "batch_size": 4, "lr": 0.01}}
    fit(config, tmp_path / "run", progress=False)
    status, out, err = run_cli(capsys, "eval", tmp_path / "run", "--device", "cpu")
    assert status == 0, err
    report = json.loads((tmp_path / "run" / "eval" / "test.json").read_text())
    assert report["geometry"] == "mesh" and report["figure"] == str(tmp_path / "run" / "figures" / "test.png")
    assert_a_real_picture(report["figure"], 4, 4 * 3.6)
