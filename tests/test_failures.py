"""The catalogue of user-caused and environment failures: every one ends in one clear line and exit 2.

Each case builds its inputs in a fresh folder, runs one ``oplearn`` command in-process and checks:
exit status 2, exactly one stderr line ``error: ...`` naming the cause, no traceback, and no new
file that looks complete (a finished dataset, a run directory with a checkpoint). New commands join
the catalogue by adding a case.
"""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from oplearn.data.writer import DatasetWriter

from helpers import run_cli


def truncated(source, folder: Path) -> Path:
    data = Path(source).read_bytes()
    path = folder / "truncated.h5"
    path.write_bytes(data[:len(data) // 2])
    return path


def garbled(source, folder: Path) -> Path:
    """The HDF5 signature kept, the superblock after it overwritten."""
    data = bytearray(Path(source).read_bytes())
    data[8:64] = bytes(range(56))
    path = folder / "garbled.h5"
    path.write_bytes(bytes(data))
    return path


def config_file(folder: Path, base: dict, **sections) -> Path:
    config = {**base}
    for key, value in sections.items():
        if isinstance(value, dict) and key == "data":
            config[key] = {**base[key], **{split: {**base[key].get(split, {}), **entry}
                                           for split, entry in value.items()}}
        elif isinstance(value, dict):
            config[key] = {**base.get(key, {}), **value}
        else:
            config[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def two_output_channels(source, folder: Path) -> Path:
    """The training file with its outputs doubled into two channels."""
    with h5py.File(source, "r") as f:
        inputs, outputs = f["inputs"][...], f["outputs"][...]
    path = folder / "two_channels.h5"
    with DatasetWriter(path, pde="test", params={}, seed=0, n_samples=len(inputs),
                       shapes={"inputs": inputs.shape[1:], "outputs": (2, *outputs.shape[2:])}) as writer:
        writer.append({"inputs": inputs, "outputs": np.concatenate([outputs, outputs], axis=1)})
    return path


def one_dimensional(folder: Path) -> Path:
    path = folder / "line.h5"
    with DatasetWriter(path, pde="test", params={}, seed=0, n_samples=4,
                       shapes={"inputs": (1, 16), "outputs": (1, 16)}) as writer:
        writer.append({"inputs": np.ones((4, 1, 16)), "outputs": np.ones((4, 1, 16))})
    return path


def pickled_object(folder: Path) -> Path:
    """A .pt file holding a pickled Python object (not plain tensors): it must never be unpickled."""
    import collections

    import torch

    path = folder / "object.pt"
    torch.save({"x": collections.OrderedDict(a=1), "y": Path("/")}, path)
    return path


def _train(c, folder, **sections):
    return ["train", config_file(folder, c["config"], **sections), "--out", folder / "run"]


# Each case: (name, function(context, folder) -> argv, pattern the error line must match).
CASES = [
    ("info: truncated file", lambda c, f: ["info", truncated(c["files"]["train"], f)], r"damaged or truncated"),
    ("info: garbled superblock", lambda c, f: ["info", garbled(c["files"]["train"], f)], r"damaged or truncated"),
    ("train: truncated training file",
     lambda c, f: _train(c, f, data={"train": {"path": str(truncated(c["files"]["train"], f))}}),
     r"truncated\.h5 is damaged or truncated"),
    ("eval: garbled test file", lambda c, f: ["eval", c["run"], "--data", garbled(c["files"]["test"], f)],
     r"garbled\.h5 is damaged or truncated"),
    ("convert: truncated file", lambda c, f: ["convert", truncated(c["files"]["train"], f), f / "out.h5"],
     r"damaged or truncated"),
    ("info: pickled object in a .pt file", lambda c, f: ["info", pickled_object(f)], r"object\.pt cannot be loaded"),
    ("train: test outputs have other channels",
     lambda c, f: _train(c, f, data={"test": {"path": str(two_output_channels(c["files"]["test"], f))}}),
     r"two_channels\.h5.*2 output channels.*1"),
    ("train: test grid of another dimension",
     lambda c, f: _train(c, f, data={"test": {"path": str(one_dimensional(f))}}),
     r"line\.h5.*\(16,\).*2-D"),
    ("eval: data with other output channels",
     lambda c, f: ["eval", c["run"], "--data", two_output_channels(c["files"]["test"], f)],
     r"two_channels\.h5.*2 output channels"),
    ("train: output directory under a file",
     lambda c, f: [*_train(c, f)[:2], "--out", (f / "file").write_text("x") and f / "file" / "run"],
     r"/file.*(Not a directory|File exists)"),
    ("generate: output under a file",
     lambda c, f: ["generate", "darcy", "--n", "2", "--resolution", "8", "--workers", "1",
                   "--out", (f / "file").write_text("x") and f / "file" / "d.h5"], r"/file.*(Not a directory|File exists)"),
    ("generate: unknown device", lambda c, f: ["generate", "darcy", "--n", "2", "--resolution", "8",
                                               "--device", "gpu0", "--out", f / "d.h5"], r"device 'gpu0'"),
    ("train: unknown device", lambda c, f: _train(c, f, device="tpu"), r"device 'tpu'"),
    ("train: cuda without a GPU", lambda c, f: _train(c, f, device="cuda"), r"CUDA.*not available"),
    ("eval: unknown device", lambda c, f: ["eval", c["run"], "--device", "nope"], r"device 'nope'"),
    ("train: unparsable --set value", lambda c, f: [*_train(c, f), "--set", "model.modes=[4,4"],
     r"--set model.modes=\[4,4.*YAML"),
    ("generate: unparsable --param value", lambda c, f: ["generate", "darcy", "--n", "2", "--resolution", "8",
                                                         "--param", "tau=[3", "--out", f / "d.h5"],
     r"--param tau=\[3.*YAML"),
    ("train: YAML syntax error", lambda c, f: ["train", (f / "bad.yaml").write_text("data:\n  train: [1\n")
                                               and f / "bad.yaml", "--out", f / "run"], r"bad\.yaml.*line \d+, column \d+"),
    ("train: missing argument", lambda c, f: ["train"], r"Missing argument"),
    ("generate: zero workers", lambda c, f: ["generate", "darcy", "--n", "2", "--resolution", "8",
                                             "--workers", "0", "--out", f / "d.h5"], r"--workers"),
    ("generate: negative samples", lambda c, f: ["generate", "darcy", "--n", "-3", "--resolution", "8",
                                                 "--out", f / "d.h5"], r"--n"),
    ("generate: resume a complete file", lambda c, f: ["generate", "darcy", "--n", "2", "--resolution", "8",
                                                       "--out", shutil.copy(c["files"]["test"], f / "d.h5"),
                                                       "--resume"], r"d\.h5 is complete"),
    ("generate: non-physical mesh PDE parameter",
     lambda c, f: ["generate", "pipe", "--n", "2", "--resolution", "9", "--param", "viscosity=-1",
                   "--out", f / "pipe.h5"], r"invalid parameter for pipe: viscosity"),
    ("generate: mesh resolution too coarse",
     lambda c, f: ["generate", "airfoil", "--n", "2", "--resolution", "2", "--out", f / "airfoil.h5"],
     r"resolution"),
    ("train: resume with a changed config",
     lambda c, f: ["train", config_file(f, c["config"], model={"width": 12}), "--out", c["run_copy"](f),
                   "--resume"], r"model\.width 8.*12"),
    ("eval: config.yaml edited by hand",
     lambda c, f: ["eval", c["edited_run"](f)], r"model\.width.*8.*16"),
]


@pytest.fixture(scope="module")
def context(darcy_files, tiny_run):
    config, run = tiny_run

    def run_copy(folder):
        copy = folder / "run_copy"
        shutil.copytree(run, copy)
        return copy

    def edited_run(folder):
        copy = run_copy(folder)
        saved = yaml.safe_load((copy / "config.yaml").read_text())
        saved["model"]["width"] = 16
        (copy / "config.yaml").write_text(yaml.safe_dump(saved))
        return copy

    return {"files": darcy_files, "config": config, "run": run, "run_copy": run_copy, "edited_run": edited_run}


def complete_looking(folder: Path) -> set[str]:
    """Files that look finished: datasets without .partial, checkpoints."""
    found = set()
    for path in folder.rglob("*"):
        if path.name.endswith((".partial", ".new")) or ".partial" in path.name:
            found.add(f"left over: {path.name}")
        if path.suffix == ".safetensors" and "run_copy" not in str(path):
            found.add(str(path.relative_to(folder)))
    return found


@pytest.mark.parametrize("name, make, pattern", CASES, ids=[case[0] for case in CASES])
def test_failure_is_one_line_and_leaves_nothing(name, make, pattern, context, tmp_path, capsys):
    argv = make(context, tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    status, _, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    import re
    assert re.search(pattern, lines[0]), lines[0]
    new = {p for p in tmp_path.rglob("*")} - before
    assert not complete_looking(tmp_path) & {str(p.relative_to(tmp_path)) for p in new}, new
    assert not any(".partial" in p.name for p in new), new
