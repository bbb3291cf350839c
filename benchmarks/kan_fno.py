"""KAN-FNO against FNO at (about) equal parameter count on Darcy flow or Burgers.

    python benchmarks/kan_fno.py [--pde darcy|burgers] [--epochs 12] [--seeds 0 1 2] [--threads 1] [--json F]
                                 [--kan-grid-updates N]

Data generated with oplearn (``--n-train`` / ``--n-test`` samples at ``--resolution``, default 32x32 for
Darcy, 256 points for Burgers u0 -> u(1) with nu = 0.1, solved on the stored grid; kept in ``--data-dir``
and reused). Darcy models pad by 10% (non-periodic); Burgers is periodic, no padding. Both models are trained through ``oplearn.train.fit`` with the
same config except the model section: FNO with ``mixer=linear`` at ``--width``, and
``mixer=kan`` (B-spline KANLinear for the lifting, projection and pointwise paths) at the width
whose parameter count is closest to the FNO's (must match within ``--tolerance``). Reports test
relative L2 (mean +- std over seeds), parameters and mean seconds per training epoch as a markdown
table on stdout, and everything per run with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from oplearn.data import generate
from oplearn.models import build
from oplearn.train import fit
from oplearn.train.run_dir import RunDir


def parameter_count(model: dict) -> int:
    hyperparameters = {key: value for key, value in model.items() if key != "name"}
    network = build(model["name"], in_channels=1, out_channels=1, **hyperparameters)
    return sum(p.numel() for p in network.parameters())


def matched_kan_model(base: dict, tolerance: float) -> dict:
    """``base`` with ``mixer=kan`` at the width whose parameter count is closest to ``base``'s."""
    target = parameter_count(base)
    candidates = [{**base, "mixer": "kan", "width": width} for width in range(4, 2 * base["width"] + 1)]
    best = min(candidates, key=lambda model: abs(parameter_count(model) - target))
    mismatch = parameter_count(best) / target - 1
    if abs(mismatch) > tolerance:
        raise SystemExit(f"no KAN-FNO width matches the FNO's {target} parameters within {tolerance:.0%} "
                         f"(best: width {best['width']}, {mismatch:+.1%})")
    return best


# Per PDE: dimension, FNO padding, default grid, solver parameters for a grid of n points.
PDES = {"darcy": (2, 0.1, 32, lambda n: {}), "burgers": (1, 0.0, 256, lambda n: {"solver_resolution": n})}


def data_files(args) -> dict[str, Path]:
    """Generate (once) the train and test sets; returns their paths."""
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n, seed in (("train", args.n_train, 1), ("test", args.n_test, 2)):
        path = data_dir / f"{args.pde}_{split}_{args.resolution}_{n}.h5"
        if not path.exists():
            started = time.perf_counter()
            generate(args.pde, n, args.resolution, seed=seed, out=path, batch=10, progress=False,
                     params=PDES[args.pde][3](args.resolution))
            print(f"generated {path} in {time.perf_counter() - started:.1f} s", flush=True)
        files[split] = path
    return files


def train_once(model: dict, seed: int, files: dict[str, Path], args, run_dir: Path, grid_updates: int = 0) -> dict:
    config = {
        "seed": seed,
        "device": args.device,
        "data": {"train": {"path": str(files["train"])}, "test": {"path": str(files["test"])}},
        "model": model,
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "weight_decay": 1e-4,
                  "scheduler": "cosine", "kan_grid_updates": grid_updates},
    }
    results = fit(config, run_dir, overwrite=True, progress=False)
    epochs = RunDir(run_dir).read_metrics()
    return {"seed": seed, "test_rel_l2": results["test"]["rel_l2"], "parameters": results["parameters"],
            "epoch_seconds": statistics.mean(epoch["epoch_seconds"] for epoch in epochs),
            "train_loss": epochs[-1]["train_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pde", choices=sorted(PDES), default="darcy")
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=None, help="grid points per axis (default: per PDE)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=24, help="FNO width; the KAN-FNO width is matched to it")
    parser.add_argument("--modes", type=int, default=8)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--projection-channels", type=int, default=64)
    parser.add_argument("--tolerance", type=float, default=0.1, help="allowed relative parameter mismatch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--kan-grid-updates", type=int, default=0,
                        help="also train the KAN-FNO with train.kan_grid_updates=N (grids refit in the first N epochs)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is steadier on a shared machine)")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "oplearn_kan_fno"))
    parser.add_argument("--json", type=Path, help="write the per-run results here")
    args = parser.parse_args()
    dim, padding, default_resolution, _ = PDES[args.pde]
    args.resolution = args.resolution or default_resolution

    fno = {"name": "fno", "modes": [args.modes] * dim, "width": args.width, "n_layers": args.layers,
           "padding": padding, "projection_channels": args.projection_channels}
    kan_fno = matched_kan_model(fno, args.tolerance)
    models = {"FNO (linear mixer)": (fno, 0), "KAN-FNO (bspline, grid 5, order 3)": (kan_fno, 0)}
    if args.kan_grid_updates:
        models[f"KAN-FNO, grids updated in the first {args.kan_grid_updates} epochs"] = (kan_fno, args.kan_grid_updates)
    if args.threads:
        torch.set_num_threads(args.threads)
    files = data_files(args)
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (model, grid_updates) in models.items():
            runs[name] = []
            for seed in args.seeds:
                run_dir = Path(scratch) / f"{model.get('mixer', 'linear')}_{grid_updates}_{seed}"
                run = train_once(model, seed, files, args, run_dir, grid_updates)
                runs[name].append(run)
                print(f"{name} seed {seed}: test rel L2 {run['test_rel_l2']:.4f}, "
                      f"{run['epoch_seconds']:.2f} s/epoch", flush=True)

    print(f"\n{args.pde} {'x'.join([str(args.resolution)] * dim)}, {args.n_train} train / {args.n_test} test, "
          f"{args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr} cosine, modes {args.modes}, "
          f"{args.layers} layers, seeds {args.seeds}, device {args.device}, {torch.get_num_threads()} threads\n")
    print("| model | width | parameters | test rel. L2 (mean +- std) | s / epoch |\n| --- | --- | --- | --- | --- |")
    for name, (model, _) in models.items():
        errors = [run["test_rel_l2"] for run in runs[name]]
        spread = statistics.stdev(errors) if len(errors) > 1 else 0.0
        seconds = statistics.mean(run["epoch_seconds"] for run in runs[name])
        print(f"| {name} | {model['width']} | {runs[name][0]['parameters']} | "
              f"{statistics.mean(errors):.4f} +- {spread:.4f} | {seconds:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)},
                                         "models": {name: model for name, (model, _) in models.items()},
                                         "runs": runs}, indent=2, default=str))


if __name__ == "__main__":
    main()
