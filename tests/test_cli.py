"""The command line end to end, and its one-line errors with exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
import yaml

from helpers import assert_user_error, run_cli


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "neuraloperator"


def test_generate_info_train_eval(capsys, tmp_path, small_config):
    data = tmp_path / "d.h5"
    status, out, _ = run_cli(capsys, "generate", "darcy", "--n", 4, "--resolution", 16, "--out", data,
                             "--workers", 1, "--param", "high=10")
    assert status == 0 and data.is_file()
    status, out, _ = run_cli(capsys, "info", data)
    assert status == 0 and "darcy" in out and "(4, 1, 16, 16)" in out and '"high": 10' in out

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(small_config))
    status, out, _ = run_cli(capsys, "train", config, "--out", tmp_path / "run", "--set", "train.epochs=2")
    assert status == 0 and "test_24: relative L2" in out
    status, out, _ = run_cli(capsys, "eval", tmp_path / "run", "--data", small_config["data"]["extra_tests"]["test_24"]["path"])
    assert status == 0 and "grid (24, 24)" in out
    figure = matplotlib.image.imread(tmp_path / "run" / "figures" / "test_24.png")
    assert figure.shape[0] > 200 and figure.shape[1] > 800 and np.std(figure[..., :3]) > 0.05
    report = json.loads((tmp_path / "run" / "eval" / "test_24.json").read_text())
    assert "by band: low" in out and set(report["band_relative_errors"]) == {"low", "mid", "high"}
    spectrum = report["spectrum"]
    assert spectrum["relative_l2"] == pytest.approx(report["rel_l2"], rel=1e-4)  # same predictions, all 8 samples
    assert len(spectrum["error_spectrum"]) == len(spectrum["wavenumbers"]) > 10
    assert np.std(matplotlib.image.imread(tmp_path / "run" / "figures" / "test_24_spectrum.png")[..., :3]) > 0.05
    status, out, _ = run_cli(capsys, "info", tmp_path / "run")
    assert status == 0 and "rel_l2" in out


def test_user_errors_are_one_line_with_status_2(capsys, tmp_path, small_config, darcy_files):
    assert_user_error(capsys, "unknown PDE 'darcyy'", "generate", "darcyy", "--n", 2, "--resolution", 16,
                      "--out", tmp_path / "x.h5")
    assert_user_error(capsys, "tau", "generate", "darcy", "--n", 2, "--resolution", 16, "--param", "tau=-1",
                      "--out", tmp_path / "x.h5")
    assert_user_error(capsys, "--n.*0 is not in the range x>=1", "generate", "darcy", "--n", 0, "--resolution", 16,
                      "--out", tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
    assert_user_error(capsys, "does not exist", "info", tmp_path / "missing.h5")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not hdf5 at all" * 10)
    assert_user_error(capsys, "corrupt", "info", corrupt)

    def config_with(change):
        raw = yaml.safe_load(yaml.safe_dump(small_config))
        change(raw)
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    assert_user_error(capsys, r"train\.epoch: unknown key", "train", config_with(lambda r: r["train"].update(epoch=3)),
                      "--out", tmp_path / "r1")
    assert_user_error(capsys, "unknown model 'fnox'", "train", config_with(lambda r: r["model"].update(name="fnox")),
                      "--out", tmp_path / "r2")
    assert_user_error(capsys, "lr: Input should be greater than 0", "train",
                      config_with(lambda r: None), "--set", "train.lr=-1", "--out", tmp_path / "r3")
    assert_user_error(capsys, "needs at least", "train", config_with(lambda r: r["model"].update(modes=[12, 12])),
                      "--out", tmp_path / "r4")
    assert not (tmp_path / "r4").exists()  # nothing written for a run that never started
    assert_user_error(capsys, "does not exist", "train",
                      config_with(lambda r: r["data"]["train"].update(path=str(tmp_path / "none.h5"))),
                      "--out", tmp_path / "r5")
    assert_user_error(capsys, "config file .* does not exist", "train", tmp_path / "nope.yaml")
    nan_file = tmp_path / "nan.pt"
    torch.save({"x": torch.rand(4, 16, 16), "y": torch.full((4, 16, 16), float("nan"))}, nan_file)
    assert_user_error(capsys, "NaN", "train", config_with(lambda r: r["data"]["train"].update(path=str(nan_file))),
                      "--out", tmp_path / "r6")
    assert_user_error(capsys, "not a run directory", "eval", tmp_path)


def test_console_script_exit_status(tmp_path):
    finished = subprocess.run([sys.executable, "-m", "oplearn.cli", "generate", "nope", "--n", "1",
                               "--resolution", "8"], capture_output=True, text=True, cwd=tmp_path)
    assert finished.returncode == 2
    assert finished.stderr.strip().startswith("error: unknown PDE 'nope'")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/neuraloperator is not present (CI-only data)")
def test_trains_on_neuraloperator_files(capsys, tmp_path):
    config = {
        "seed": 0, "device": "cpu",
        "data": {"train": {"path": str(SHARED / "darcy_train_16.pt"), "n": 200},
                 "test": {"path": str(SHARED / "darcy_test_16.pt")},
                 "extra_tests": {"test_32": {"path": str(SHARED / "darcy_test_32.pt")}}},
        "model": {"name": "fno", "modes": [8, 8], "width": 16, "n_layers": 4, "padding": 0.0},
        "train": {"epochs": 4, "batch_size": 10, "lr": 0.005},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", path, "--out", tmp_path / "run")
    assert status == 0, err
    status, out, err = run_cli(capsys, "eval", tmp_path / "run", "--data", SHARED / "darcy_test_32.pt")
    assert status == 0, err
    error = float(out.split("relative L2 ")[1].split()[0])
    assert error < 0.6  # learned something at a resolution it never saw


def test_convert_then_train_reads_the_converted_file(capsys, tmp_path, darcy_files):
    """A PDEBench Darcy file: `info` reads it, `convert` writes our format, a second convert refuses to overwrite."""
    import h5py
    import numpy as np

    from oplearn.data.store import read_dataset

    source = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    rng = np.random.default_rng(0)
    nu, solution = rng.random((5, 12, 12)).astype(np.float32), rng.random((5, 1, 12, 12)).astype(np.float32)
    with h5py.File(source, "w") as f:
        f["nu"], f["tensor"] = nu, solution
        f["x-coordinate"], f["y-coordinate"] = np.linspace(0, 1, 12), np.linspace(0, 1, 12)
    status, out, err = run_cli(capsys, "info", source)
    assert status == 0 and "inputs: (5, 1, 12, 12)" in out, err
    status, out, err = run_cli(capsys, "convert", source, tmp_path / "darcy.h5")
    assert status == 0, err
    arrays = read_dataset(tmp_path / "darcy.h5")["arrays"]
    np.testing.assert_array_equal(arrays["inputs"][:, 0], nu)
    np.testing.assert_array_equal(arrays["outputs"], solution)
    status, out, err = run_cli(capsys, "convert", source, tmp_path / "darcy.h5")
    assert status == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
