"""Learning-rate transfer across width: standard parameterization against muP on Darcy.

    python benchmarks/mup_transfer.py --out runs/mup_transfer     # about 6 minutes on 2 CPU cores

Trains a narrow FNO (``--width``) and one ``--factor`` times wider with the
same small Darcy budget over a sweep of Adam learning rates, once in the
standard parameterization and once in muP with ``base_width`` = the narrow
width (so the narrow muP model is the narrow standard one). Prints a markdown
table of final test relative L2 errors; the claim to test is that under muP
the best learning rate of the narrow model is also (near) the best of the wide
one, while under SP it moves. Figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from oplearn.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for data and runs (default: a temp dir)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--modes", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    root = Path(args.out or tempfile.mkdtemp(prefix="mup_transfer_"))
    data = {
        "train": {"path": str(root / "train.h5"), "pde": "darcy", "n": args.n_train, "resolution": args.resolution,
                  "seed": 1},
        "test": {"path": str(root / "test.h5"), "pde": "darcy", "n": args.n_test, "resolution": args.resolution,
                 "seed": 2},
    }
    widths = [args.width, args.width * args.factor]
    errors: dict[tuple[str, int], dict[float, float]] = {}
    for parameterization in ("standard", "mup"):
        for width in widths:
            for lr in args.lrs:
                model = {"name": "fno", "modes": [args.modes, args.modes], "width": width, "n_layers": 4,
                         "padding": 0.1, "projection_channels": 64, "parameterization": parameterization}
                if parameterization == "mup":
                    model["base_width"] = args.width
                config = {"seed": 0, "device": "cpu", "data": data, "model": model,
                          "train": {"epochs": args.epochs, "batch_size": 20, "lr": lr, "weight_decay": 0.0}}
                run = root / f"{parameterization}_w{width}_lr{lr:g}"
                try:
                    error = fit(config, run, progress=False, overwrite=True)["test"]["rel_l2"]
                except Exception as failure:  # a diverging learning rate is a data point, not a crash
                    print(f"{run.name}: {failure}")
                    error = float("nan")
                errors[(parameterization, width)] = {**errors.get((parameterization, width), {}), lr: error}
                print(f"{run.name}: {error:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)

    print(f"\nFNO modes {args.modes}, 4 layers, {args.n_train} Darcy samples at {args.resolution}x{args.resolution}, "
          f"{args.epochs} epochs, Adam + cosine, batch 20; test relative L2 ({args.n_test} samples), "
          f"best per row in bold:\n")
    print("| parameterization | width | " + " | ".join(f"lr {lr:g}" for lr in args.lrs) + " | best lr |")
    print("| --- | --- |" + " --- |" * (len(args.lrs) + 1))
    for (parameterization, width), row in errors.items():
        finite = {lr: e for lr, e in row.items() if e == e}
        best = min(finite, key=finite.get) if finite else None
        cells = [f"**{e:.4f}**" if lr == best else f"{e:.4f}" for lr, e in row.items()]
        print(f"| {parameterization} | {width} | " + " | ".join(cells) + f" | {best:g} |")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
