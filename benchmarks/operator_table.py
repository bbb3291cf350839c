"""What the operator benchmarks (grid_operators.py, mesh_operators.py) share: one process per (model, seed),
resumable rows, and the table.

A benchmark script calls :func:`run_rows` with its own file and command line; each missing (label, seed) is
run as ``SCRIPT ARGS --single LABEL --seed S``, where the script trains that one model by
:func:`train_row`, which prints the row as JSON on its last line. Rows go to a JSON-lines file as they
finish, so an interrupted benchmark resumes where it stopped. A process per run makes its peak resident
memory (ru_maxrss) its own.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def train_row(config: dict, label: str, out: Path, threads: int, device: str) -> None:
    """Train ``config`` in this process into ``out`` and print its row as JSON: model, seed, parameters,
    seconds (the whole fit), seconds_per_epoch (median over epochs), test_rel_l2 (evaluate_run, the
    reloaded checkpoint) and peak_memory_mb (this process's ru_maxrss)."""
    import torch

    from oplearn.train import fit
    from oplearn.train.evaluation import evaluate_run
    from oplearn.train.run_dir import RunDir

    torch.set_num_threads(threads)
    started = time.perf_counter()
    fit(config, out, progress=False, overwrite=True)
    seconds = time.perf_counter() - started
    run = RunDir(out)
    metrics = run.read_metrics()
    evaluated = evaluate_run(out, device=device)
    row = {"model": label, "seed": config["seed"], "parameters": run.read_results()["parameters"],
           "seconds": seconds, "seconds_per_epoch": statistics.median(m["epoch_seconds"] for m in metrics),
           "test_rel_l2": evaluated["test"]["rel_l2"],
           "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(row), flush=True)


def run_rows(script: str, argv: list[str], labels: list[str], seeds: list[int], results: Path) -> list[dict]:
    """All rows of ``results`` (JSON lines), after running each (label, seed) not yet in it as
    ``script *argv --single LABEL --seed S`` and appending its row. A failed run is reported on stderr and
    left out (a later call retries it)."""
    results.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    done = {(r["model"], r["seed"]) for r in rows}
    for label in labels:
        for seed in seeds:
            if (label, seed) in done:
                continue
            command = [sys.executable, script, *argv, "--single", label, "--seed", str(seed)]
            finished = subprocess.run(command, capture_output=True, text=True)
            if finished.returncode != 0:
                print(f"{label} seed {seed} failed:\n{finished.stderr[-2000:]}", file=sys.stderr, flush=True)
                continue
            row = json.loads(finished.stdout.strip().splitlines()[-1])
            rows.append(row)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    return rows


def summarize(rows: list[dict], published: dict[str, float | None]) -> str:
    """Markdown table, one line per model in ``rows`` (first-seen order): parameters, mean +- std of the test
    relative L2 over seeds, ``published[model]`` ('-' when missing or None), median s/epoch, peak memory."""
    lines = ["| model | parameters | test rel. L2 (mean +- std) | published | s/epoch | peak memory (MB) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for label in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == label]
        errors = [r["test_rel_l2"] for r in mine]
        spread = statistics.stdev(errors) if len(errors) > 1 else 0.0
        number = published.get(label)
        lines.append(f"| {label} | {mine[0]['parameters']:,} | {statistics.mean(errors):.4f} +- {spread:.4f} "
                     f"({len(errors)} seeds) | {number if number is not None else '-'} | "
                     f"{statistics.median(r['seconds_per_epoch'] for r in mine):.2f} | "
                     f"{max(r['peak_memory_mb'] for r in mine):.0f} |")
    return "\n".join(lines)
