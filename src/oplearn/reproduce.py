"""``oplearn reproduce ROW``: one row of the FNO paper's table (Li et al., ICLR 2021), from scratch.

Loads the packaged config ``configs/paper/ROW.yaml``, generates its data if missing,
trains, evaluates on the test set and on every zero-shot resolution, and writes

- ``OUT/paper_row.json``: error, paper error, zero-shot errors, parameters, seconds per
  epoch, wall time of training and evaluation (data generation excluded; summed over the
  epochs, so a run continued with ``--resume`` counts no downtime), hardware, the
  commit the run started from (machine-readable);
- ``OUT/figures/zero_shot.png``: test error against grid size, when the row has zero-shot sets;
- a line in the "FNO paper table" section of a results file (``benchmarks/RESULTS.md``),
  replacing the line of an earlier run of the same row and model.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import torch
import yaml

from oplearn.data.sources import load_source
from oplearn.errors import ConfigError
from oplearn.files import write_atomic
from oplearn.plot import plot_resolution_errors
from oplearn.train import fit
from oplearn.train.config import Config, apply_overrides, validate
from oplearn.train.evaluation import evaluate_run
from oplearn.train.run_dir import RunDir

# Relative L2 test errors of the FNO in the paper (Tables 1-4 and Figure 1's setting); burgers_256 is the
# Burgers setting trained at s = 256 and tested zero-shot up to 8192 (the paper's error is flat in s).
PAPER_ERRORS = {"burgers": 0.0018, "burgers_256": 0.0018, "darcy": 0.0108,
                "ns_1e-3_fno2d": 0.0128, "ns_1e-3_fno3d": 0.0086, "ns_1e-4_fno2d": 0.1559, "ns_1e-4_fno3d": 0.1918,
                "ns_1e-5_fno2d": 0.1556, "ns_1e-5_fno3d": 0.1893}
TABLE_HEADING = "## FNO paper table (`oplearn reproduce ROW`, `benchmarks/paper_table.py`)"
TABLE_HEADER = ("| row | model | paper | test rel. L2 | zero-shot rel. L2 | parameters | epochs | s / epoch | "
                "wall time | hardware | date | commit |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | "
                "--- | --- |")


def paper_rows() -> list[str]:
    return sorted(PAPER_ERRORS)


def paper_config(row: str, overrides: list[str] = ()) -> Config:
    """The packaged config of a paper row, with ``--set`` style overrides applied."""
    if row not in PAPER_ERRORS:
        raise ConfigError(f"unknown paper row '{row}'; choose one of: {', '.join(paper_rows())}")
    raw = yaml.safe_load(resources.files("oplearn.configs").joinpath(f"paper/{row}.yaml").read_text())
    return validate(apply_overrides(raw, list(overrides)))


def device_name(device: torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU model (from /proc/cpuinfo where there is one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.machine()


def hardware() -> str:
    """What a run ran on: the GPU when there is one, else the CPU model and torch's thread count."""
    if torch.cuda.is_available():
        return device_name(torch.device("cuda"))
    return f"{device_name(torch.device('cpu'))}, {torch.get_num_threads()} threads"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def training_seconds(metrics: list[dict]) -> float:
    """Training plus per-epoch test time summed over the epochs of ``metrics.jsonl``: a resumed run's wall time
    without the interruption (both libraries are timed this way)."""
    return sum(m["epoch_seconds"] + m.get("test_seconds", 0.0) for m in metrics)


def prepare_data(config: Config, progress: bool = True) -> None:
    """Open every data source of a row (train, test, ``data.extra_tests``), generating the missing ones, so
    that no timed run includes data generation."""
    for name, source in {"train": config.data.train, "test": config.data.test, **config.data.extra_tests}.items():
        load_source(source, name, progress=progress)


def reproduce(row: str, out: Path | None = None, overrides: list[str] = (), results_file: Path | None = None,
              resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Train and evaluate one paper row; returns the summary written to ``OUT/paper_row.json``."""
    config = paper_config(row, overrides)
    out = Path(out or Path("runs") / "paper" / row)
    revision = commit()
    prepare_data(config, progress)
    fit(config, out, resume=resume, overwrite=overwrite, progress=progress)
    started = time.perf_counter()
    results = evaluate_run(out)
    run = RunDir(out)
    metrics = run.read_metrics()
    wall = training_seconds(metrics) + time.perf_counter() - started
    summary = {
        "row": row, "model": "oplearn FNO", "paper_rel_l2": PAPER_ERRORS[row],
        "test_rel_l2": results["test"]["rel_l2"], "resolution": results["test"]["resolution"],
        "zero_shot": {name: {"resolution": entry["resolution"], "rel_l2": entry["rel_l2"]}
                      for name, entry in results.items() if name != "test"},
        "parameters": run.read_results()["parameters"],
        "epochs": config.train.epochs, "seconds_per_epoch": statistics.median(m["epoch_seconds"] for m in metrics),
        "wall_seconds": wall, "hardware": hardware(), "date": f"{datetime.now(timezone.utc):%Y-%m-%d}",
        "commit": revision, "overrides": list(overrides),
    }
    if summary["zero_shot"]:
        points = [(results["test"]["resolution"][0], summary["test_rel_l2"])]
        points += [(entry["resolution"][0], entry["rel_l2"]) for entry in summary["zero_shot"].values()]
        plot_resolution_errors(points, run.figure("zero_shot"),
                               title=f"{row}: trained at {points[0][0]}, tested zero-shot on finer grids")
    write_atomic(out / "paper_row.json", json.dumps(summary, indent=2))
    if results_file is not None:
        record_row(results_file, summary)
    return summary


def _label(summary: dict) -> str:
    """The first two cells: row (with any overrides) and model; one table line per label."""
    settings = f" ({', '.join(summary['overrides'])})" if summary.get("overrides") else ""
    return f"| {summary['row']}{settings} | {summary['model']} |"


def table_line(summary: dict) -> str:
    """One markdown table line of a summary (ours or a competitor's, same keys)."""
    zero_shot = ", ".join(f"{entry['resolution'][0]}: {entry['rel_l2']:.4f}" for entry in summary["zero_shot"].values())
    return (f"{_label(summary)} {summary['paper_rel_l2']} | "
            f"{summary['test_rel_l2']:.4f} | {zero_shot or '-'} | {summary['parameters']:,} | {summary['epochs']} | "
            f"{summary['seconds_per_epoch']:.2f} | {summary['wall_seconds'] / 60:.1f} min | {summary['hardware']} | "
            f"{summary['date']} | {summary['commit']} |")


def record_row(results_file: Path, summary: dict) -> None:
    """Put a summary's line in the results file's paper table, replacing the line of the same row and model."""
    results_file = Path(results_file)
    text = results_file.read_text() if results_file.exists() else "# Measured results\n"
    key = _label(summary)
    if TABLE_HEADING not in text:
        text = text.rstrip("\n") + f"\n\n{TABLE_HEADING}\n\n{TABLE_HEADER}\n"
    head, _, rest = text.partition(TABLE_HEADING)
    section, separator, tail = rest.partition("\n## ")
    if "\n| --- |" not in section:  # a heading without its table: put the table under it
        section = f"\n\n{TABLE_HEADER}\n" + section.lstrip("\n")
    lines = [existing for existing in section.split("\n") if not existing.startswith(key)]
    table_end = max(i for i, existing in enumerate(lines) if existing.startswith("|")) + 1
    lines.insert(table_end, table_line(summary))
    results_file.write_text(head + TABLE_HEADING + "\n".join(lines) + separator + tail)
