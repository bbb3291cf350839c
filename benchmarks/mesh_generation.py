"""Cost of the finite-element data sets: samples per second of `oplearn generate` for each mesh PDE.

    python benchmarks/mesh_generation.py                          # every mesh PDE, 2 workers
    python benchmarks/mesh_generation.py --pdes pipe --n 20 --workers 2

Each PDE writes ``--n`` samples at its benchmark resolution (elasticity 16: about 1,000 nodes as Geo-FNO's
972; darcy_domain 90: about 3,800 nodes; pipe 129: Geo-FNO's 129 x 129 lattice; airfoil 64 points per
surface) into a scratch file through the same path as the CLI (worker processes, ragged writer). The
figure is the wall time of the whole call, file writing included; the projection multiplies the time per
sample by 1,000.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from oplearn.data import generate
from oplearn.data.ragged import read_ragged

RESOLUTIONS = {"elasticity": 16, "darcy_domain": 90, "pipe": 129, "airfoil": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdes", nargs="+", default=list(RESOLUTIONS), choices=list(RESOLUTIONS))
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print("| PDE | resolution | samples | mean points | wall s | samples/s | projected s per 1,000 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for pde in args.pdes:
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / f"{pde}.h5"
            started = time.perf_counter()
            generate(pde, args.n, RESOLUTIONS[pde], seed=0, out=out, workers=args.workers, progress=False)
            seconds = time.perf_counter() - started
            points = sum(len(s["points"]) for s in read_ragged(out)) / args.n
        print(f"| {pde} | {RESOLUTIONS[pde]} | {args.n} | {points:,.0f} | {seconds:.1f} | {args.n / seconds:.2f} | "
              f"{1000 * seconds / args.n:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
