"""Mesh operators side by side: Transolver, Galerkin, GNOT, GNO, GINO, Geo-FNO (and the FNO on grids), same data.

    python benchmarks/mesh_operators.py --count                                   # parameter counts per dataset only
    python benchmarks/mesh_operators.py --dataset elasticity --epochs 500         # the published budget
    python benchmarks/mesh_operators.py --dataset pipe --resolution 65 --epochs 20 --n-train 200 --seeds 0 1 2
    python benchmarks/mesh_operators.py --dataset airfoil --models Transolver GINO --epochs 20 --results R.jsonl
    python benchmarks/mesh_operators.py --dataset darcy85 --epochs 500            # data/paper/darcy_*_85.h5

Data (train seed 1, test seed 2; ``--n-train``/``--n-test`` samples, default 1000 / 200 as Geo-FNO's). The mesh
sets are oplearn's own generators (``oplearn generate``), written to ``--data-dir`` (default data/mesh) before
the first run, with ``--threads`` solver processes; ``--resolution`` is each generator's own unit:

* ``elasticity``: our hyperelastic unit cell with a random void -> von Mises stress; elements per unit length,
  default 16 (about 1,000 nodes, Geo-FNO's 972); 8 gives about 330 nodes, a coarser mesh of the same problem.
* ``pipe``: our curved-pipe Navier-Stokes flow on the pipe's R x R lattice -> (u_x, u_y, p); default 129
  (Geo-FNO's 129 x 129, about 2.7 s a sample to generate); CPU budgets take 33 or 65 (1,089 / 4,225 nodes),
  a coarser discretization of the same flow. No FNO here: the pipe file is a mesh file (points and quads) and
  the FNO takes grids only; oplearn has no conversion of the lattice to a grid file, so it cannot be trained as
  a grid (Geo-FNO's FNO number on the pipe is an FNO on the index grid).
* ``airfoil``: incompressible potential flow around random NACA four-digit airfoils (not Geo-FNO's transonic
  Euler set: no shocks) -> (Cp, u_x, u_y); points per surface, default 64 (about 3,000 nodes); 16 gives
  about 1,200. The far field is 20 chords away, so GINO's and Geo-FNO's uniform latent grids over the bounding
  box resolve the airfoil itself with about one latent cell.
* ``darcy85``: the FNO paper's grid pipeline, exactly grid_operators.py's (``--data-dir`` default data/paper,
  1000 train / 100 test files; ``--resolution`` is 85).

So the "published" column (Transolver's table, ICML 2024, relative L2) is on other data: Geo-FNO's elasticity,
airfoil (Mach number) and pipe (u_x) sets; ours are generated, and their targets are all output channels.

Every model gets the same data, optimizer (Adam, lr 1e-3, weight decay 1e-4, cosine schedule), batch size
(``--batch-size``, default 20; small CPU budgets learn more per second with 4),
epochs and seeds; widths are chosen so the parameter counts are of the same order (0.2-1M, ``--count``). GNO's
radius (unit-box lengths) gives about 12-20 neighbours per point on average (fewer in the airfoil's far field)
and grows as ``--resolution`` coarsens the mesh. Transolver is the paper's point variant everywhere (its
published Darcy number is the conv-slicing variant, 4x the parameters here).
Each (model, seed) runs in its own process with ``--threads`` threads (benchmarks/operator_table.py); the table
gives mean +- std over seeds of the test relative L2, the parameter count, s/epoch (median) and peak memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grid_operators import data_section as grid_data_section  # benchmarks/, next to this script
from operator_table import run_rows, summarize, train_row

DATASETS = {"elasticity": 16, "airfoil": 64, "pipe": 129, "darcy85": 85}  # -> default resolution (Geo-FNO's)
GNO_RADIUS = {"elasticity": 0.065, "airfoil": 0.002, "pipe": 0.009, "darcy85": 0.03}  # at the default resolution

PUBLISHED = {  # relative L2, Transolver's table (ICML 2024): elasticity / airfoil / pipe / Darcy 85
    "Transolver": (0.0064, 0.0053, 0.0033, 0.0057), "Galerkin": (0.0240, 0.0118, 0.0098, 0.0084),
    "GNOT": (0.0086, 0.0076, 0.0047, 0.0105), "GNO": (None, None, None, None), "GINO": (None, None, None, None),
    "Geo-FNO": (0.0229, 0.0138, 0.0067, None), "FNO": (None, None, None, 0.0108),
}


# --size cpu: every model narrower (about 0.1-0.4M parameters), for a 2-core budget; each step costs 3-8x less
CPU_SIZES = {
    "Transolver": {"width": 64, "n_layers": 4, "n_heads": 4, "n_slices": 32},
    "Galerkin": {"width": 64, "n_layers": 4, "n_heads": 4},
    "GNOT": {"width": 64, "n_layers": 2, "n_heads": 4, "n_experts": 3},
    "GNO": {"width": 64, "n_layers": 4, "kernel_width": 64, "projection_channels": 64},
    "GINO": {"modes": [10, 10], "latent_grid": [24, 24], "width": 16},
    "Geo-FNO": {"modes": [10, 10], "width": 12},
    "FNO": {"modes": [12, 12], "width": 12},
}


def models(dataset: str, resolution: int, size: str = "paper") -> dict[str, dict]:
    """Label -> model section on ``dataset`` at ``resolution`` (the FNO on the grid only); ``size`` "cpu" takes
    the narrower CPU_SIZES."""
    radius = round(GNO_RADIUS[dataset] * DATASETS[dataset] / resolution, 4)
    sections = {  # every dataset is 2-D
        "Transolver": {"name": "transolver", "dim": 2, "width": 128, "n_layers": 8, "n_heads": 8, "n_slices": 64},
        "Galerkin": {"name": "galerkin", "dim": 2, "width": 128, "n_layers": 4, "n_heads": 4},
        "GNOT": {"name": "gnot", "dim": 2, "width": 96, "n_layers": 2, "n_heads": 4, "n_experts": 3},
        "GNO": {"name": "gno", "width": 128, "n_layers": 4, "kernel_width": 128, "radius": radius},
        "GINO": {"name": "gino", "modes": [12, 12], "latent_grid": [32, 32], "width": 20, "radius": 0.04},
        "Geo-FNO": {"name": "geo_fno", "modes": [12, 12], "width": 18},
    }
    if dataset == "darcy85":
        sections["FNO"] = {"name": "fno", "modes": [12, 12], "width": 20, "padding": 0.1}
    if size == "cpu":
        for label, smaller in CPU_SIZES.items():
            if label in sections:
                sections[label] = {**sections[label], **smaller}
    return sections


def data_section(args) -> dict:
    if args.dataset == "darcy85":
        return grid_data_section("darcy85", args.data_dir, args.n_train, args.n_test, 256)

    def source(split: str, n: int, seed: int) -> dict:
        path = args.data_dir / f"{args.dataset}_{split}_r{args.resolution}_n{n}.h5"
        return {"path": str(path), "pde": args.dataset, "n": n, "resolution": args.resolution, "seed": seed}
    return {"train": source("train", args.n_train, 1), "test": source("test", args.n_test, 2)}


def config_for(args, label: str, seed: int) -> dict:
    train = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 1e-3, "weight_decay": 1e-4,
             "scheduler": "cosine"}
    return {"seed": seed, "device": args.device, "model": models(args.dataset, args.resolution, args.size)[label],
            "train": train, "data": data_section(args)}


def generate_missing(data: dict, workers: int) -> None:
    """Generate the data files that are not there yet, before any run (so no run's time includes them)."""
    from oplearn.data import generate

    for source in (data["train"], data["test"]):
        if not Path(source["path"]).exists():
            generate(source["pde"], source["n"], source["resolution"], seed=source["seed"], out=source["path"],
                     params=source.get("params"), workers=workers, resume=True)


def count_parameters(size: str) -> None:
    from oplearn.data.pdes import get_pde
    from oplearn.models import build

    print("| model | " + " | ".join(DATASETS) + " |\n| --- |" + " --- |" * len(DATASETS))
    for label in models("darcy85", 85):
        counts = []
        for dataset, resolution in DATASETS.items():
            section = models(dataset, resolution, size).get(label)
            if section is None:
                counts.append("-")
                continue
            channels = get_pde(dataset).channels if dataset != "darcy85" else {"inputs": 1, "outputs": 1}
            hyper = {k: v for k, v in section.items() if k != "name"}
            model = build(section["name"], channels["inputs"], channels["outputs"], **hyper)
            counts.append(f"{sum(p.numel() for p in model.parameters()):,}")
        print(f"| {label} | " + " | ".join(counts) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="elasticity")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=None, help="default 200 (darcy85: 100)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="the generator's unit (see above); default Geo-FNO's: " +
                             ", ".join(f"{k} {v}" for k, v in DATASETS.items()))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=None, choices=list(PUBLISHED), metavar="LABEL")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", type=Path, default=None, help="default data/mesh (darcy85: data/paper)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "mesh_operators")
    parser.add_argument("--results", type=Path, default=None, help="JSON lines of finished rows (resumable)")
    parser.add_argument("--count", action="store_true", help="print parameter counts per dataset and stop")
    parser.add_argument("--size", choices=("paper", "cpu"), default="paper",
                        help="paper: the widths below (0.2-1M parameters); cpu: CPU_SIZES (0.1-0.4M)")
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count:
        return count_parameters(args.size)
    darcy = args.dataset == "darcy85"
    if darcy and args.resolution not in (None, 85):
        parser.error("darcy85 is the 85 x 85 grid; leave out --resolution")
    args.resolution = args.resolution or DATASETS[args.dataset]
    args.n_test = args.n_test or (100 if darcy else 200)
    args.data_dir = args.data_dir or Path("data") / ("paper" if darcy else "mesh")
    available = list(models(args.dataset, args.resolution))
    args.models = args.models or available
    if set(args.models) - set(available):
        parser.error(f"{', '.join(sorted(set(args.models) - set(available)))} not on {args.dataset}: the FNO takes "
                     "grids only (darcy85)")
    out = args.out / f"{args.dataset}_r{args.resolution}" if args.size == "paper" else \
        args.out / f"{args.dataset}_r{args.resolution}_{args.size}"
    if args.single:
        name = models(args.dataset, args.resolution, args.size)[args.single]["name"]
        return train_row(config_for(args, args.single, args.seed), args.single, out / f"{name}_seed{args.seed}",
                         args.threads, args.device)

    generate_missing(data_section(args), args.threads)
    rows = run_rows(__file__, sys.argv[1:], args.models, args.seeds, args.results or out / "rows.jsonl")
    column = list(DATASETS).index(args.dataset)
    print(f"\n{args.dataset} (resolution {args.resolution}): {args.n_train} train / {args.n_test} test, {args.epochs} "
          f"epochs, seeds {args.seeds}, {args.threads} threads. Our data are generated, not the published sets "
          "(see the docstring): the published column is for orientation only.\n")
    print(summarize([r for r in rows if r["model"] in args.models],
                    {label: numbers[column] for label, numbers in PUBLISHED.items()}))


if __name__ == "__main__":
    main()
