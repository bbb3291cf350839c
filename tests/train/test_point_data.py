"""Mesh data (format v2, a different number of points per sample) and v1 grid files through one trainer."""

import json

import h5py
import numpy as np
import pytest
import torch
import yaml

from oplearn.cli import main
from oplearn.data.point_dataset import PointDataset
from oplearn.data.ragged import RaggedDatasetWriter, RaggedReader
from oplearn.data.sources import open_data
from oplearn.errors import ConfigError
from oplearn.models import build
from oplearn.train import fit
from oplearn.train.evaluation import evaluate_run
from oplearn.train.recipes import load_run
from oplearn.train.task import SupervisedTask, fit_normalizers


def lattice_mesh(k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A jittered k x k lattice on [0, 1]^2 and its 2 (k-1)^2 triangles."""
    x, y = np.meshgrid(np.linspace(0, 1, k), np.linspace(0, 1, k), indexing="ij")
    points = np.stack([x.ravel(), y.ravel()], axis=1) + rng.uniform(-0.2, 0.2, (k * k, 2)) / k
    index = np.arange(k * k).reshape(k, k)
    a, b, c, d = index[:-1, :-1].ravel(), index[1:, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, 1:].ravel()
    return points, np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def write_mesh_file(path, n: int, seed: int):
    """Samples on meshes of 25 to 64 points: a(x) = s sin(2 pi (x + phi)), u = a + a^2 / 2 (pointwise)."""
    rng = np.random.default_rng(seed)
    with RaggedDatasetWriter(path, pde="pointwise_toy", params={}, seed=seed, n_samples=n, geometry="mesh",
                             channels={"inputs": 1, "outputs": 1}, dim=2, cell_type="triangle") as writer:
        for _ in range(n):
            points, cells = lattice_mesh(int(rng.integers(5, 9)), rng)
            a = rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * (points[:, :1] + rng.uniform()))
            writer.append([{"points": points, "cells": cells, "inputs": a, "outputs": a + a**2 / 2}])
    return path


@pytest.fixture(scope="module")
def mesh_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mesh")
    return {"train": str(write_mesh_file(root / "train.h5", 24, 1)),
            "test": str(write_mesh_file(root / "test.h5", 8, 2))}


def mesh_config(files, model="mlp", **hyper):
    return {"seed": 0, "device": "cpu",
            "data": {"train": {"path": files["train"]}, "test": {"path": files["test"]}},
            "model": {"name": model, **({"width": 16} if model == "mlp" else {}), **hyper},
            "train": {"epochs": 15, "batch_size": 6, "lr": 0.01}}


def test_a_mesh_file_opens_as_padded_point_batches(mesh_files):
    data = open_data(mesh_files["train"])
    assert isinstance(data, PointDataset) and data.kind == "mesh" and data.channels == (1, 1)
    reader = RaggedReader(mesh_files["train"])
    sizes = [reader.n_points(i) for i in range(3)]
    batch = data.batch([0, 1, 2])
    assert batch.inputs.shape == (3, 1, max(sizes)) and batch.coords.shape == (3, 2, max(sizes))
    for i, n in enumerate(sizes):
        sample = reader.sample(i)
        np.testing.assert_array_equal(batch.inputs[i, 0, :n].numpy(), sample["inputs"][:, 0])
        np.testing.assert_allclose(batch.coords[i, :, :n].numpy(), sample["points"].T, rtol=1e-7)
        assert batch.mask[i].sum() == n and not batch.inputs[i, :, n:].any()
        assert torch.equal(batch.cells[i], torch.as_tensor(sample["cells"]))


def test_padding_changes_no_prediction_error(mesh_files):
    """With fitted normalizers, each sample's error in a padded batch equals its error alone."""
    data = open_data(mesh_files["train"])
    task = SupervisedTask(*fit_normalizers(data))
    torch.manual_seed(0)
    model = build("mlp", in_channels=1, out_channels=1, width=8)
    together = task.per_sample_error(model, data.batch(range(6)))
    alone = torch.cat([task.per_sample_error(model, data.batch([i])) for i in range(6)])
    assert len({data.batch([i]).inputs.shape[-1] for i in range(6)}) > 1  # the sizes really differ
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-7)


def test_a_mesh_file_trains_evaluates_and_reloads(mesh_files, tmp_path, capsys):
    config = tmp_path / "mesh.yaml"
    config.write_text(yaml.safe_dump(mesh_config(mesh_files)))
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0
    assert "test: relative L2" in capsys.readouterr().out
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < 0.3 * metrics[0]["train_loss"]  # it learns the pointwise map
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test"]["geometry"] == "mesh" and results["test"]["rel_l2"] < 0.3 * metrics[0]["test_rel_l2"]
    _, model, task = load_run(tmp_path / "run", "cpu")
    evaluated = evaluate_run(tmp_path / "run", device="cpu")
    assert evaluated["test"]["rel_l2"] == pytest.approx(results["test"]["rel_l2"], rel=1e-6)
    assert evaluated["test"]["max_points"] == max(RaggedReader(mesh_files["test"]).n_points(i) for i in range(8))


def test_a_grid_model_refuses_mesh_data_before_writing(mesh_files, tmp_path):
    with pytest.raises(ConfigError, match="model fno works on grid data; the training data are mesh data"):
        fit(mesh_config(mesh_files, "fno", modes=[4, 4]), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_format_1_file_trains_as_its_format_2_copy(darcy_files, tmp_path):
    """A file as oplearn 0.1 wrote it (format 1, no geometry attributes) gives the same run as today's file."""
    old = tmp_path / "train_v1.h5"
    old.write_bytes(open(darcy_files["train"], "rb").read())
    with h5py.File(old, "r+") as f:
        assert f.attrs["oplearn_format"] == 2 and f.attrs["geometry"] == "grid"
        f.attrs["oplearn_format"] = 1
        for key in ("geometry", "grid_location"):
            if key in f.attrs:
                del f.attrs[key]
    runs = {}
    for label, path in (("v1", old), ("v2", darcy_files["train"])):
        config = {"seed": 0, "device": "cpu", "data": {"train": {"path": str(path)}, "test": {"path": str(path)}},
                  "model": {"name": "mlp", "width": 8}, "train": {"epochs": 2, "batch_size": 6}}
        fit(config, tmp_path / label, progress=False)
        runs[label] = [json.loads(line)["train_loss"] for line in (tmp_path / label / "metrics.jsonl").open()]
    assert runs["v1"] == runs["v2"]


def test_one_mesh_file_opens_twice_in_one_process(mesh_files):
    """A reader holding the file open must not make the second open take it for a non-oplearn file."""
    first = open_data(mesh_files["train"])
    first.batch([0, 1])
    second = open_data(mesh_files["train"])
    assert isinstance(second, PointDataset) and len(second) == len(first)
