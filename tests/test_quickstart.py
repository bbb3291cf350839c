"""The main job, `oplearn quickstart --fast`, end to end, and eval at a new resolution."""

import re

import matplotlib.image
import numpy as np

from oplearn.cli import main


def test_quickstart_fast_writes_a_complete_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--fast", "--out", "run"]) == 0
    out = capsys.readouterr().out
    errors = {int(n): float(e) for n, e in re.findall(r"test relative L2 at (\d+)x\d+: ([\d.]+)", out)}
    assert set(errors) == {32, 64}
    assert errors[32] < 0.1 and errors[64] < 0.15  # measured 0.042 and 0.055; the full run: 0.016, 0.052
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| test | 32x32 |" in report and "test_64 (zero-shot) | 64x64" in report
    for figure in ("test", "test_64", "training"):
        image = matplotlib.image.imread(tmp_path / "run" / "figures" / f"{figure}.png")
        assert image.shape[0] > 200 and np.std(image[..., :3]) > 0.05, figure
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "darcy_test_32_n50.h5", "darcy_test_64_n50.h5", "darcy_train_32_n400.h5"]

    # Zero-shot evaluation at a resolution nobody generated yet: the run's test recipe at 48x48.
    assert main(["eval", "run", "--resolution", "48"]) == 0
    out = capsys.readouterr().out
    assert "grid (48, 48) (50 samples; by band: low" in out
    assert (tmp_path / "run" / "eval" / "darcy_test_48.json").is_file()
