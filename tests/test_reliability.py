"""Faults that interrupt work: nothing is lost, nothing half-made looks complete, no process is left behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors import SafetensorError

from oplearn.errors import ConfigError
from oplearn.train import Callback, fit

from helpers import run_cli


class Interrupt(Callback):
    """Stops training at the end of an epoch, before that epoch's checkpoint is written."""

    def __init__(self, at: int):
        self.at = at

    def on_epoch_end(self, epoch, metrics, model):
        if epoch == self.at:
            raise KeyboardInterrupt


def losses(run: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_interrupted_before_its_first_checkpoint_starts_again(small_config, tmp_path):
    reference = fit(small_config, tmp_path / "reference", progress=False)
    for how in ("rerun", "resume"):
        run = tmp_path / how
        with pytest.raises(KeyboardInterrupt):
            fit(small_config, run, progress=False, callbacks=[Interrupt(at=1)])
        assert (run / "config.yaml").is_file() and not (run / "checkpoints" / "last.safetensors").exists()
        results = fit(small_config, run, progress=False, resume=how == "resume")  # no --overwrite needed
        assert results["test"]["rel_l2"] == reference["test"]["rel_l2"]
        assert losses(run) == losses(tmp_path / "reference")  # one line per epoch, the same as uninterrupted


def test_a_folder_with_other_files_is_not_taken_for_a_failed_run(small_config, tmp_path):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("my notes")
    with pytest.raises(ConfigError, match="exists; pass --overwrite"):
        fit(small_config, run, progress=False)
    assert (run / "notes.txt").read_text() == "my notes"


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(small_config, tmp_path,
                                                                                    capsys, monkeypatch):
    import oplearn.train.checkpoint as checkpoint

    run = tmp_path / "run"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**small_config, "train": {**small_config["train"], "epochs": 2}}))
    assert run_cli(capsys, "train", config, "--out", run)[0] == 0
    saved = (run / "checkpoints" / "last.safetensors").read_bytes()

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise SafetensorError("No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full)
    config.write_text(yaml.safe_dump({**small_config, "train": {**small_config["train"], "epochs": 3}}))
    status, _, err = run_cli(capsys, "train", config, "--out", run, "--resume")
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # besides the progress bar
    assert status == 2 and len(errors) == 1 and "cannot write the checkpoint" in errors[0]
    assert "Traceback" not in err
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == saved  # the last good one, untouched
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.safetensors"]  # no scratch left


def test_a_full_disk_while_creating_a_dataset_leaves_no_scratch_file(tmp_path, capsys, monkeypatch):
    from oplearn.data.writer import DatasetWriter

    def full(self, f):
        raise OSError(28, "No space left on device", str(self.partial) + ".new")

    monkeypatch.setattr(DatasetWriter, "_layout", full)
    status, _, err = run_cli(capsys, "generate", "darcy", "--n", "2", "--resolution", "8", "--workers", "1",
                             "--out", tmp_path / "d.h5")
    assert status == 2 and err.startswith("error: ") and "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_a_batch_larger_than_the_training_set_warns_once(small_config, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**small_config, "train": {**small_config["train"], "epochs": 2,
                                                                "batch_size": 50}}))
    status, _, err = run_cli(capsys, "train", config, "--out", tmp_path / "run")
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert status == 0
    assert len(lines) == 1 and "batch_size 50 is larger than the 24 training samples" in lines[0]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
def test_killing_generate_ends_its_workers(tmp_path):
    command = [sys.executable, "-c", "from oplearn.cli import run; run()", "generate", "darcy", "--n", "400",
               "--resolution", "32", "--workers", "2", "--out", str(tmp_path / "d.h5")]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) >= 2, "the solver processes did not start"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "solver processes outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
    assert not (tmp_path / "d.h5").exists()  # only the resumable partial file, never a complete-looking one
