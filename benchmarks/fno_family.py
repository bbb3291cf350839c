"""The Fourier family side by side: FNO, TFNO, G-FNO (p4), AFNO and FNO + SpecBoost on the same data.

    python benchmarks/fno_family.py --pde darcy --epochs 30 --out runs/family
    python benchmarks/fno_family.py --pde navier_stokes --epochs 30 --out runs/family_ns

Every model trains with the same optimizer, schedule, epochs and data (SpecBoost's second stage gets as many
epochs again on top of the FNO run it boosts, and its row counts both stages' time). The table reports
parameters, seconds per epoch, test relative L2 at the training resolution, the relative error in the high
wavenumber band (upper third of the resolved |k|, oplearn.analysis.spectrum) and the error at twice the
training resolution (zero-shot). Darcy: the FNO paper's coefficient at 32x32 (test also at 64x64).
Navier-Stokes: viscosity 1e-3, solved at 64x64 and stored at 32x32 (64x64 for the zero-shot test),
vorticity at t = 0..4 in, t = 10 out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from oplearn.train import fit
from oplearn.train.evaluation import evaluate_run
from oplearn.train.run_dir import RunDir

DATA = {
    "darcy": {"pde": "darcy", "params": {}, "resolution": 32, "steps": {}},
    "navier_stokes": {
        "pde": "navier_stokes", "resolution": 32,
        "params": {"viscosity": 1e-3, "final_time": 10.0, "n_times": 10, "solver_resolution": 64},
        "steps": {"input_steps": [0, 1, 2, 3, 4], "output_steps": [10]},
    },
}

MODELS = {  # name -> model section; widths chosen so the parameter counts are of the same order
    "FNO": {"name": "fno", "modes": [12, 12], "width": 32, "padding": 0.1},
    "TFNO (Tucker, rank 0.1)": {"name": "tfno", "modes": [12, 12], "width": 32, "padding": 0.1, "rank": 0.1},
    "G-FNO (p4)": {"name": "gfno", "modes": 12, "width": 16, "group": "p4", "padding": 0.1},
    "AFNO (patch 2)": {"name": "afno", "patch_size": 2, "width": 192, "n_layers": 4},
}


def data_section(pde: str, data_dir: Path, n_train: int, n_test: int) -> dict:
    setting = DATA[pde]
    resolution = setting["resolution"]

    def source(split: str, n: int, grid: int, seed: int) -> dict:
        path = data_dir / f"{pde}_{split}_{grid}_n{n}.h5"
        return {"path": str(path), "pde": setting["pde"], "n": n, "resolution": grid, "seed": seed,
                "params": setting["params"], **setting["steps"]}

    return {"train": source("train", n_train, resolution, 1), "test": source("test", n_test, resolution, 2),
            "extra_tests": {"test_2x": source("test", n_test, 2 * resolution, 3)}}


def run_one(label: str, config: dict, out: Path) -> dict:
    started = time.perf_counter()
    fit(config, out, progress=False, overwrite=True)
    seconds = time.perf_counter() - started
    metrics = RunDir(out).read_metrics()
    evaluated = evaluate_run(out, device=config["device"])
    results = RunDir(out).read_results()
    return {
        "model": label, "parameters": results["parameters"], "seconds": seconds,
        "seconds_per_epoch": sum(m["epoch_seconds"] for m in metrics) / len(metrics),
        "test_rel_l2": evaluated["test"]["rel_l2"],
        "high_band_rel_error": evaluated["test"]["band_relative_errors"]["high"],
        "rel_l2_at_2x": evaluated["test_2x"]["rel_l2"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pde", choices=sorted(DATA), default="darcy")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("runs") / "family")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    base = {"seed": 0, "device": args.device, "data": data_section(args.pde, args.data_dir, args.n_train, args.n_test),
            "train": {"epochs": args.epochs, "batch_size": 20, "lr": 1e-3, "weight_decay": 1e-4,
                      "scheduler": "cosine"}}
    rows = []
    for label, model in MODELS.items():
        rows.append(run_one(label, {**base, "model": model}, args.out / model["name"]))
        print(json.dumps(rows[-1]), flush=True)
    boosted = {**base, "model": {**MODELS["FNO"]}, "stage": {"base_run": str(args.out / "fno"), "recipe": "specboost"}}
    row = run_one("FNO + SpecBoost (2 stages)", boosted, args.out / "specboost")
    first = rows[0]
    row.update(parameters=row["parameters"] + first["parameters"], seconds=row["seconds"] + first["seconds"])
    rows.append(row)
    print(json.dumps(rows[-1]), flush=True)

    print(f"\n{args.pde}: {args.n_train} train / {args.n_test} test, {args.epochs} epochs per stage\n")
    print("| model | parameters | s/epoch | test rel. L2 | high-band rel. error | rel. L2 at 2x grid |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        high = f"{r['high_band_rel_error']:.3f}" if r["high_band_rel_error"] is not None else "-"
        print(f"| {r['model']} | {r['parameters']:,} | {r['seconds_per_epoch']:.2f} | {r['test_rel_l2']:.4f} | "
              f"{high} | {r['rel_l2_at_2x']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
