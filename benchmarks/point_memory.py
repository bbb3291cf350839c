"""Peak memory of one training step of the point operators at 1e4 and 1e5 points per sample, chunked and not.

    python benchmarks/point_memory.py                          # every model, 10,000 and 100,000 points
    python benchmarks/point_memory.py --points 100000 --models Transolver GNO
    python benchmarks/point_memory.py --points 100000 --models GNO --size cpu --unchunked no

One sample of N uniform points in the unit square, one input and one output channel (random values: memory
does not depend on them), the mesh_operators.py models at their published-like widths (``--size cpu``: the
narrower ones); one step = forward,
relative L2 loss, backward, Adam step, after one warm-up step (so Adam's state exists), timed once, then run
again under the profiler for its memory. "peak" is
oplearn.analysis.memory.measured_cpu_peak: the largest sum of live PyTorch allocations during the step above
what was live before it (kernel scratch outside PyTorch's allocator is not seen). Chunked: the attention
models with ``chunk_points`` (each chunk recomputed in backward), the kernel operators (GNO, GINO) with their
default ``chunk_edges`` (2^18); unchunked: the attention models with ``chunk_points`` None, the kernel
operators with one chunk holding every edge. A run that needs more memory than the machine has is reported
as such (each model runs in its own process, so one that is killed does not end the others).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

ATTENTION = ("Transolver", "Galerkin", "GNOT")


def section(label: str, points: int, chunked: bool, chunk_points: int, size: str = "paper") -> dict:
    from mesh_operators import models  # benchmarks/, next to this script

    model = dict(models("elasticity", 16, size)[label])
    model["domain"] = [[0.0, 0.0], [1.0, 1.0]]
    if label in ATTENTION:
        model["chunk_points"] = chunk_points if chunked else None
    elif label in ("GNO", "GINO"):
        model["chunk_edges"] = 1 << 18 if chunked else 1 << 40
        if label == "GNO":
            model["radius"] = round(0.065 * (1000 / points) ** 0.5, 5)  # about 13 neighbours at any N
    return model


def measure(label: str, points: int, chunked: bool, chunk_points: int, threads: int, size: str = "paper") -> dict:
    import torch

    from oplearn.analysis.memory import measured_cpu_peak
    from oplearn.losses import relative_lp_loss
    from oplearn.models import build

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    hyper = section(label, points, chunked, chunk_points, size)
    name = hyper.pop("name")
    model = build(name, 1, 1, **hyper)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, coords, y = torch.randn(1, 1, points), torch.rand(1, 2, points), torch.randn(1, 1, points)

    def step():
        optimizer.zero_grad(set_to_none=True)
        relative_lp_loss(model(x, coords=coords), y).backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    step()  # timed without the profiler, whose per-operation records slow chunked steps many times over
    seconds = time.perf_counter() - started
    peak = measured_cpu_peak(step)
    parameters = sum(p.numel() for p in model.parameters())
    return {"model": label, "points": points, "chunked": chunked, "parameters": parameters, "peak_mb": peak / 2**20,
            "step_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[*ATTENTION, "GNO", "GINO"])
    parser.add_argument("--points", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--chunk-points", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=900, help="seconds for one measurement")
    parser.add_argument("--size", choices=("paper", "cpu"), default="paper", help="mesh_operators.py's model sizes")
    parser.add_argument("--unchunked", choices=("yes", "no"), default="yes", help="also measure without chunks")
    parser.add_argument("--single", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        label, points, chunked = args.single
        print(json.dumps(measure(label, int(points), chunked == "1", args.chunk_points, args.threads, args.size)))
        return
    print("| model | parameters | points | chunked | peak MiB | step s |\n| --- | --- | --- | --- | --- | --- |")
    for points in args.points:
        for label in args.models:
            for chunked in (True, False) if args.unchunked == "yes" else (True,):
                command = [sys.executable, __file__, "--single", label, str(points), str(int(chunked)),
                           "--chunk-points", str(args.chunk_points), "--threads", str(args.threads),
                           "--size", args.size]
                try:
                    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    print(f"| {label} | - | {points:,} | {'yes' if chunked else 'no'} | - | > {args.timeout} |",
                          flush=True)
                    continue
                if done.returncode != 0:
                    why = "killed (out of memory)" if done.returncode < 0 else done.stderr.strip().splitlines()[-1]
                    print(f"| {label} | - | {points:,} | {'yes' if chunked else 'no'} | {why} | - |", flush=True)
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"| {label} | {row['parameters']:,} | {points:,} | {'yes' if chunked else 'no'} | "
                      f"{row['peak_mb']:,.0f} | {row['step_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
