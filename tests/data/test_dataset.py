"""FieldDataset: lazy HDF5 reading equals loading the file, trajectories become pairs, normalizers."""

import copy
import pickle

import numpy as np
import pytest
import torch

from oplearn.data.dataset import ChannelNormalizer, FieldDataset
from oplearn.data.formats import convert
from oplearn.data.writer import DatasetWriter
from oplearn.errors import DataError
from oplearn.train import fit
from oplearn.train.checkpoint import Checkpoint


@pytest.fixture
def trajectory_file(tmp_path):
    """7 trajectories of 5 snapshots, 2 channels, 6x4 grid; every value encodes its position."""
    values = np.arange(7 * 5 * 2 * 6 * 4, dtype=np.float32).reshape(7, 5, 2, 6, 4)
    path = tmp_path / "trajectories.h5"
    with DatasetWriter(path, pde="test", params={}, seed=0, n_samples=7, shapes={"trajectories": (5, 2, 6, 4)},
                       extra={"times": np.linspace(0, 1, 5)}) as writer:
        writer.append({"trajectories": values})
    return path, values


def test_lazy_reading_equals_loading_whole(darcy_files):
    lazy = FieldDataset.open(darcy_files["train"], in_memory=False)
    whole = FieldDataset.open(darcy_files["train"])
    assert not lazy.in_memory and whole.in_memory
    assert len(lazy) == len(whole) == 24 and lazy.channels == (1, 1) and lazy.resolution == (16, 16)
    indices = [5, 2, 2, 17, 0]  # unsorted, repeated: h5py alone would refuse this selection
    got_batch, expected_batch = lazy.batch(indices), whole.batch(indices)
    for got, expected in ((got_batch.inputs, expected_batch.inputs), (got_batch.targets, expected_batch.targets)):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # A pickled copy (as sent to a spawned worker) opens its own handle and reads the same.
    copied = pickle.loads(pickle.dumps(lazy))
    torch.testing.assert_close(copied.batch([3]).targets, whole.batch([3]).targets, rtol=0, atol=0)


def test_trajectories_become_pairs_of_chosen_steps(trajectory_file):
    path, values = trajectory_file
    for in_memory in (True, False):
        data = FieldDataset.open(path, n=6, input_steps=[0, 1], output_steps=[-1], in_memory=in_memory)
        assert len(data) == 6 and data.channels == (4, 2) and data.resolution == (6, 4)
        batch = data.batch([4, 1])
        inputs, outputs = batch.inputs, batch.targets
        expected_in = np.concatenate([values[[4, 1], 0], values[[4, 1], 1]], axis=1)
        np.testing.assert_array_equal(inputs.numpy(), expected_in)
        np.testing.assert_array_equal(outputs.numpy(), values[[4, 1], 4])


def test_bad_selections_are_one_line_errors(trajectory_file):
    path, _ = trajectory_file
    with pytest.raises(DataError, match="output_steps"):
        FieldDataset.open(path, output_steps=[5])
    with pytest.raises(DataError, match="7 samples but 9"):
        FieldDataset.open(path, n=9, in_memory=False)


def test_streaming_normalizer_matches_the_whole_array_statistics():
    data = torch.randn(10, 3, 8, 8, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1) + 7
    streamed = ChannelNormalizer.fit_batches(data[i:i + 3] for i in range(0, 10, 3))
    dims = (0, 2, 3)
    torch.testing.assert_close(streamed.mean, data.mean(dims).float())
    torch.testing.assert_close(streamed.std, data.std(dims).float())
    torch.testing.assert_close(streamed.decode(streamed.encode(data.float())), data.float())


def test_training_from_disk_equals_training_from_memory(small_config, tmp_path):
    runs = {}
    for in_memory in (True, False):
        config = copy.deepcopy(small_config)
        config["train"]["epochs"] = 2
        for split in ("train", "test"):
            config["data"][split]["in_memory"] = in_memory
        fit(config, tmp_path / str(in_memory), progress=False)
        runs[in_memory] = Checkpoint(tmp_path / str(in_memory) / "checkpoints" / "last.safetensors").tensors
    assert runs[True].keys() == runs[False].keys()
    for key in runs[True]:
        torch.testing.assert_close(runs[True][key], runs[False][key], rtol=0, atol=0)


@pytest.mark.parametrize("location, spacing", [("nodes", (1 / 5, 1 / 3)), ("cells", (1 / 6, 1 / 4))])
def test_batches_carry_the_grid_spacing_the_file_records(tmp_path, location, spacing):
    path = tmp_path / f"{location}.h5"
    with DatasetWriter(path, pde="test", params={}, seed=0, n_samples=2, grid_location=location,
                       shapes={"inputs": (1, 6, 4), "outputs": (1, 6, 4)}) as writer:
        writer.append({"inputs": np.ones((2, 1, 6, 4)), "outputs": np.ones((2, 1, 6, 4))})
    for in_memory in (True, False):
        data = FieldDataset.open(path, in_memory=in_memory)
        assert data.location == location and data.batch([1]).spacing == pytest.approx(spacing)
    assert FieldDataset.open(convert(path, tmp_path / "converted.h5")).location == location  # kept by convert
