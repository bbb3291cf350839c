"""Where a run's data come from: a config's data source -> a dataset, generating the file when it is missing.

:func:`open_data` opens any file we read as the dataset its geometry calls
for (a :class:`~oplearn.data.dataset.FieldDataset` on grids, a
:class:`~oplearn.data.point_dataset.PointDataset` on meshes and point
clouds); :func:`load_source` adds generation of missing files and the check
that an existing file was generated with the settings the config asks for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from oplearn.data.dataset import FieldDataset
from oplearn.data.generate import generate
from oplearn.data.pdes import get_pde
from oplearn.data.point_dataset import PointDataset
from oplearn.data.store import is_oplearn_file, read_attributes
from oplearn.data.writer import differing_settings, params_json
from oplearn.errors import DataError


def open_data(path: str | Path, name: str | None = None, n: int | None = None, input_steps=(0,),
              output_steps=(-1,), in_memory: bool | None = None) -> FieldDataset | PointDataset:
    """The dataset in ``path``: grid files (any format) as FieldDataset, format-v2 mesh/point files as
    PointDataset (read on demand)."""
    path, name = Path(path), name or str(path)
    if is_oplearn_file(path):
        attributes = read_attributes(path)
        kind = attributes.get("geometry", "grid")
        if kind != "grid":
            from oplearn.data.ragged import RaggedReader

            return PointDataset(RaggedReader(path), kind, name, n, attributes.get("pde"), attributes.get("params"))
    return FieldDataset.open(path, name, n, input_steps, output_steps, in_memory)


def load_source(source, name: str, progress: bool = False, is_main: bool = True,
                barrier: Callable[[], None] | None = None) -> FieldDataset | PointDataset:
    """Open a config's data source (``oplearn.train.config.DataSource``), generating the file first when it is
    missing and a PDE is given. Under data parallelism only the main process (``is_main``) generates; every
    process then waits at ``barrier``."""
    path = Path(source.path)
    if not path.exists():
        if source.pde is None:
            raise DataError(f"{name} data {path} does not exist; fix the path or give pde, n and resolution "
                            "to generate it")
        if is_main:
            generate(source.pde, source.n, source.resolution, seed=source.seed, out=path, params=source.params,
                     resume=True, progress=progress)
        if barrier is not None:
            barrier()
    elif source.pde is not None:
        _check_generated_as_configured(path, source)
    dataset = open_data(path, f"{name} data {path}", source.n, source.input_steps, source.output_steps,
                        source.in_memory)
    if dataset.kind == "grid" and source.resolution is not None and any(
            n != source.resolution for n in dataset.resolution):
        raise DataError(f"{path} has grid {dataset.resolution}, but resolution {source.resolution} was asked for; "
                        "delete the file to regenerate it or fix the config")
    has_targets = getattr(dataset, "has_targets", True)  # False: an inputs-only grid file
    if not has_targets and name != "train":
        raise DataError(f"{name} data {path} holds inputs only (generated with --inputs-only); scoring needs the "
                        "solutions: give a solved file")
    dataset.targets = getattr(source, "targets", True) and has_targets
    labelled = getattr(source, "labelled", None)
    if labelled is not None and not dataset.targets:
        raise DataError(f"{name} data {path} holds inputs only, so none of its samples is labelled; drop labelled "
                        "or give a solved file")
    if labelled is not None and labelled > len(dataset):
        raise DataError(f"{name} data {path}: labelled {labelled} exceeds its {len(dataset)} samples; lower labelled")
    if getattr(source, "labelled_per_batch", None) is not None and labelled == len(dataset):
        raise DataError(f"{name} data {path}: all {labelled} samples are labelled, so labelled_per_batch has no "
                        "unlabelled samples to fill its batches with; drop labelled_per_batch")
    dataset.labelled = labelled
    return dataset


def check_like_training(label: str, data, channels, kind: str = "grid", shape=None) -> None:
    """Refuse data whose geometry, channels or grid dimension differ from the training data's.

    ``channels`` ``(in, out)``, ``kind`` and ``shape`` (the training grid, or None when unknown) describe
    the training data; ``label`` names the file in the message.
    """
    if data.kind != kind:
        raise DataError(f"{label} holds {data.kind} data, but the model was trained on {kind} data")
    if tuple(data.channels) != tuple(channels):
        raise DataError(f"{label} has {data.channels[0]} input and {data.channels[1]} output channels; the model "
                        f"takes {channels[0]} and gives {channels[1]}: use data made like the training data")
    if kind == "grid" and shape is not None and len(data.shape) != len(shape):
        raise DataError(f"{label} has grid {tuple(data.shape)} ({len(data.shape)}-D); the model was trained on "
                        f"{len(shape)}-D grids {tuple(shape)}")


def _check_generated_as_configured(path: Path, source) -> None:
    """An existing file that ``source`` would generate must hold what ``source`` describes.

    Catches files left from other settings or from an older generator (whose
    parameters differ once defaults are filled in). Converted files are not checked.
    """
    if not is_oplearn_file(path):
        return
    stored = read_attributes(path)
    problem = get_pde(source.pde, **source.params)
    if stored.get("pde") != problem.name or "source" in stored["params"]:
        return
    wanted = {"params": json.loads(params_json(problem.model_dump(mode="json"))),  # as the generator stores them
              "seed": source.seed}
    differences = differing_settings({"params": stored["params"], "seed": stored.get("seed")}, wanted, "config")
    if differences:
        raise DataError(f"{path} was generated with {', '.join(differences)}; "
                        "delete the file to regenerate it, or fix the config")
