"""The run directory: the one place that knows its file names.

    RUN/config.yaml                   the resolved config
    RUN/metrics.jsonl                 one JSON line per epoch
    RUN/checkpoints/last.safetensors  weights, optimizer, normalizers (every epoch)
    RUN/results.json                  final errors
    RUN/figures/NAME.png              figures
    RUN/eval/NAME.json                ``oplearn eval`` results
    RUN/report.md                     the quickstart's report
"""

from __future__ import annotations

import json
from pathlib import Path

from oplearn.errors import DataError
from oplearn.files import write_atomic


class RunDir:
    NAMES = ("config.yaml", "metrics.jsonl", "checkpoints", "results.json", "figures", "eval", "report.md")
    """Everything a run directory may hold."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.safetensors"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    def figure(self, name: str) -> Path:
        return self.path / "figures" / f"{name}.png"

    def evaluation(self, name: str) -> Path:
        return self.path / "eval" / f"{name}.json"

    def holds_only_run_files(self) -> bool:
        """Whether every entry is one a run writes (so a directory without a checkpoint may start again)."""
        return all(entry.name in self.NAMES for entry in self.path.iterdir())

    def check_trained(self) -> None:
        """Raise a DataError unless this is a run directory with a checkpoint."""
        if not self.config.is_file():
            raise DataError(f"{self.path} is not a run directory (no config.yaml); pass the --out of `oplearn train`")
        if not self.checkpoint.is_file():
            raise DataError(f"{self.path} has no checkpoint ({self.checkpoint.relative_to(self.path)}); train it first")

    def read_metrics(self) -> list[dict]:
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def append_metrics(self, metrics: dict) -> None:
        with open(self.metrics, "a") as handle:
            handle.write(json.dumps(metrics) + "\n")

    def read_results(self) -> dict:
        return json.loads(self.results.read_text())

    def write_results(self, results: dict) -> None:
        write_atomic(self.results, json.dumps(results, indent=2))
