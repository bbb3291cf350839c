"""KAN layers: speed and memory against nn.Linear, an MLP and pykan; accuracy on the KAN paper's toy functions.

    python benchmarks/kan.py speed [--device cpu|cuda] [--batch 1024] [--width 256] [--repeats 20] [--rounds 5]
    python benchmarks/kan.py accuracy [--steps 200] [--seeds 0 1 2] [--update-every 0]

``speed``: one forward+backward of a layer ``width -> width`` on ``(batch, width)`` inputs (grid 5,
order 3): median time over interleaved rounds, and memory (CUDA: peak allocated above the parameters
and inputs; CPU: bytes of the tensors autograd saves for backward, a deterministic stand-in). Compared with
``nn.Linear`` over the same expanded width (the FLOP-equivalent GEMM), ``Linear + SiLU`` of the same
shape, an MLP of equal parameter count and, when ``import kan`` finds pykan, pykan's KAN after its
``speed()``. Run pykan from its own environment, e.g. a venv that also sees this repo's packages.

``accuracy``: f(x, y) = exp(sin(pi x) + y^2) with a [2, 1, 1] KAN, 1000 train / 1000 test points on
[-1, 1]^2, LBFGS, grids 3 -> 10 -> 20 -> 50 (grids moved to the data, uniform on its range and 1% past
it, then refined); and exp((sin(pi(x1^2 + x2^2)) + sin(pi(x3^2 + x4^2)))/2) with [4, 2, 1, 1]. Test
RMSE per grid and seed, and the median over seeds, for our KAN and (when ``import kan`` finds it) pykan
on the same points, next to the values pykan's documentation reports. Figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
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


def import_pykan():
    """pykan's ``KAN`` class, or None when ``import kan`` finds no pykan (this file is not it)."""
    here = Path(__file__).resolve().parent
    saved, sys.path[:] = sys.path[:], [p for p in sys.path if Path(p or ".").resolve() != here]
    try:
        from kan import KAN
    except ImportError:
        return None
    finally:
        sys.path[:] = saved
    return KAN


def pykan_layer(width: int, device: torch.device):
    """pykan's KAN ``[width, width]`` after ``speed()``, or None without pykan."""
    PyKAN = import_pykan()
    if PyKAN is None:
        return None
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
    print(f"median over {args.rounds} interleaved rounds of {args.repeats} repeats (a slow spell hits every row)")
    print("| layer | parameters | forward+backward (ms) | memory (MiB) |\n| --- | --- | --- | --- |")
    rows = [(name, module.to(device), inputs) for name, module, inputs in rows]
    times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    memory: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, module, inputs in rows:
            if name.startswith("pykan") and times[name]:
                continue  # one round of pykan is enough at ~1000x the time
            milliseconds, memory[name] = measure(module, inputs, args.repeats)
            times[name].append(milliseconds)
    for name, module, _ in rows:
        parameters = sum(p.numel() for p in module.parameters())
        print(f"| {name} | {parameters} | {statistics.median(times[name]):.3f} | {memory[name]:.1f} |", flush=True)


LOSS_SCALE = 1e6  # see lbfgs()
SPLINE_INIT_SCALE = 0.1  # splines start near the base path, as pykan's: all 5 seeds of [2, 1, 1] fit (3 at 1.0)
# Grids moved to the data: uniform on its range and 1% past its extremes (update_grid's defaults, pykan's,
# are near-quantile and no margin: grid-50 median 7.7e-5 instead of 6.5e-7, see RESULTS.md).
GRID_EPS, GRID_MARGIN = 1.0, 0.01
GRIDS = (3, 10, 20, 50)
PROBLEMS = {  # name: (hidden widths, number of inputs, target)
    "[2, 1, 1] exp(sin(pi x) + y^2)": (
        [1], 2, lambda x: torch.exp(torch.sin(torch.pi * x[:, :1]) + x[:, 1:2] ** 2)),
    "[4, 2, 1, 1] exp((sin(pi(x1^2+x2^2)) + sin(pi(x3^2+x4^2)))/2)": (
        [2, 1], 4, lambda x: torch.exp((torch.sin(torch.pi * (x[:, :1] ** 2 + x[:, 1:2] ** 2))
                                        + torch.sin(torch.pi * (x[:, 2:3] ** 2 + x[:, 3:4] ** 2))) / 2)),
}


def lbfgs(model, x, y, steps, update_every, update_until=50):
    """LBFGS on ``LOSS_SCALE`` x MSE (``steps`` calls of 20 iterations, as pykan's ``fit``); the grids follow
    the data every ``update_every`` steps (0: never) for the first ``update_until``.

    torch.optim.LBFGS only stores a curvature pair when ``y's > 1e-10``, a fixed threshold that an MSE
    near 1e-10 (RMSE 1e-5) falls under, after which it stops learning curvature; pykan's copy of LBFGS
    makes the threshold an argument (``tolerance_ys=1e-32``). Scaling the loss keeps the pairs coming and
    leaves the minimiser and the quasi-Newton steps unchanged (without it: RMSE 4e-5 instead of 1.4e-6
    at grid 50).
    """
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1, history_size=10, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-32, tolerance_change=1e-32)

    def closure():
        optimizer.zero_grad()
        loss = (model(x) - y).square().mean() * LOSS_SCALE
        loss.backward()
        return loss

    for step in range(steps):
        if update_every and step < update_until and step % update_every == 0:
            model.update_grid(x, grid_eps=GRID_EPS, margin=GRID_MARGIN)
        optimizer.step(closure)


def rmse(model, x, y) -> float:
    with torch.no_grad():
        return (model(x) - y).square().mean().sqrt().item()


def toy_data(n_in, target, seed):
    """1000 train and 1000 test points uniform on [-1, 1]^n_in, float64 (the same for both libraries)."""
    torch.manual_seed(seed)
    x_train = torch.rand(1000, n_in, dtype=torch.float64) * 2 - 1
    x_test = torch.rand(1000, n_in, dtype=torch.float64) * 2 - 1
    return x_train, target(x_train), x_test, target(x_test)


def ours_by_grid(widths, data, args) -> list[float]:
    """Our KAN: grid 3, then per grid: grids to the data, refine, LBFGS. Test RMSE after each grid."""
    x_train, y_train, x_test, y_test = data
    model = build("kan", in_channels=x_train.shape[1], out_channels=1, widths=widths, grid_size=GRIDS[0],
                  spline_init_scale=SPLINE_INIT_SCALE).double()
    errors = []
    for grid in GRIDS:
        if grid != GRIDS[0]:
            model.update_grid(x_train, grid_eps=GRID_EPS, margin=GRID_MARGIN)
            model.extend_grid(grid)
        lbfgs(model, x_train, y_train, args.steps, args.update_every)
        errors.append(rmse(model, x_test, y_test))
    return errors


def pykan_by_grid(widths, data, args, seed) -> list[float] | None:
    """pykan 0.2.8 as its documentation runs it: ``KAN(width, grid=3, k=3)``, ``fit(opt="LBFGS", steps)`` per
    grid with its defaults (grid updates every 5 of the first 50 steps), ``refine(grid)``. None without pykan."""
    PyKAN = import_pykan()
    if PyKAN is None:
        return None
    x_train, y_train, x_test, y_test = data
    dataset = {"train_input": x_train, "train_label": y_train, "test_input": x_test, "test_label": y_test}
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    errors = []
    try:
        with tempfile.TemporaryDirectory() as checkpoints, contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):  # its progress bars and checkpoint messages
            model = PyKAN(width=[x_train.shape[1], *widths, 1], grid=GRIDS[0], k=3, seed=seed, ckpt_path=checkpoints)
            for grid in GRIDS:
                if grid != GRIDS[0]:
                    model = model.refine(grid)
                model.fit(dataset, opt="LBFGS", steps=args.steps, log=args.steps + 1)
                errors.append(rmse(model, x_test, y_test))
    finally:
        torch.set_default_dtype(default_dtype)
    return errors


def accuracy(args) -> None:
    print(f"LBFGS {args.steps} steps per grid, float64, seeds {args.seeds}, grid update every {args.update_every}")
    print("| problem | library | seed | " + " | ".join(f"grid {g}" for g in GRIDS) + " | seconds |")
    print("| --- | --- | --- |" + " --- |" * len(GRIDS) + " --- |")
    for name, (widths, n_in, target) in PROBLEMS.items():
        results = {"oplearn": [], "pykan 0.2.8": []}
        for seed in args.seeds:
            data = toy_data(n_in, target, seed)
            for library in results:
                start = time.perf_counter()
                torch.manual_seed(seed)
                errors = ours_by_grid(widths, data, args) if library == "oplearn" else \
                    pykan_by_grid(widths, data, args, seed)
                if errors is None:
                    continue
                results[library].append(errors)
                print(f"| {name} | {library} | {seed} | " + " | ".join(f"{e:.1e}" for e in errors) +
                      f" | {time.perf_counter() - start:.0f} |", flush=True)
        for library, runs in results.items():
            if runs:
                medians = [statistics.median(run[i] for run in runs) for i in range(len(GRIDS))]
                print(f"| {name} | {library} | median | " + " | ".join(f"{e:.1e}" for e in medians) + " | |")
        if widths == [1]:
            print(f"| {name} | pykan docs | - | " + " | ".join(f"{PYKAN_REPORTED[g]:.1e}" for g in GRIDS) + " | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    speed_parser = commands.add_parser("speed")
    speed_parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    speed_parser.add_argument("--batch", type=int, default=1024)
    speed_parser.add_argument("--width", type=int, default=256)
    speed_parser.add_argument("--repeats", type=int, default=20)
    speed_parser.add_argument("--rounds", type=int, default=5)
    accuracy_parser = commands.add_parser("accuracy")
    accuracy_parser.add_argument("--steps", type=int, default=200)
    accuracy_parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    accuracy_parser.add_argument("--update-every", type=int, default=0,
                                 help="also move the grids to the data every N of the first 50 steps (0: only "
                                      "before each refinement)")
    args = parser.parse_args()
    speed(args) if args.command == "speed" else accuracy(args)


if __name__ == "__main__":
    main()
