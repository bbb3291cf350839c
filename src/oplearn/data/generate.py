"""Generate a dataset by solving a PDE for many random inputs.

Sample ``i`` depends only on ``(seed, i)``, so samples can be solved in any
order, in parallel processes, and an interrupted file can be resumed to the
exact same result as an uninterrupted run.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from oplearn.data.pdes import get_pde
from oplearn.data.store import DatasetWriter
from oplearn.errors import ConfigError


def _solve_one(pde, seed: int, resolution: int, index: int) -> dict[str, np.ndarray]:
    return pde.sample(seed, index, resolution)


def _single_thread():
    torch.set_num_threads(1)  # one solve per process; the processes share the cores


def generate(
    pde: str,
    n: int,
    resolution: int,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    params: dict | None = None,
    workers: int | None = None,
    chunk: int = 64,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> Path | dict[str, np.ndarray]:
    """Solve ``pde`` for ``n`` random inputs on a ``resolution`` grid.

    With ``out`` the samples are written to an HDF5 file in chunks (see
    :mod:`oplearn.data.store`) and its path is returned; without, a dict of
    arrays (``inputs``/``outputs`` of shape ``(n, C, *S)``) is returned.
    ``workers`` processes solve in parallel (default: all cores).
    """
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    problem = get_pde(pde, **(params or {}))
    shapes = problem.shapes(resolution)
    workers = workers or os.cpu_count() or 1
    solve = partial(_solve_one, problem, seed, resolution)

    if out is None:
        arrays = {name: np.empty((n, *shape), np.float32) for name, shape in shapes.items()}
        for index, sample in enumerate(_solve_all(solve, range(n), workers, chunk, progress, pde)):
            for name, value in sample.items():
                arrays[name][index] = value
        return arrays

    settings = problem.model_dump(mode="json")
    with DatasetWriter(out, pde=problem.name, params=settings, seed=seed, n_samples=n, shapes=shapes,
                       overwrite=overwrite, resume=resume) as writer:
        pending: list[dict[str, np.ndarray]] = []
        start = writer.n_done
        for sample in _solve_all(solve, range(start, n), workers, chunk, progress, pde, initial=start, total=n):
            pending.append(sample)
            if len(pending) == chunk:
                writer.append(_stack(pending))
                pending = []
        if pending:
            writer.append(_stack(pending))
    return Path(out)


def _stack(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.stack([s[name] for s in samples]) for name in samples[0]}


def _process_context():
    """fork where it is safe (no CUDA in this process; Linux), else spawn."""
    if "fork" in multiprocessing.get_all_start_methods() and not torch.cuda.is_initialized():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _solve_all(solve, indices, workers, chunk, progress, label, initial=0, total=None):
    """Yield solved samples in index order, from a process pool when workers > 1."""
    bar = tqdm(total=total if total is not None else len(indices), initial=initial, unit="sample",
               desc=f"generate {label}", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(indices) <= 1:
            threads = torch.get_num_threads()
            _single_thread()  # small solves: thread start-up costs more than it saves
            try:
                for index in indices:
                    yield solve(index)
                    bar.update()
            finally:
                torch.set_num_threads(threads)
            return
        context = _process_context()
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_thread) as pool:
            for sample in pool.map(solve, indices, chunksize=max(1, min(chunk, len(indices) // (4 * workers)))):
                yield sample
                bar.update()
    finally:
        bar.close()
