"""A paper row (``oplearn reproduce ROW``) beside neuraloperator 2.0.0's FNO trained on the same files.

    pip install -e '.[bench]'                                           # neuraloperator==2.0.0
    python benchmarks/paper_table.py burgers                             # ours, then theirs
    python benchmarks/paper_table.py darcy --skip-ours                   # theirs; ours from runs/paper/darcy
    python benchmarks/paper_table.py darcy --resume                      # continue both after an interruption
    python benchmarks/paper_table.py darcy --theirs-only --resume        # theirs alone (beside `oplearn reproduce`)
    python benchmarks/paper_table.py darcy --padding oplearn --skip-ours # theirs with our padding (see below)
    python benchmarks/paper_table.py darcy --set train.epochs=50 --results /tmp/R.md --out /tmp/runs --overwrite
    python benchmarks/paper_table.py ns_1e-3_fno2d                       # on a GPU: recurrent FNO-2D, both

Ours: ``oplearn.reproduce.reproduce(ROW, OUT/ROW, overrides, results)``, or ``OUT/ROW/paper_row.json`` with
``--skip-ours`` (run with the same ``--set``). Theirs: ``OUT/ROW/neuraloperator_row.json`` (the same keys) and
``neuraloperator_metrics.jsonl`` (per epoch), and its line in the results table (``record_row``: one line per
row and model). Prints both lines, theirs/ours of test error and wall time, and whether the goal (ours: equal
or lower error in at most half the wall time) is met.

How the runs are matched:

- Data: the row config after ``--set``; every source (train, test, ``data.extra_tests``) is opened, or
  generated, by ``reproduce.prepare_data`` before either run, so neither wall time includes data generation.
- Task, normalization, loss, score: the task ours trains with (``recipes.setup``: supervised with
  per-channel mean/std of inputs and outputs from the training split; for Navier-Stokes the time-recurrent
  rollout or the space-time model), its ``per_sample_loss`` (``train.loss`` in physical units, batch mean)
  and ``evaluate`` (mean relative L2), wrapped around their model.
- Optimization: Adam(lr, weight_decay) and ``make_scheduler`` from ``config.train``; the same shuffled batches
  in the same order (``distributed.epoch_batches(seed, epoch)``); the test set scored after every epoch, as
  ours is; ``train.precision``, ``tf32`` and ``compile`` applied alike; the config's device.
- Architecture: spectral.py's ``build_theirs`` (the same Fourier modes, width, layers, single linear lifting,
  projection width and parameter count, asserted; their blocks apply GELU twice, see its docstring), with two
  parameter-free modules swapped: a grid embedding on ``[0, 1]`` with both ends, ``j / (n - 1)`` as ours at
  every resolution (theirs: ``j / n``), and the domain padding:
- Padding. Ours pads the end of each axis with ``padding_points(n, p) = round((1 + p)(n - 1)) - n`` zeros.
  neuraloperator 2.0.0's ``DomainPadding`` has no one-sided mode: it pads ``round(f n)`` at BOTH ends; we pass
  ``f = p / 2``, the same total fraction (symmetric padding is a circular shift of one-sided padding, to which
  the FNO layers are equivariant: 6e-7 apart at 64 + 3 + 3 vs 64 + 6). Where it differs: its total
  ``2 round(p n / 2)`` is even and mostly one more than ours (darcy, p = 0.1: 85 -> 8 vs 7, 141 -> 14 vs 13,
  211 -> 22 vs 20, 421 -> 42 vs 41); and since the darcy grids are odd, every padded grid of theirs is odd,
  where neuralop shifts the output spectrum of every axis but the last by one wavenumber (fftshift where
  ifftshift is needed, see spectral.py); ours pads to 92, 154, 231, 462 and has no such shift.
  ``--padding oplearn`` gives their model our one-sided ``padding_points`` (model "neuraloperator 2.0.0 FNO
  (oplearn padding)", files ``neuraloperator_oplearn_padding_*``): with our weights copied in and ReLU (which
  hides the double activation) the two then agree to 2e-7 at 63 + 5 and 85 + 7.
- Their initialization is neuralop's own (seed 0, in ``build_theirs``); their complex spectral weights get the
  same Adam and weight decay as our real pairs (torch treats a complex entry as two reals).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spectral  # noqa: E402  (benchmarks/spectral.py)

from oplearn.errors import ConfigError, DataError, OplearnError  # noqa: E402
from oplearn.models import build  # noqa: E402
from oplearn.layers.padding import padding_points  # noqa: E402
from oplearn.precision import autocast, tf32_matmuls  # noqa: E402
from oplearn.reproduce import (PAPER_ERRORS, commit, hardware, paper_config, prepare_data,  # noqa: E402
                                record_row, reproduce, table_line, training_seconds)
from oplearn.train import distributed  # noqa: E402
from oplearn.data.sources import load_source  # noqa: E402
from oplearn.train.objective import Objective  # noqa: E402
from oplearn.train.task import get_task  # noqa: E402
from oplearn.train.trainer import make_scheduler  # noqa: E402

MODEL = "neuraloperator 2.0.0 FNO"
ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "tanh": torch.tanh}
MATCHED = {"modes", "width", "n_layers", "padding", "projection_channels", "activation"}


def their_modules(padding_kind: str):
    """neuralop module subclasses: a grid embedding with both ends, and our one-sided padding."""
    from neuralop.layers.embeddings import GridEmbeddingND
    from neuralop.layers.padding import DomainPadding

    class EndpointGrid(GridEmbeddingND):
        def grid(self, spatial_dims, device, dtype):
            if self._grid is None or self._res != spatial_dims:
                axes = [torch.linspace(start, stop, n) for n, (start, stop) in zip(spatial_dims, self.grid_boundaries)]
                self._grid = [g.to(device, dtype)[None, None] for g in torch.meshgrid(*axes, indexing="ij")]
                self._res = spatial_dims
            return self._grid

    class OneSidedPadding(DomainPadding):
        def pad(self, x, verbose=False):
            self._sizes = x.shape[2:]
            pads = [padding_points(n, p) for n, p in zip(self._sizes, self.domain_padding)]
            return F.pad(x, [p for pad in reversed(pads) for p in (0, pad)])

        def unpad(self, x):
            return x[(..., *[slice(0, n) for n in self._sizes])]

    def padding(fractions: list[float]):
        """Their padding module for our per-axis padding fractions."""
        if padding_kind == "oplearn":
            return OneSidedPadding(fractions)
        return DomainPadding([f / 2 for f in fractions])

    return EndpointGrid, padding


def build_matched(config, channels, resolution, padding_kind: str):
    """(ours, theirs) for model channels ``(in, out)``, built from the row's model config (a time task's
    model maps snapshots to one snapshot, ``recipes._build``); their parameter count asserted equal to ours."""
    hyper = config.model.hyperparameters()
    modes = tuple(hyper.get("modes", ()))
    if config.model.name != "fno" or set(hyper) - MATCHED or len(set(modes)) != 1:
        raise ConfigError(f"paper_table matches an FNO with equal modes on every axis and only "
                          f"{', '.join(sorted(MATCHED))} set; got {config.model.name} {hyper}")
    torch.manual_seed(config.seed)
    ours = build("fno", in_channels=channels[0], out_channels=channels[1], **hyper)
    cfg = spectral.Config(len(modes), resolution[0], config.train.batch_size, hyper.get("width", 32), modes[0],
                          projection=hyper.get("projection_channels", 128), n_layers=hyper.get("n_layers", 4),
                          in_channels=channels[0], out_channels=channels[1])
    theirs = spectral.build_theirs(cfg, non_linearity=ACTIVATIONS[hyper.get("activation", "gelu")])
    embedding, padding = their_modules(padding_kind)
    theirs.positional_embedding = embedding(cfg.in_channels, cfg.dim, [[0.0, 1.0]] * cfg.dim)
    if any(ours.paddings):  # our per-axis fractions, whether the config gave one number or a list
        theirs.domain_padding = padding(list(ours.paddings))
    counts = spectral.count_params(ours), spectral.count_params(theirs)
    assert counts[0] == counts[1], f"parameter counts differ: ours {counts[0]:,}, theirs {counts[1]:,}"
    return ours, theirs


def stem(padding_kind: str) -> str:
    """File name stem of their outputs in OUT/ROW: neuraloperator[_oplearn_padding]."""
    return "neuraloperator" + ("_oplearn_padding" if padding_kind == "oplearn" else "")


def train_theirs(row: str, overrides: list[str], out: Path, padding_kind: str, resume: bool = False) -> dict:
    """Train and evaluate neuralop's FNO exactly as ``oplearn reproduce`` trains ours; returns its summary.

    A checkpoint after every epoch (``OUT/ROW/neuraloperator[...]_checkpoint.pt``); ``resume`` continues from
    it. Wall time: training and per-epoch test time summed over the epochs, plus the final evaluation, as ours.
    """
    config = paper_config(row, overrides)
    device = distributed.resolve_device(config.device)
    revision = commit()  # the code that runs, even if the tree moves on during a long run
    train, test = load_source(config.data.train, "train"), load_source(config.data.test, "test")
    task = get_task(config.train.task).from_config(config, train, Objective.from_config(config.train.loss))  # the task ours trains with: supervised, recurrent or space-time
    task.loss = config.train.loss
    _, theirs = build_matched(config, get_task(config.train.task).model_channels(config, train.channels), train.resolution, padding_kind)
    model = theirs.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    scheduler = make_scheduler(optimizer, config)
    checkpoint_path, metrics = out / f"{stem(padding_kind)}_checkpoint.pt", []
    if resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if state["overrides"] != list(overrides):
            raise ConfigError(f"{checkpoint_path} was run with --set {state['overrides']}; pass the same")
        for name, part in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
            part.load_state_dict(state[name])
        metrics, revision = state["metrics"], state["commit"]
    trained = torch.compile(model) if config.train.compile else model
    context = distributed.Context(device=device)
    out.mkdir(parents=True, exist_ok=True)
    tf32 = tf32_matmuls(True) if config.train.tf32 else contextlib.nullcontext()  # as oplearn.train.fit
    with tf32, open(out / f"{stem(padding_kind)}_metrics.jsonl", "w", buffering=1) as log:
        for line in metrics:
            log.write(json.dumps(line) + "\n")
        for epoch in range(len(metrics), config.train.epochs):
            epoch_start, total = time.perf_counter(), 0.0
            trained.train()
            for indices, count in distributed.epoch_batches(len(train), config.train.batch_size, config.seed,
                                                             epoch, context):
                batch = train.batch(indices).to(device, non_blocking=True)
                with autocast(config.train.precision, device):
                    losses = task.per_sample_loss(trained, batch).float()
                optimizer.zero_grad(set_to_none=True)
                (losses.sum() / count).backward()
                optimizer.step()
                total += losses.detach().sum().item()
            scheduler.step()
            line = {"epoch": epoch + 1, "train_loss": total / len(train), "lr": optimizer.param_groups[0]["lr"],
                    "epoch_seconds": time.perf_counter() - epoch_start}
            evaluation_start = time.perf_counter()
            line["test_rel_l2"] = task.evaluate(model, test, device)
            line["test_seconds"] = time.perf_counter() - evaluation_start
            metrics.append(line)
            log.write(json.dumps(line) + "\n")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "metrics": metrics, "commit": revision,
                        "overrides": list(overrides)}, checkpoint_path.with_suffix(".tmp"))
            checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)
        evaluation_start = time.perf_counter()
        zero_shot = {}
        for name, source in config.data.extra_tests.items():
            extra = load_source(source, name)
            zero_shot[name] = {"resolution": list(extra.resolution), "rel_l2": task.evaluate(model, extra, device)}
        test_error = task.evaluate(model, test, device)
        wall = training_seconds(metrics) + time.perf_counter() - evaluation_start
    return {"row": row, "model": MODEL + (" (oplearn padding)" if padding_kind == "oplearn" else ""),
            "paper_rel_l2": PAPER_ERRORS[row], "test_rel_l2": test_error, "resolution": list(test.resolution),
            "zero_shot": zero_shot, "parameters": spectral.count_params(theirs), "epochs": config.train.epochs,
            "seconds_per_epoch": statistics.median(m["epoch_seconds"] for m in metrics),
            "wall_seconds": wall, "hardware": hardware(),
            "date": f"{datetime.now(timezone.utc):%Y-%m-%d}", "commit": revision, "overrides": list(overrides)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", help=f"paper row: {', '.join(sorted(PAPER_ERRORS))}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-ours", action="store_true", help="read OUT/ROW/paper_row.json instead of training")
    parser.add_argument("--theirs-only", action="store_true",
                        help="train and record theirs alone, e.g. while `oplearn reproduce ROW --out OUT/ROW` runs "
                             "ours in another process; compare afterwards with --skip-ours --resume")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    parser.add_argument("--out", type=Path, default=Path("runs/paper"))
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run of ours in OUT/ROW")
    parser.add_argument("--resume", action="store_true",
                        help="continue interrupted runs (ours: its checkpoint; theirs: OUT/ROW/*_checkpoint.pt)")
    parser.add_argument("--padding", choices=("neuralop", "oplearn"), default="neuralop",
                        help="their domain padding: neuralop's symmetric DomainPadding(p / 2) or our one-sided")
    args = parser.parse_args()
    if spectral.load_neuralop() is None:
        print("error: neuraloperator is not installed: pip install -e '.[bench]'", file=sys.stderr)
        sys.exit(2)
    out = args.out / args.row
    try:
        config = paper_config(args.row, args.overrides)
        prepare_data(config)  # generate missing data outside both timings
        if args.theirs_only:
            ours = None
        elif args.skip_ours or (args.resume and (out / "paper_row.json").is_file()):  # ours finished already
            if not (out / "paper_row.json").is_file():
                raise DataError(f"{out / 'paper_row.json'} does not exist; run without --skip-ours first")
            ours = json.loads((out / "paper_row.json").read_text())
            if ours["overrides"] != args.overrides:
                raise ConfigError(f"{out / 'paper_row.json'} was run with --set {ours['overrides']}; pass the same")
            record_row(args.results, ours)
        else:
            ours = reproduce(args.row, out, args.overrides, args.results, overwrite=args.overwrite,
                             resume=args.resume and (out / "checkpoints").is_dir())
        theirs = train_theirs(args.row, args.overrides, out, args.padding, resume=args.resume)
    except OplearnError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    (out / f"{stem(args.padding)}_row.json").write_text(json.dumps(theirs, indent=2))
    record_row(args.results, theirs)
    if ours is None:
        print(table_line(theirs))
        return
    error_ratio = theirs["test_rel_l2"] / ours["test_rel_l2"]
    wall_ratio = theirs["wall_seconds"] / ours["wall_seconds"]
    met = ours["test_rel_l2"] <= theirs["test_rel_l2"] and 2 * ours["wall_seconds"] <= theirs["wall_seconds"]
    print(table_line(ours) + "\n" + table_line(theirs))
    print(f"theirs / ours: test error {error_ratio:.2f}, wall time {wall_ratio:.2f}, s / epoch "
          f"{theirs['seconds_per_epoch'] / ours['seconds_per_epoch']:.2f}; goal (ours: error <= theirs in at most "
          f"half their wall time) {'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
