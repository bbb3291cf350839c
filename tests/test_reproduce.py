"""`oplearn reproduce`: a paper row end to end on a tiny version of its config, and its results table."""

import json

import pytest

from oplearn.errors import ConfigError
from oplearn.reproduce import TABLE_HEADING, paper_config, paper_rows, reproduce

from helpers import assert_user_error


def tiny_darcy(tmp_path):
    """The darcy row shrunk: 12 samples at 13x13, zero-shot sets at 17 and 25, two epochs of a small FNO."""
    overrides = [f"data.{name}.path={tmp_path / name}.h5" for name in ("train", "test")]
    overrides += ["data.train.n=12", "data.test.n=4", "data.train.resolution=13", "data.test.resolution=13",
                  "data.train.params.oversample=2", "data.test.params.oversample=2",
                  "model.width=8", "model.modes=[4,4]", "train.epochs=2", "train.batch_size=4"]
    for name, resolution in (("test_141", 17), ("test_211", 25), ("test_421", 25)):
        overrides += [f"data.extra_tests.{name}.path={tmp_path / name}.h5", f"data.extra_tests.{name}.n=4",
                      f"data.extra_tests.{name}.resolution={resolution}",
                      f"data.extra_tests.{name}.params.oversample=1"]
    return overrides


def test_every_packaged_row_is_a_valid_config_with_the_paper_settings():
    for row in paper_rows():
        config = paper_config(row)
        assert config.train.epochs == 500 and config.train.lr == 1e-3
        assert config.train.batch_size == (10 if config.train.task == "space_time" else 20)
        assert config.train.scheduler == "step" and config.train.step_size == 100 and config.train.gamma == 0.5
        assert config.data.train.n == 1000
    assert paper_config("burgers").model.hyperparameters()["modes"] == [16]
    assert paper_config("darcy").data.train.params["oversample"] == 5  # (85 - 1) * 5 + 1 = 421
    for nu, final_time in (("1e-3", 50), ("1e-4", 30), ("1e-5", 20)):
        recurrent, space_time = paper_config(f"ns_{nu}_fno2d"), paper_config(f"ns_{nu}_fno3d")
        assert recurrent.train.task == "recurrent" and space_time.train.task == "space_time"
        for config in (recurrent, space_time):
            assert config.data.train.input_steps == list(range(1, 11))  # t = 1..10 in
            assert config.data.train.output_steps == list(range(11, final_time + 1))
            assert config.data.train.params["solver_resolution"] == 256 and config.data.train.resolution == 64
        assert recurrent.data.train.path == space_time.data.train.path  # one data set per viscosity


@pytest.mark.parametrize("row", paper_rows())
def test_every_row_model_runs_at_the_row_shape(row):
    """Each row's model and task accept the row's data shape (batch 1, zeros), before any data is made."""
    import math

    import torch

    from oplearn.train.recipes import _build
    from oplearn.data.batch import Batch
    from oplearn.train.task import RecurrentTask, SpaceTimeTask, SupervisedTask

    config = paper_config(row)
    source = config.data.train
    steps_in, steps_out = len(source.input_steps), len(source.output_steps)
    dim = 1 if row.startswith("burgers") else 2
    channels = (steps_in, steps_out)
    task = {"supervised": SupervisedTask(None, None), "recurrent": RecurrentTask(steps_out, 1),
            "space_time": SpaceTimeTask(None, None, steps_out)}[config.train.task]
    model = _build(config, channels)
    with torch.no_grad():
        predicted = task.predict(model, Batch(torch.zeros(1, steps_in, *[source.resolution] * dim), None))
    assert predicted.shape == (1, steps_out, *[source.resolution] * dim)
    assert math.isfinite(predicted.abs().max().item())


def test_darcy_row_end_to_end_writes_json_figure_and_one_table_line(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Measured results\n\n## Something else\n\ntext\n")
    overrides = tiny_darcy(tmp_path)
    summary = reproduce("darcy", tmp_path / "run", overrides, results, progress=False)
    saved = json.loads((tmp_path / "run" / "paper_row.json").read_text())
    assert saved["test_rel_l2"] == summary["test_rel_l2"] < 1.0
    assert saved["paper_rel_l2"] == 0.0108 and saved["epochs"] == 2 and saved["parameters"] > 0
    assert sorted(entry["resolution"][0] for entry in saved["zero_shot"].values()) == [17, 25, 25]
    assert (tmp_path / "run" / "figures" / "zero_shot.png").stat().st_size > 10_000
    # A second run of the same row and settings replaces its line; the other section is kept.
    reproduce("darcy", tmp_path / "run", overrides, results, overwrite=True, progress=False)
    text = results.read_text()
    assert text.count(TABLE_HEADING) == 1 and "## Something else\n\ntext" in text
    lines = [line for line in text.splitlines() if line.startswith("| darcy")]
    assert len(lines) == 1 and f"{summary['parameters']:,}" in lines[0]


def test_unknown_row_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="choose one of: burgers, burgers_256, darcy, ns_1e-3_fno2d"):
        paper_config("kuramoto")
    assert_user_error(capsys, "unknown paper row", "reproduce", "kuramoto", "--out", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_results_table_is_created_under_a_bare_heading_and_keeps_later_sections(tmp_path):
    from oplearn.reproduce import record_row

    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Measured results\n\n{TABLE_HEADING}\n\n## Later\n\nkept\n")
    summary = {"row": "burgers", "model": "oplearn FNO", "paper_rel_l2": 0.0018, "test_rel_l2": 0.002,
               "zero_shot": {}, "parameters": 10, "epochs": 1, "seconds_per_epoch": 1.0, "wall_seconds": 60.0,
               "hardware": "cpu", "date": "2026-11-23", "commit": "abc", "overrides": []}
    record_row(results, summary)
    record_row(results, {**summary, "test_rel_l2": 0.003})
    text = results.read_text()
    assert text.count("| burgers | oplearn FNO |") == 1 and "0.0030" in text and "0.0020" not in text
    assert text.index(TABLE_HEADING) < text.index("| row |") < text.index("| burgers") < text.index("## Later\n\nkept")
