"""Grid operators side by side: MgNO, T1, U-NO, F-FNO, LSM, U-Net and the Fourier family on the same data.

    python benchmarks/grid_operators.py --count                           # parameter counts only
    python benchmarks/grid_operators.py --time                            # ms per training step, one process
    python benchmarks/grid_operators.py --pde darcy85 --epochs 500        # the published budget
    python benchmarks/grid_operators.py --pde darcy85 --epochs 20 --n-train 250 --seeds 0 1 2 --results R.json
    python benchmarks/grid_operators.py --pde ns --epochs 20 --n-train 200 --solver-resolution 128

Data. ``darcy85``: the FNO paper's pipeline (coefficients on cell centres, solved at 421, stored at 85; the
files of ``oplearn reproduce darcy``, 1000 train / 100 test; ``--n-train`` takes the first samples).
``ns``: vorticity at viscosity 1e-5 on 64x64, snapshots 1..10 in, 11..20 out, trained as a recurrent
(one step at a time) task, as Neural-Solver-Library does; solved at ``--solver-resolution`` (256 as the FNO
paper's data; a CPU budget may take 128, and says so).

Every model gets the same data, optimizer (Adam, lr 1e-3, weight decay 1e-4, cosine schedule), batch size,
epochs and seeds; widths are chosen so every model has 0.84-1.12M parameters (``--count`` prints them).
Each (model, seed) runs in its own process with ``--threads`` threads, so its peak resident memory
(ru_maxrss) is its own. The table gives mean +- std over seeds of the test relative L2, the parameter count,
seconds per epoch (median over epochs) and peak memory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from operator_table import run_rows, summarize, train_row  # benchmarks/operator_table.py, next to this script

MODELS = {  # label -> model section (Darcy: 1 channel in and out; NS: 10 in, 1 out per step); 0.84-1.12M parameters
    "FNO": {"name": "fno", "modes": [12, 12], "width": 20, "padding": 0.1},
    "TFNO (Tucker 0.42)": {"name": "tfno", "modes": [12, 12], "width": 32, "padding": 0.1, "rank": 0.42},
    "G-FNO (p4)": {"name": "gfno", "modes": 12, "width": 12, "group": "p4", "padding": 0.1},
    "F-FNO": {"name": "ffno", "modes": [16, 16], "width": 64, "n_layers": 4, "padding": 0.1},
    "T1 (DCT)": {"name": "t1", "transform": "dct", "modes": [24, 24], "width": 20, "n_layers": 4},
    "U-NO": {"name": "uno", "modes": [[8, 8], [6, 6], [4, 4], [6, 6], [8, 8]], "width": 16, "padding": 0.1},
    "MgNO": {"name": "mgno", "width": 50, "padding_mode": "zeros"},
    "LSM": {"name": "lsm", "width": 18},
    "U-Net": {"name": "unet", "width": 11, "levels": 4},
}

PUBLISHED = {  # relative L2, Transolver's table (ICML 2024): Darcy 85 / NS 1e-5
    "FNO": (0.0108, 0.1556), "F-FNO": (0.0077, 0.2322), "U-NO": (0.0113, 0.1713), "LSM": (0.0065, 0.1535),
    "U-Net": (0.0080, 0.1982), "Transolver": (0.0057, 0.0900),
}


def data_section(pde: str, data_dir: Path, n_train: int, n_test: int, solver_resolution: int) -> dict:
    if pde == "darcy85":
        def source(split: str, n: int, seed: int) -> dict:
            return {"path": str(data_dir / f"darcy_{split}_85.h5"), "pde": "darcy", "n": n, "resolution": 85,
                    "seed": seed, "params": {"oversample": 5, "grid": "cells"}}
        return {"train": source("train", n_train, 1), "test": source("test", n_test, 2)}
    params = {"viscosity": 1e-5, "final_time": 20, "n_times": 20, "solver_resolution": solver_resolution}
    steps = {"input_steps": list(range(1, 11)), "output_steps": list(range(11, 21))}

    def ns_source(split: str, n: int, seed: int) -> dict:
        path = data_dir / f"ns_1e-5_{split}_64_s{solver_resolution}.h5"
        return {"path": str(path), "pde": "navier_stokes", "n": n, "resolution": 64, "seed": seed,
                "params": params, **steps}
    return {"train": ns_source("train", n_train, 1), "test": ns_source("test", n_test, 2),
            "normalize_inputs": False, "normalize_outputs": False}


def config_for(args, label: str, seed: int) -> dict:
    train = {"epochs": args.epochs, "batch_size": 20, "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "cosine"}
    if args.pde == "ns":
        train["task"] = "recurrent"
    return {"seed": seed, "device": args.device, "model": MODELS[label], "train": train,
            "data": data_section(args.pde, args.data_dir, args.n_train, args.n_test, args.solver_resolution)}


def run_single(args) -> None:
    """One (model, seed) in this process; prints its row as JSON on the last line."""
    out = args.out / f"{MODELS[args.single]['name']}_seed{args.seed}"
    train_row(config_for(args, args.single, args.seed), args.single, out, args.threads, args.device)


def count_parameters(pde: str) -> None:
    from oplearn.models import build

    channels = (1, 1) if pde == "darcy85" else (10, 1)
    for label, section in MODELS.items():
        hyper = {k: v for k, v in section.items() if k != "name"}
        model = build(section["name"], *channels, **hyper)
        print(f"{label:20s} {sum(p.numel() for p in model.parameters()):>10,}")


def time_steps(pde: str, models: list[str], threads: int, repeats: int = 10) -> None:
    """Median milliseconds of one training step (forward, relative L2 loss, backward, Adam) per model, all in
    this process on the same random batch of 20 (Darcy 85x85 or NS 64x64)."""
    import torch

    from oplearn.losses import relative_lp_loss
    from oplearn.models import build

    torch.set_num_threads(threads)
    channels, size = ((1, 1), 85) if pde == "darcy85" else ((10, 1), 64)
    inputs, targets = torch.randn(20, channels[0], size, size), torch.randn(20, channels[1], size, size)
    print("| model | parameters | ms / step (median of 10) |\n| --- | --- | --- |")
    for label in models:
        hyper = {k: v for k, v in MODELS[label].items() if k != "name"}
        torch.manual_seed(0)
        model = build(MODELS[label]["name"], *channels, **hyper)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for step in range(3 + repeats):
            started = time.perf_counter()
            loss = relative_lp_loss(model(inputs), targets).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= 3:
                times.append(time.perf_counter() - started)
        count = sum(p.numel() for p in model.parameters())
        print(f"| {label} | {count:,} | {1000 * statistics.median(times):.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pde", choices=("darcy85", "ns"), default="darcy85")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--solver-resolution", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="LABEL")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", type=Path, default=Path("data") / "paper")
    parser.add_argument("--out", type=Path, default=Path("runs") / "grid_operators")
    parser.add_argument("--results", type=Path, default=None, help="JSON lines of finished rows (resumable)")
    parser.add_argument("--count", action="store_true", help="print parameter counts and stop")
    parser.add_argument("--time", action="store_true", help="time one training step of each model and stop")
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count:
        return count_parameters(args.pde)
    if args.time:
        return time_steps(args.pde, args.models, args.threads)
    if args.single:
        return run_single(args)

    rows = run_rows(__file__, sys.argv[1:], args.models, args.seeds, args.results or args.out / "rows.jsonl")
    print(f"\n{args.pde}: {args.n_train} train / {args.n_test} test, {args.epochs} epochs, seeds {args.seeds}, "
          f"{args.threads} threads\n")
    column = 0 if args.pde == "darcy85" else 1
    print(summarize([r for r in rows if r["model"] in args.models],
                    {label: numbers[column] for label, numbers in PUBLISHED.items()}))


if __name__ == "__main__":
    main()
