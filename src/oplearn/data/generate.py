"""Generate a dataset by solving a PDE for many random inputs.

Sample ``i`` depends only on ``(seed, i)``, so samples can be solved in any
batches, in parallel processes or on a GPU, and an interrupted file resumes
to exactly what an uninterrupted run writes (with the same ``batch``).

Grid PDEs are written by :class:`~oplearn.data.writer.DatasetWriter`; mesh PDEs
(``geometry = "mesh"``, see :mod:`oplearn.data.pdes`) one sample at a time
through :class:`~oplearn.data.ragged.RaggedDatasetWriter`, with each sample's
random draw in the per-sample dataset ``draws``.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from oplearn.data.pdes import get_pde
from oplearn.devices import resolve_device
from oplearn.data.ragged import RaggedDatasetWriter
from oplearn.data.writer import DatasetWriter
from oplearn.errors import ConfigError


WRITE_GROUP = 64  # samples per append (rounded up to whole batches)
MESH_WRITE_GROUP = 8  # mesh samples per append (each takes a fraction of a second to solve)


def _solve(pde, seed: int, resolution: int, device: str, indices: range) -> dict[str, np.ndarray]:
    return pde.solve_batch(seed, indices, resolution, device)


def _draw_inputs(pde, seed: int, resolution: int, indices: range) -> dict[str, np.ndarray]:
    return pde.draw_inputs(seed, indices, resolution)


def _solve_meshes(pde, seed: int, resolution: int, indices: range) -> list[dict]:
    """Mesh samples ``indices`` as the ragged writer takes them (the protocol's ``draw`` stored as ``draws``)."""
    samples = [pde.solve_sample(seed, i, resolution) for i in indices]
    return [{**{k: v for k, v in s.items() if k != "draw"}, "draws": int(s["draw"])} for s in samples]


def _worker_start(parent: int):
    """In each solver process: one thread (the processes share the cores), and death with the parent."""
    torch.set_num_threads(1)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """End this process when ``parent`` ends, even by SIGKILL: the kernel's parent-death signal on Linux,
    and everywhere a watcher thread that polls the parent's pid."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def generate(
    pde: str,
    n: int,
    resolution: int,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    params: dict | None = None,
    device: str = "cpu",
    batch: int = 1,
    workers: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    inputs_only: bool = False,
) -> Path | dict[str, np.ndarray]:
    """Solve ``pde`` for ``n`` random inputs on a ``resolution`` grid.

    ``batch`` samples are solved together (one batched solve on ``device``);
    on the CPU, ``workers`` processes solve batches in parallel (default: all
    cores; one process on a GPU). With ``out`` the samples are written to an
    HDF5 file batch by batch (see :mod:`oplearn.data.store`) and its path is
    returned; without, a dict of arrays (``inputs``/``outputs`` ``(n, C, *S)``
    or ``trajectories`` ``(n, T, C, *S)`` and ``times``) is returned.

    Mesh PDEs (``geometry = "mesh"``): ``resolution`` is the mesh's fineness in
    the PDE's unit (see :mod:`oplearn.data.pdes`), samples are solved on the CPU one by one (``batch`` per
    task of a worker), written to a mesh file with their ``draws``, or returned
    as a list of sample dicts (``points``, ``cells``, channel groups, ``draws``).

    ``inputs_only``: draw the inputs without solving (PDEs with ``draw_inputs``, e.g. darcy), for data-free
    physics-informed training; the file has no ``outputs`` and records their channels (``output_channels``).
    """
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    device = str(resolve_device(device))
    problem = get_pde(pde, **(params or {}))
    if inputs_only and not hasattr(problem, "draw_inputs"):
        raise ConfigError(f"{pde} cannot draw its inputs without solving (--inputs-only takes darcy); leave out "
                          "--inputs-only, or train data-free from a solved file with data.train.targets: false")
    if getattr(problem, "geometry", "grid") == "mesh":
        return _generate_meshes(problem, n, resolution, seed=seed, out=out, batch=batch,
                                workers=workers or os.cpu_count() or 1, overwrite=overwrite, resume=resume,
                                progress=progress)
    shapes, extra = problem.shapes(resolution), problem.extra(resolution)
    workers = 1 if torch.device(device).type != "cpu" else (workers or os.cpu_count() or 1)
    solve = partial(_solve, problem, seed, resolution, device)
    output_channels = None
    if inputs_only:
        output_channels = shapes.pop("outputs")[0]
        solve = partial(_draw_inputs, problem, seed, resolution)

    if out is None:
        arrays = {name: np.empty((n, *shape), np.float32) for name, shape in shapes.items()}
        for start, solved in _solve_all(solve, 0, n, batch, workers, progress, pde):
            for name, value in solved.items():
                arrays[name][start:start + len(value)] = value
        return {**arrays, **extra}

    with DatasetWriter(out, pde=problem.name, params=problem.model_dump(mode="json"), seed=seed, n_samples=n,
                       shapes=shapes, extra=extra, overwrite=overwrite, resume=resume,
                       grid_location=getattr(problem, "grid_location", "nodes"), output_channels=output_channels) \
            as writer:
        pending: list[dict[str, np.ndarray]] = []
        for _, solved in _solve_all(solve, writer.n_done, n, batch, workers, progress, pde):
            pending.append(solved)  # written in groups of whole batches, so n_done stays batch-aligned
            if sum(len(p[next(iter(shapes))]) for p in pending) >= WRITE_GROUP:
                writer.append(_concatenate(pending))
                pending = []
        if pending:
            writer.append(_concatenate(pending))
    return Path(out)


def _generate_meshes(problem, n: int, resolution: int, *, seed: int, out, batch: int, workers: int,
                     overwrite: bool, resume: bool, progress: bool) -> Path | list[dict]:
    """:func:`generate` for a mesh PDE. A fresh run solves sample 0 here first, so a bad resolution or a
    failing solver is reported before any file is made."""
    solve = partial(_solve_meshes, problem, seed, resolution)
    first = [] if resume else solve(range(0, 1))
    if out is None:
        rest = _solve_all(solve, 1, n, batch, workers, progress, problem.name)
        return first + [sample for _, solved in rest for sample in solved]

    with RaggedDatasetWriter(out, pde=problem.name, params=problem.model_dump(mode="json"), seed=seed, n_samples=n,
                             geometry="mesh", channels=problem.channels, dim=problem.dim,
                             cell_type=problem.cell_type, overwrite=overwrite, resume=resume,
                             per_sample=("draws",)) as writer:
        start = writer.n_done
        pending = first if start == 0 else []
        for _, solved in _solve_all(solve, start + len(pending), n, batch, workers, progress, problem.name):
            pending += solved
            if len(pending) >= MESH_WRITE_GROUP:
                writer.append(pending)
                pending = []
        if pending:
            writer.append(pending)
    return Path(out)


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _process_context():
    """fork where it is safe (no CUDA in this process; Linux), else spawn."""
    if "fork" in multiprocessing.get_all_start_methods() and not torch.cuda.is_initialized():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _solve_all(solve, start: int, stop: int, batch: int, workers: int, progress: bool, label: str):
    """Yield ``(first index, solved batch)`` in index order, from a process pool when workers > 1."""
    batches = [range(i, min(i + batch, stop)) for i in range(start, stop, batch)]
    bar = tqdm(total=stop, initial=start, unit="sample", desc=f"generate {label}", disable=not progress,
               dynamic_ncols=True)
    try:
        if workers <= 1 or len(batches) <= 1:
            for indices in batches:
                yield indices.start, solve(indices)
                bar.update(len(indices))
            return
        pool = ProcessPoolExecutor(min(workers, len(batches)), mp_context=_process_context(),
                                   initializer=_worker_start, initargs=(os.getpid(),))
        try:
            chunksize = max(1, len(batches) // (16 * workers))
            for indices, solved in zip(batches, pool.map(solve, batches, chunksize=chunksize)):
                yield indices.start, solved
                bar.update(len(indices))
        except BaseException:  # Ctrl-C, a failed write: drop the queued work instead of finishing it
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    finally:
        bar.close()
