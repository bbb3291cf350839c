"""``oplearn quickstart``: the first run a new user sees, end to end.

Generates Darcy data (32x32 train/test and a 64x64 test set), trains the
``darcy_fno`` preset, evaluates at both resolutions (the 64x64 one zero-shot)
and writes a run directory with figures and ``report.md``.
"""

from __future__ import annotations

import platform
import time
from datetime import datetime
from importlib import resources
from pathlib import Path

import click
import torch
import yaml

from oplearn import __version__
from oplearn.files import write_atomic
from oplearn.plot import plot_training_curve
from oplearn.train import fit
from oplearn.train.config import apply_overrides, validate
from oplearn.train.evaluation import evaluate_run
from oplearn.train.run_dir import RunDir

FAST = ["data.train.n=400", "data.test.n=50", "data.extra_tests.test_64.n=50", "train.epochs=15",
        "model.width=24"]


def preset(name: str = "darcy_fno") -> dict:
    """A packaged YAML config as a dict."""
    return yaml.safe_load(resources.files("oplearn.configs").joinpath(f"{name}.yaml").read_text())


def run_quickstart(fast: bool = False, out: Path | None = None, data_dir: Path = Path("data")) -> dict:
    started = time.perf_counter()
    raw = preset()
    for source in [raw["data"]["train"], raw["data"]["test"], *raw["data"]["extra_tests"].values()]:
        source["path"] = str(data_dir / Path(source["path"]).name)
    if fast:
        raw = apply_overrides(raw, FAST)
        for source in [raw["data"]["train"], raw["data"]["test"], *raw["data"]["extra_tests"].values()]:
            source["path"] = source["path"].replace(".h5", f"_n{source['n']}.h5")
    config = validate(raw)
    out = out or Path("runs") / f"quickstart-{datetime.now():%Y%m%d-%H%M%S}"
    click.echo(f"oplearn {__version__} quickstart{' (fast)' if fast else ''}: Darcy flow, FNO, run directory {out}")

    fit(config, out)
    results = evaluate_run(out)
    run = RunDir(out)
    metrics = run.read_metrics()
    plot_training_curve(metrics, run.figure("training"))
    seconds = time.perf_counter() - started
    _write_report(out, config, results, metrics, seconds, fast)

    for name, entry in results.items():
        click.echo(f"test relative L2 at {entry['resolution'][0]}x{entry['resolution'][1]}: {entry['rel_l2']:.4f}"
                   f"{'  (zero-shot: trained at 32x32)' if name != 'test' else ''}")
    click.echo(f"finished in {seconds:.0f} s; report: {run.report}")
    return results


def _write_report(out: Path, config, results: dict, metrics: list[dict], seconds: float, fast: bool) -> None:
    run, model = RunDir(out), config.model.hyperparameters()
    lines = [
        "# oplearn quickstart: Darcy flow with a Fourier neural operator",
        "",
        "-div(a grad u) = 1 on the unit square, u = 0 on the boundary; a is 12 or 3 by the sign of a Gaussian "
        "random field with covariance (-Laplacian + 9 I)^-2 (the FNO paper's setting).",
        "",
        f"- model: FNO, modes {model.get('modes')}, width {model.get('width')}, {model.get('n_layers')} layers, "
        f"{run.read_results()['parameters']:,} real parameters",
        f"- data: {config.data.train.n} training samples at {config.data.train.resolution}x"
        f"{config.data.train.resolution}, {config.train.epochs} epochs, batch {config.train.batch_size}"
        f"{' (fast mode)' if fast else ''}",
        f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; wall time {seconds:.0f} s "
        f"({sum(m['epoch_seconds'] for m in metrics) / len(metrics):.2f} s per epoch)",
        "",
        "| test set | grid | samples | relative L2 |",
        "| --- | --- | --- | --- |",
    ]
    for name, entry in results.items():
        grid = "x".join(map(str, entry["resolution"]))
        lines.append(f"| {name}{' (zero-shot)' if name != 'test' else ''} | {grid} | {entry['samples']} | "
                     f"{entry['rel_l2']:.4f} |")
    lines += ["", "![training curve](figures/training.png)", ""]
    lines += [f"![{name}](figures/{name}.png)" for name in results]
    write_atomic(run.report, "\n".join(lines) + "\n")
