"""Tests for dataset format 2: geometry attributes, format 1 files, ragged mesh/point files, damaged files."""

import inspect
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import oplearn
from oplearn.cli import main
from oplearn.data.dataset import FieldDataset
from oplearn.data.ragged import RaggedDatasetWriter, RaggedReader, read_ragged
from oplearn.data.store import (describe, is_oplearn_file, open_dataset, partial_path, read_attributes,
                                read_dataset)
from oplearn.data.writer import DatasetWriter
from oplearn.errors import DataError

SIZES = (7, 4, 11, 5, 9, 6)


def mesh_sample(i):
    """A strip of n - 2 triangles over n random points in 2-D; n differs between samples."""
    rng = np.random.default_rng(i)
    n = SIZES[i % len(SIZES)] + i // len(SIZES)
    cells = np.stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)], axis=1)
    return {"points": rng.random((n, 2)), "cells": cells,
            "inputs": rng.standard_normal((n, 1)), "outputs": rng.standard_normal((n, 2))}


def point_sample(i):
    rng = np.random.default_rng(100 + i)
    n = SIZES[i % len(SIZES)] + 2 * i
    return {"points": rng.standard_normal((n, 3)), "inputs": rng.standard_normal((n, 1)),
            "outputs": rng.standard_normal((n, 3))}


SETTINGS = {
    "mesh": dict(geometry="mesh", channels={"inputs": 1, "outputs": 2}, dim=2, cell_type="triangle"),
    "points": dict(geometry="points", channels={"inputs": 1, "outputs": 3}, dim=3),
}
MAKERS = {"mesh": mesh_sample, "points": point_sample}
PARAMS = {"alpha": 0.5}
GRID_SHAPES = {"inputs": (1, 6, 6), "outputs": (2, 6, 6)}


def ragged_writer(path, kind="mesh", n=6, **change):
    args = dict(pde="fem-poisson", params=PARAMS, seed=3, n_samples=n, **SETTINGS[kind])
    args.update(change)
    return RaggedDatasetWriter(path, **args)


def write_ragged(path, kind="mesh", n=6):
    with ragged_writer(path, kind, n) as w:
        w.append([MAKERS[kind](i) for i in range(n)])
    return path


def raw(path) -> dict:
    """Every dataset of a file as stored, and its attributes."""
    with h5py.File(path, "r") as f:
        return {name: f[name][...] for name in f}, dict(f.attrs)


def assert_same_file_content(path, reference):
    (arrays, attrs), (want, want_attrs) = raw(path), raw(reference)
    assert attrs == want_attrs
    assert sorted(arrays) == sorted(want)
    for name in want:
        assert arrays[name].dtype == want[name].dtype and arrays[name].shape == want[name].shape, name
        assert arrays[name].tobytes() == want[name].tobytes(), name


def grid_batch(n):
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal((n, *shape)).astype(np.float32) for name, shape in GRID_SHAPES.items()}


def grid_writer(path, n=4, **change):
    args = dict(pde="darcy", params=PARAMS, seed=7, n_samples=n, shapes=GRID_SHAPES)
    args.update(change)
    return DatasetWriter(path, **args)


def write_v1(path, n=3, complete=True):
    """A grid file exactly as format 1 wrote it: no geometry attributes."""
    data = grid_batch(n)
    with h5py.File(path, "w") as f:
        f.attrs.update(oplearn_format=1, pde="darcy", params='{"alpha": 0.5}', seed=7, oplearn_version="0.0.9",
                       complete=complete, n_samples=n, n_done=n if complete else 1)
        for name, array in data.items():
            f.create_dataset(name, data=array, chunks=(1, *array.shape[1:]))
    return data


# -- grid files --------------------------------------------------------------------------

def test_v2_grid_round_trip(tmp_path):
    path = tmp_path / "cells.h5"
    data = grid_batch(4)
    with grid_writer(path, grid_location="cells") as w:
        w.append(data)
    with h5py.File(path, "r") as f:
        assert f.attrs["oplearn_format"] == 2 and f.attrs["geometry"] == "grid"
        assert f.attrs["grid_location"] == "cells"
        assert sorted(f) == ["inputs", "outputs"]  # the format 1 layout, unchanged
    read = read_dataset(path)
    for name in GRID_SHAPES:
        np.testing.assert_array_equal(read["arrays"][name], data[name])
    assert read["attrs"]["geometry"] == "grid" and read["attrs"]["grid_location"] == "cells"
    text = describe(path)
    assert "format:    oplearn v2" in text and "geometry:  grid 6x6 (cells)" in text
    assert "complete:  yes (4/4 samples)" in text and "(4, 2, 6, 6)" in text
    with open_dataset(path) as f:
        assert f["inputs"].shape == (4, 1, 6, 6)


def test_v2_trajectories_geometry_line(tmp_path):
    path = tmp_path / "burgers.h5"
    with DatasetWriter(path, pde="burgers", params={}, seed=0, n_samples=2, shapes={"trajectories": (5, 1, 16)},
                       extra={"times": np.linspace(0, 1, 5)}) as w:
        w.append({"trajectories": np.ones((2, 5, 1, 16))})
    assert "geometry:  grid 16 (nodes)" in describe(path)


def test_v1_file_reads_as_nodes_grid(tmp_path):
    path = tmp_path / "old.h5"
    data = write_v1(path)
    assert is_oplearn_file(path)
    read = read_dataset(path)
    for name in GRID_SHAPES:
        np.testing.assert_array_equal(read["arrays"][name], data[name])
    attrs = read["attrs"]
    assert attrs["oplearn_format"] == 1 and attrs["geometry"] == "grid" and attrs["grid_location"] == "nodes"
    assert read_attributes(path)["params"] == PARAMS
    text = describe(path)
    assert "format:    oplearn v1" in text and "geometry:  grid 6x6 (nodes)" in text
    assert "complete:  yes (3/3 samples)" in text
    lazy = FieldDataset.open(path, in_memory=False)
    assert len(lazy) == 3 and lazy.channels == (1, 2)
    np.testing.assert_array_equal(lazy.batch([2]).targets.numpy(), data["outputs"][2:])


def test_v1_partial_is_not_resumed(tmp_path):
    path = tmp_path / "old.h5"
    write_v1(partial_path(path), complete=False)
    with pytest.raises(DataError, match=r"cannot resume .*old\.h5\.partial: it is in dataset format 1, but this "
                                        r"oplearn writes format 2; pass --overwrite to start over") as info:
        grid_writer(path, 3, resume=True)
    assert "\n" not in str(info.value)
    with grid_writer(path, 3, overwrite=True) as w:
        w.append(grid_batch(3))
    assert read_attributes(path)["oplearn_format"] == 2


def test_unknown_format_and_geometry_refused(tmp_path):
    path = tmp_path / "d.h5"
    with grid_writer(path, 2) as w:
        w.append(grid_batch(2))
    with h5py.File(path, "r+") as f:
        f.attrs["geometry"] = "voxels"
    for read in (read_dataset, describe, RaggedReader):
        with pytest.raises(DataError, match="has geometry 'voxels', but this oplearn reads grid, mesh, points"):
            read(path)
    with h5py.File(path, "r+") as f:
        f.attrs["geometry"] = "grid"
        f.attrs["oplearn_format"] = 3
    with pytest.raises(DataError, match="uses dataset format 3, but this oplearn reads formats 1 to 2"):
        describe(path)


def test_grid_writer_geometry_options(tmp_path):
    with pytest.raises(DataError, match="DatasetWriter writes grid files, not geometry 'mesh'.*RaggedDatasetWriter"):
        grid_writer(tmp_path / "a.h5", geometry="mesh")
    with pytest.raises(DataError, match="grid_location 'edges' is unknown; use 'nodes' or 'cells'"):
        grid_writer(tmp_path / "a.h5", grid_location="edges")
    path = tmp_path / "b.h5"
    with grid_writer(path, 4) as w:
        w.append({name: a[:1] for name, a in grid_batch(4).items()})
    with pytest.raises(DataError, match=re.escape("it was written with grid_location nodes (now: cells);")):
        grid_writer(path, 4, resume=True, grid_location="cells")


# -- ragged files ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mesh", "points"])
def test_ragged_round_trip(tmp_path, kind):
    path = write_ragged(tmp_path / f"{kind}.h5", kind, n=8)
    want = [MAKERS[kind](i) for i in range(8)]
    sizes = [len(s["points"]) for s in want]
    assert len(set(sizes)) > 3  # really ragged
    got = read_ragged(path)
    assert len(got) == 8
    for sample, expected in zip(got, want):
        assert sorted(sample) == sorted(expected)
        np.testing.assert_array_equal(sample["points"], expected["points"])
        assert sample["points"].dtype == np.float64
        for name in ("inputs", "outputs"):
            assert sample[name].dtype == np.float32
            np.testing.assert_array_equal(sample[name], expected[name].astype(np.float32))
        if kind == "mesh":
            assert sample["cells"].dtype == np.int64
            np.testing.assert_array_equal(sample["cells"], expected["cells"])

    with RaggedReader(path) as reader:
        assert len(reader) == 8 and reader.geometry == kind and reader.dim == SETTINGS[kind]["dim"]
        assert reader.channels == SETTINGS[kind]["channels"]
        assert reader.cell_type == ("triangle" if kind == "mesh" else None)
        assert [reader.n_points(i) for i in range(8)] == sizes
        assert reader.n_cells(2) == (sizes[2] - 2 if kind == "mesh" else 0)
        picked = reader.samples([5, 1, 5])
        np.testing.assert_array_equal(picked[0]["outputs"], got[5]["outputs"])
        np.testing.assert_array_equal(picked[1]["points"], got[1]["points"])
        np.testing.assert_array_equal(reader.sample(-1)["points"], got[7]["points"])
        assert reader.geometry_at(3).n_points == sizes[3]
        with pytest.raises(IndexError, match="sample index 8 out of range 0..7"):
            reader.sample(8)

    arrays, attrs = raw(path)
    total = sum(sizes)
    assert attrs["geometry"] == kind and attrs["oplearn_format"] == 2 and attrs["complete"]
    assert arrays["points"].shape == (total, SETTINGS[kind]["dim"]) and arrays["points"].dtype == np.float64
    assert arrays["outputs"].shape == (total, SETTINGS[kind]["channels"]["outputs"])
    assert arrays["inputs"].dtype == np.float32
    np.testing.assert_array_equal(arrays["point_offsets"], np.concatenate([[0], np.cumsum(sizes)]))
    assert arrays["point_offsets"].dtype == np.int64
    if kind == "mesh":
        assert arrays["cells"].shape == (total - 2 * 8, 3) and arrays["cells"].dtype == np.int64
        cells_per_sample = np.array(sizes) - 2
        np.testing.assert_array_equal(arrays["cell_offsets"], np.concatenate([[0], np.cumsum(cells_per_sample)]))
    else:
        assert "cells" not in arrays and "cell_offsets" not in arrays


def test_ragged_file_is_refused_by_grid_readers(tmp_path):
    path = write_ragged(tmp_path / "m.h5")
    for read in (read_dataset, open_dataset):
        with pytest.raises(DataError, match="holds mesh samples of varying size, not grid arrays; read it with "
                                            "oplearn.data.ragged.RaggedReader or read_ragged"):
            read(path)
    with pytest.raises(DataError, match="holds mesh samples"):
        FieldDataset.open(path)
    attrs = read_attributes(path)
    assert attrs["channels"] == {"inputs": 1, "outputs": 2} and attrs["cell_type"] == "triangle"
    assert attrs["dim"] == 2 and attrs["n_samples"] == 6
    grid = tmp_path / "g.h5"
    with grid_writer(grid, 1) as w:
        w.append(grid_batch(1))
    with pytest.raises(DataError, match="is a grid file, not mesh or point samples"):
        RaggedReader(grid)


def test_ragged_describe(tmp_path, capsys):
    path = tmp_path / "m.h5"
    with ragged_writer(path, n=6) as w:
        w.append([mesh_sample(i) for i in range(3)])
    text = describe(path)  # the partial file
    assert "complete:  INCOMPLETE (3/6 samples" in text
    assert "samples:   3 (points per sample: min 4, median 7, max 11; 22 in all)" in text
    with ragged_writer(path, n=6, resume=True) as w:
        w.append([mesh_sample(i) for i in range(3, 6)])
    text = describe(path)
    want = [mesh_sample(i) for i in range(6)]
    points = np.concatenate([s["points"] for s in want])
    assert "geometry:  mesh (triangle cells, 2D points)" in text
    assert "samples:   6 (points per sample: min 4, median 6.5, max 11; 42 in all)" in text
    assert "cells:     triangle (per sample: min 2, median 4.5, max 9; 30 in all)" in text
    assert "channels:  inputs 1, outputs 2" in text
    assert re.search(r"points +\(42, 2\) +float64 +min=" + re.escape(f"{points.min():.4g}"), text)
    assert '"alpha": 0.5' in text and "seed:      3" in text

    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "geometry:  mesh (triangle cells, 2D points)" in out and "42 in all" in out
    cloud = write_ragged(tmp_path / "p.h5", "points", n=2)
    assert main(["info", str(cloud)]) == 0
    out = capsys.readouterr().out
    assert "geometry:  points (3D)" in out and "cells:" not in out


def test_partial_writes_and_resume_equal_uninterrupted(tmp_path):
    path, reference = tmp_path / "m.h5", write_ragged(tmp_path / "reference.h5", n=9)
    for lo, hi in [(0, 2), (2, 3), (3, 3), (3, 7), (7, 9)]:  # a new writer (a resume) per batch
        with ragged_writer(path, n=9, resume=True) as w:
            assert w.n_done == lo
            w.append([mesh_sample(i) for i in range(lo, hi)])
        assert path.exists() == (hi == 9)
    assert not partial_path(path).exists()
    assert_same_file_content(path, reference)


def test_exception_inside_with_leaves_ragged_partial(tmp_path):
    path = tmp_path / "m.h5"
    with pytest.raises(RuntimeError):
        with ragged_writer(path, n=2) as w:
            w.append([mesh_sample(0), mesh_sample(1)])
            raise RuntimeError("solver crashed")
    assert not path.exists() and partial_path(path).exists()
    with pytest.raises(DataError, match="interrupted.*--resume"):
        read_ragged(path)
    with pytest.raises(DataError, match="pass --resume to continue it or --overwrite"):
        ragged_writer(path, n=2)
    with ragged_writer(path, n=2, resume=True) as w:
        assert w.n_done == 2
    assert len(read_ragged(path)) == 2


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(oplearn.__file__).parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


CHILD = textwrap.dedent("""
    import os, signal, time
    from oplearn.data.ragged import RaggedDatasetWriter
    KILL_AT = {kill_at!r}
    if KILL_AT is not None:  # die after the data of sample KILL_AT is on disk, before n_done counts it
        commit = RaggedDatasetWriter._commit
        def _commit(self, n_done):
            if n_done == KILL_AT + 1:
                self._file.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            commit(self, n_done)
        RaggedDatasetWriter._commit = _commit
    with RaggedDatasetWriter({path!r}, pde="fem-poisson", params={params!r}, seed=3, n_samples={n},
                             resume=True, **{settings!r}) as w:
        for i in range(w.n_done, {n}):
            w.append([mesh_sample(i)])
            print(w.n_done, flush=True)
            time.sleep(0.01)
""")


def spawn(path, n, kill_at=None):
    samples = f"import numpy as np\nSIZES = {SIZES!r}\n{inspect.getsource(mesh_sample)}"  # the same samples
    script = samples + CHILD.format(kill_at=kill_at, path=str(path), params=PARAMS, n=n, settings=SETTINGS["mesh"])
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=child_env())


def resume_and_compare(tmp_path, path, n):
    with ragged_writer(path, n=n, resume=True) as w:
        done = w.n_done
        for lo in range(done, n, 4):
            w.append([mesh_sample(i) for i in range(lo, min(lo + 4, n))])
    assert_same_file_content(path, write_ragged(tmp_path / "reference.h5", n=n))
    return done


def test_kill9_mid_run_then_resume_equals_uninterrupted(tmp_path):
    n, path = 60, tmp_path / "m.h5"
    child = spawn(path, n)
    for line in child.stdout:
        if int(line) >= 2:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not path.exists() and partial_path(path).exists()
    assert "INCOMPLETE" in describe(path)
    done = resume_and_compare(tmp_path, path, n)
    assert 2 <= done < n  # really interrupted halfway


def test_kill9_between_data_and_count_leaves_rows_that_resume_overwrites(tmp_path):
    n, path = 8, tmp_path / "m.h5"
    child = spawn(path, n, kill_at=3)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    with h5py.File(partial_path(path), "r+", locking=False) as f:
        offsets = f["point_offsets"][...]
        assert f.attrs["n_done"] == 3
        assert offsets[4] == offsets[3] + len(mesh_sample(3)["points"])  # written, not counted
        assert f["points"].shape[0] >= offsets[4] > offsets[3]
        # make the left-over rows of sample 3 plainly wrong: the resume must not keep any of them
        f["points"][offsets[3]:offsets[4]] = 1e6
        f["cells"][int(f["cell_offsets"][3]):] = 99
        f["point_offsets"][4:] = 12345
    assert resume_and_compare(tmp_path, path, n) == 3


@pytest.mark.parametrize("change, message", [
    ({"dim": 3}, "dim 2 (now: 3)"),
    ({"cell_type": "quad"}, "cell_type triangle (now: quad)"),
    ({"channels": {"inputs": 1, "outputs": 3}}, "outputs 2 (now: 3)"),
    ({"channels": {"inputs": 1, "outputs": 2, "extra": 1}}, "extra unset (now: 1)"),
    ({"geometry": "points", "cell_type": None}, "cell_type triangle (now: unset), geometry mesh (now: points)"),
    ({"seed": 4}, "seed 3 (now: 4)"),
    ({"n": 7}, "n_samples 6 (now: 7)"),
    ({"params": {"alpha": 0.6}}, "alpha 0.5 (now: 0.6)"),
])
def test_ragged_resume_mismatch_names_the_setting(tmp_path, change, message):
    path = tmp_path / "m.h5"
    with ragged_writer(path, n=6) as w:
        w.append([mesh_sample(0)])
    with pytest.raises(DataError, match=f"cannot resume .*: it was written with {re.escape(message)};"):
        ragged_writer(path, resume=True, **change)


def test_grid_writer_does_not_resume_ragged_partial(tmp_path):
    path = tmp_path / "m.h5"
    with ragged_writer(path, n=6) as w:
        w.append([mesh_sample(0)])
    with pytest.raises(DataError, match=re.escape("geometry mesh (now: grid)")):
        grid_writer(path, 6, resume=True, params=PARAMS, seed=3, pde="fem-poisson")


def test_ragged_append_checks(tmp_path):
    with ragged_writer(tmp_path / "m.h5", n=3) as w:
        good = mesh_sample(0)  # 7 points
        cases = [
            ({k: v for k, v in good.items() if k != "cells"}, r"sample 1 has \['inputs', 'outputs', 'points'\], "
                                                              r"but the file stores \['cells', 'inputs'"),
            ({**good, "cells": good["cells"] + 1}, "sample 1: cell index 7 is out of range for 7 points"),
            ({**good, "cells": good["cells"][:, :2]}, r"sample 1: triangle cells must be an \(M, 3\) array"),
            ({**good, "outputs": good["outputs"][:, :1]}, r"'outputs' has shape \(7, 1\) .* expected \(7, 2\)"),
            ({**good, "points": np.hstack([good["points"], good["points"][:, :1]])},
             r"sample 1 has 3-d points, but the file stores dim=2"),
            ({**good, "inputs": np.full((7, 1), np.nan)}, "sample 1: 'inputs' contains NaN or Inf"),
            ({**good, "outputs": good["outputs"] * 1e300}, "too large for float32"),
            ({**good, "points": good["points"] * np.inf}, "NaN or Inf coordinates"),
        ]
        for bad, message in cases:
            with pytest.raises(DataError, match=message) as info:
                w.append([good, bad])  # the good first sample is not written either
            assert "\n" not in str(info.value)
            assert w.n_done == 0
        with pytest.raises(DataError, match="takes a list of sample dicts"):
            w.append(good)
        w.append([good, mesh_sample(1)])
        with pytest.raises(DataError, match="2 more samples would exceed n_samples=3"):
            w.append([good, good])
        assert w.n_done == 2
        w.append([mesh_sample(2)])
    got = read_ragged(tmp_path / "m.h5")
    np.testing.assert_array_equal(got[1]["cells"], mesh_sample(1)["cells"])


@pytest.mark.parametrize("change, message", [
    ({"geometry": "grid"}, "writes geometry 'mesh' or 'points', not 'grid'.*DatasetWriter"),
    ({"cell_type": None}, "a mesh needs cell_type, one of line, triangle"),
    ({"cell_type": "tetra"}, "tetra cells need dim >= 3, got dim=2"),
    ({"dim": 0}, "dim must be a whole number >= 1"),
    ({"channels": {}}, "channels must be a non-empty dict"),
    ({"channels": {"points": 1}}, "channel group name 'points' is not allowed"),
    ({"channels": {"inputs": 0}}, "channel group 'inputs' has 0 channels"),
    ({"extra": {"inputs": np.zeros(2)}}, r"dataset name\(s\) \['inputs'\] appear in both"),
    ({"n": 0}, "n_samples must be at least 1"),
])
def test_ragged_writer_settings_checks(tmp_path, change, message):
    with pytest.raises(DataError, match=message):
        ragged_writer(tmp_path / "m.h5", **change)
    with pytest.raises(DataError, match="point clouds have no cells"):
        ragged_writer(tmp_path / "p.h5", "points", cell_type="line")
    assert not partial_path(tmp_path / "m.h5").exists()


def test_ragged_extra_arrays_kept_and_checked_on_resume(tmp_path):
    path, times = tmp_path / "m.h5", np.linspace(0.0, 1.0, 4)
    with ragged_writer(path, n=2, extra={"times": times}) as w:
        w.append([mesh_sample(0)])
    with pytest.raises(DataError, match="dataset 'times' differs"):
        ragged_writer(path, n=2, resume=True, extra={"times": times * 2})
    with ragged_writer(path, n=2, resume=True, extra={"times": times}) as w:
        w.append([mesh_sample(1)])
    arrays, _ = raw(path)
    assert arrays["times"].dtype == np.float64
    np.testing.assert_array_equal(arrays["times"], times)
    assert "times" in describe(path)


def _read_in_child(reader, queue):
    queue.put(reader.sample(4)["outputs"].tolist())


def test_reader_survives_fork(tmp_path):
    path = write_ragged(tmp_path / "m.h5")
    reader = RaggedReader(path)
    first = reader.sample(0)  # opens the parent's handle
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(reader, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(np.array(got, np.float32), mesh_sample(4)["outputs"].astype(np.float32))
    np.testing.assert_array_equal(reader.sample(0)["points"], first["points"])
    reader.close()


# -- damaged files -----------------------------------------------------------------------

def overwrite(path, start, stop, byte=b"\xff"):
    content = bytearray(path.read_bytes())
    assert content[:8] == b"\x89HDF\r\n\x1a\n"
    content[start:stop] = byte * (stop - start)
    assert content[:8] == b"\x89HDF\r\n\x1a\n"  # the signature stays: h5py gets past it
    path.write_bytes(bytes(content))


def assert_damaged(path, *readers, match="damaged"):
    for read in readers:
        with pytest.raises(DataError, match=match) as info:
            read(path)
        assert "\n" not in str(info.value) and "regenerate it" in str(info.value)


def test_truncated_files(tmp_path, capsys):
    ragged = write_ragged(tmp_path / "m.h5")
    grid = tmp_path / "g.h5"
    with grid_writer(grid, 4) as w:
        w.append(grid_batch(4))
    old = tmp_path / "old.h5"
    write_v1(old)
    for path in (ragged, grid, old):
        content = path.read_bytes()
        path.write_bytes(content[:len(content) // 2])
    assert_damaged(ragged, RaggedReader, read_ragged, describe, read_attributes,
                   match=r"is damaged or truncated \(.*truncated file.*\); regenerate it")
    assert_damaged(grid, read_dataset, describe, open_dataset, match="damaged or truncated")
    assert_damaged(old, read_dataset, describe, match="damaged or truncated")
    assert main(["info", str(ragged)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "truncated" in err and "\n" not in err


def test_garbled_offsets(tmp_path):
    path = write_ragged(tmp_path / "m.h5")
    with h5py.File(path, "r") as f:
        start = f["point_offsets"].id.get_offset()
    overwrite(path, start + 8, start + 24)  # point_offsets[1:3] become -1
    assert_damaged(path, RaggedReader, read_ragged, describe,
                   match=r"is damaged \('point_offsets' do not rise from 0 by at least one row per sample\)")


def test_garbled_dataset_header(tmp_path):
    path = write_ragged(tmp_path / "m.h5")
    with h5py.File(path, "r") as f:
        header = h5py.h5o.get_info(f["points"].id).addr
    overwrite(path, header, header + 48)
    assert_damaged(path, RaggedReader, read_ragged, describe, match="damaged or truncated")


def test_garbled_values(tmp_path):
    path = write_ragged(tmp_path / "m.h5")
    with h5py.File(path, "r") as f:
        start = f["points"].id.get_chunk_info(0).byte_offset  # the first chunk holds every point
    overwrite(path, start + 16 * 8, start + 16 * 9)  # the coordinates of point 8 (in sample 1) become NaN
    assert_damaged(path, read_ragged, match=r"damaged \(sample 1: 'points' contains NaN or Inf\)")
    with RaggedReader(path) as reader:
        reader.sample(0)  # the other samples still read
        with pytest.raises(DataError, match="sample 1: 'points' contains NaN"):
            reader.sample(1)
    assert "NON-FINITE=2" in describe(path)  # a summary shows the damage rather than failing
