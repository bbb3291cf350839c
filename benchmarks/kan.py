"""KAN layers: speed and memory against nn.Linear, an MLP and pykan; accuracy on the KAN paper's toy functions.

    python benchmarks/kan.py speed [--device cpu|cuda] [--batch 1024] [--width 256] [--repeats 20]
    python benchmarks/kan.py accuracy [--steps 200]

``speed``: one forward+backward of a layer ``width -> width`` on ``(batch, width)`` inputs (grid 5,
order 3): median time, and memory (CUDA: peak allocated above the parameters and inputs; CPU:
bytes of the tensors autograd saves for backward, a deterministic stand-in). Compared with
``nn.Linear`` over the same expanded width (the FLOP-equivalent GEMM), ``Linear + SiLU`` of the same
shape, an MLP of equal parameter count and, when ``import kan`` finds pykan, pykan's KAN after its
``speed()``. Run pykan from its own environment, e.g. a venv that also sees this repo's packages.

``accuracy``: f(x, y) = exp(sin(pi x) + y^2) with a [2, 1, 1] KAN, 1000 train / 1000 test points on
[-1, 1]^2, LBFGS, grids 3 -> 10 -> 20 -> 50 (grid moved to the data, then refined); and
exp((sin(pi(x1^2 + x2^2)) + sin(pi(x3^2 + x4^2)))/2) with [4, 2, 1, 1]. Test RMSE per grid next to
the values pykan's documentation reports. Figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from oplearn.layers import KANLinear
from oplearn.models import build

PYKAN_REPORTED = {3: 1.5e-2, 10: 3.3e-4, 20: 4.0e-5, 50: 1.2e-5}  # [2, 1, 1] test RMSE, pykan docs


def saved_bytes(step) -> int:
    """Bytes of the distinct storages autograd saves during ``step()`` (forward only runs inside)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(storages.values())


def measure(module: nn.Module, x: torch.Tensor, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Median milliseconds of forward+backward, and memory in MiB (see the module docstring)."""
    x = x.detach().requires_grad_()

    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if x.is_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        memory = torch.cuda.max_memory_allocated() - base
    else:
        memory = saved_bytes(lambda: module(x))
    return 1e3 * statistics.median(times), memory / 2**20


def pykan_layer(width: int, device: torch.device):
    """pykan's KAN ``[width, width]`` after ``speed()``, or None without pykan (``import kan``)."""
    here = Path(__file__).resolve().parent
    saved, sys.path[:] = sys.path[:], [p for p in sys.path if Path(p or ".").resolve() != here]  # not this kan.py
    try:
        from kan import KAN as PyKAN
    except ImportError:
        return None
    finally:
        sys.path[:] = saved
    model = PyKAN(width=[width, width], grid=5, k=3, device=str(device), auto_save=False)
    model.speed()
    return model


def speed(args) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    width, batch = args.width, args.batch
    x = torch.rand(batch, width, device=device) * 2 - 1
    bspline = KANLinear(width, width, grid_size=5, order=3)
    expanded = width * bspline.basis.n_basis
    kan_parameters = sum(p.numel() for p in bspline.parameters())
    hidden = round((kan_parameters - width) / (2 * width + 1))
    rows = [
        ("KANLinear bspline", bspline, x),
        ("KANLinear rational (GR-KAN, 8 groups)", KANLinear(width, width, basis="rational"), x),
        *[(f"KANLinear {name}", KANLinear(width, width, basis=name), x)
          for name in ("chebyshev", "rbf", "fourier", "relu_power", "truncated_power")],
        (f"nn.Linear {expanded} -> {width} (expanded width)", nn.Linear(expanded, width),
         torch.randn(batch, expanded, device=device)),
        (f"Linear {width} -> {width} + SiLU", nn.Sequential(nn.Linear(width, width), nn.SiLU()), x),
        (f"MLP {width} -> {hidden} -> {width} (params of bspline)",
         nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, width)), x),
    ]
    pykan = pykan_layer(width, device)
    if pykan is not None:
        rows.append(("pykan KAN [w, w] after speed()", pykan, x))
    print(f"device {device}, batch {batch}, width {width}, torch {torch.__version__}")
    print("| layer | parameters | forward+backward (ms) | memory (MiB) |\n| --- | --- | --- | --- |")
    for name, module, inputs in rows:
        module = module.to(device)
        milliseconds, memory = measure(module, inputs, args.repeats)
        parameters = sum(p.numel() for p in module.parameters())
        print(f"| {name} | {parameters} | {milliseconds:.3f} | {memory:.1f} |", flush=True)


def lbfgs(model, x, y, steps, update_every, update_until=50):
    """LBFGS on MSE; the grids follow the data every ``update_every`` steps (0: never) for the first ``update_until``."""
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1, history_size=10, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-32, tolerance_change=1e-32)

    def closure():
        optimizer.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        return loss

    for step in range(steps):
        if update_every and step < update_until and step % update_every == 0:
            model.update_grid(x)
        optimizer.step(closure)


def rmse(model, x, y) -> float:
    with torch.no_grad():
        return (model(x) - y).square().mean().sqrt().item()


def accuracy(args) -> None:
    problems = {
        "[2, 1, 1] exp(sin(pi x) + y^2)": (
            [1], lambda x: torch.exp(torch.sin(torch.pi * x[:, :1]) + x[:, 1:2] ** 2)),
        "[4, 2, 1, 1] exp((sin(pi(x1^2+x2^2)) + sin(pi(x3^2+x4^2)))/2)": (
            [2, 1], lambda x: torch.exp((torch.sin(torch.pi * (x[:, :1] ** 2 + x[:, 1:2] ** 2))
                                         + torch.sin(torch.pi * (x[:, 2:3] ** 2 + x[:, 3:4] ** 2))) / 2)),
    }
    print(f"LBFGS {args.steps} steps per grid, float64, seed {args.seed}, grid update every {args.update_every}")
    print("| problem | grid | train RMSE | test RMSE | pykan docs (test) | seconds |\n| --- | --- | --- | --- | --- | --- |")
    for name, (widths, target) in problems.items():
        torch.manual_seed(args.seed)
        n_in = 2 if widths == [1] else 4
        x_train = torch.rand(1000, n_in, dtype=torch.float64) * 2 - 1
        x_test = torch.rand(1000, n_in, dtype=torch.float64) * 2 - 1
        y_train, y_test = target(x_train), target(x_test)
        model = build("kan", in_channels=n_in, out_channels=1, widths=widths, grid_size=3).double()
        start = time.perf_counter()
        for grid in (3, 10, 20, 50):
            if grid != 3:
                model.update_grid(x_train)
                model.extend_grid(grid)
            lbfgs(model, x_train, y_train, args.steps, args.update_every)
            reported = f"{PYKAN_REPORTED[grid]:.1e}" if widths == [1] else "-"
            print(f"| {name} | {grid} | {rmse(model, x_train, y_train):.2e} | {rmse(model, x_test, y_test):.2e} | "
                  f"{reported} | {time.perf_counter() - start:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    speed_parser = commands.add_parser("speed")
    speed_parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    speed_parser.add_argument("--batch", type=int, default=1024)
    speed_parser.add_argument("--width", type=int, default=256)
    speed_parser.add_argument("--repeats", type=int, default=20)
    accuracy_parser = commands.add_parser("accuracy")
    accuracy_parser.add_argument("--steps", type=int, default=200)
    accuracy_parser.add_argument("--seed", type=int, default=0)
    accuracy_parser.add_argument("--update-every", type=int, default=0,
                                 help="also move the grids to the data every N of the first 50 steps (0: only "
                                      "before each refinement)")
    args = parser.parse_args()
    speed(args) if args.command == "speed" else accuracy(args)


if __name__ == "__main__":
    main()
