import pytest

from oplearn.data import generate


@pytest.fixture(scope="session")
def darcy_files(tmp_path_factory):
    """Small real Darcy datasets: 24 training and 8 test samples at 16x16, 8 test samples at 24x24."""
    root = tmp_path_factory.mktemp("darcy")
    files = {
        "train": generate("darcy", 24, 16, seed=1, out=root / "train.h5", workers=1, progress=False),
        "test": generate("darcy", 8, 16, seed=2, out=root / "test.h5", workers=1, progress=False),
        "test_24": generate("darcy", 8, 24, seed=3, out=root / "test_24.h5", workers=1, progress=False),
    }
    return {name: str(path) for name, path in files.items()}


@pytest.fixture
def small_config(darcy_files):
    """A config dict that trains a tiny FNO in about a second per epoch."""
    return {
        "seed": 0,
        "device": "cpu",
        "data": {"train": {"path": darcy_files["train"]}, "test": {"path": darcy_files["test"]},
                 "extra_tests": {"test_24": {"path": darcy_files["test_24"]}}},
        "model": {"name": "fno", "modes": [4, 4], "width": 8, "n_layers": 2, "padding": 0.1,
                  "projection_channels": 16},
        "train": {"epochs": 4, "batch_size": 6, "lr": 0.01, "scheduler": "step", "step_size": 2},
    }


@pytest.fixture(scope="session")
def tiny_config(darcy_files):
    """A 2-layer FNO on the small Darcy files, trained for 3 epochs (a base for second stages and probes)."""
    return {
        "seed": 0, "device": "cpu",
        "data": {"train": {"path": darcy_files["train"]}, "test": {"path": darcy_files["test"]}},
        "model": {"name": "fno", "modes": [4, 4], "width": 8, "n_layers": 2, "padding": 0.1,
                  "projection_channels": 16},
        "train": {"epochs": 3, "batch_size": 6, "lr": 0.01},
    }


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config):
    """``(config, run directory)`` of a finished run of ``tiny_config``."""
    from oplearn.train import fit

    run = tmp_path_factory.mktemp("tiny") / "run"
    fit(tiny_config, run, progress=False)
    return tiny_config, run
