"""oplearn's GNO layer and GINO against neuraloperator 2.0.0's GNOBlock and GINO: time per training step, memory.

Same problem for both: N points (default 1e4) uniform in the unit box [0, 1]^d, shared by the batch
(neuraloperator's GINO only takes one geometry per batch), the same radius, channel widths, kernel MLP
(two hidden layers of ``--kernel-width``, coordinates as its input: neuraloperator's positional embedding
is switched off), latent grid, Fourier modes and number of Fourier layers; the parameter counts are
printed next to each other. Compared:

* ``gno``: one kernel-integral layer on the points themselves (neighbour search included, as both
  libraries search in every forward call), linear kernel ``kappa(x, y) * v(y)``, mean over the ball;
  oplearn's ``radius_neighbors`` + ``KernelIntegral`` against ``neuralop.layers.gno_block.GNOBlock``.
* ``gino``: the whole model, points -> latent grid -> FNO -> points.

A training step is forward, MSE loss against a fixed random target, backward and an Adam step; the
figure is the median of ``--steps`` steps after ``--warmup`` steps, with ``torch.set_num_threads(--threads)``.
Peak memory is the ``ru_maxrss`` of a separate Python process per (library, model) run, so that one
run's allocations do not count towards another's; it includes the interpreter, torch and the library
(the ``baseline`` rows: the library imported, one Adam step on one number). Parameter counts are real numbers (a
complex weight counts twice); the GINOs differ only in neuraloperator's two-layer lifting after its
encoder (oplearn lifts with one linear map before it).

    .venv/bin/python benchmarks/gno_neuraloperator.py                  # 1e4 points, 2-D
    .venv/bin/python benchmarks/gno_neuraloperator.py --dim 3 --latent 16 --modes 6 --radius 0.1
    .venv/bin/python benchmarks/gno_neuraloperator.py --tiny           # a smoke run in seconds

Needs ``pip install -c constraints.txt neuraloperator==2.0.0`` for the neuraloperator rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2, choices=(2, 3))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--radius", type=float, default=0.05, help="ball radius in unit-box lengths")
    parser.add_argument("--width", type=int, default=32, help="channels (GNO layer, latent FNO)")
    parser.add_argument("--kernel-width", type=int, default=64, help="hidden units of the kernel MLPs")
    parser.add_argument("--latent", type=int, default=32, help="latent grid nodes per axis (GINO)")
    parser.add_argument("--modes", type=int, default=12, help="oplearn's modes per axis (neuraloperator: 2x)")
    parser.add_argument("--layers", type=int, default=4, help="Fourier layers of the latent FNO")
    parser.add_argument("--projection", type=int, default=128, help="hidden width of the projection MLP")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # "library:model" run in this process
    args = parser.parse_args(argv)
    if args.tiny:
        args.points, args.batch, args.latent, args.modes, args.layers = 300, 2, 8, 3, 2
        args.width, args.kernel_width, args.projection, args.radius = 8, 16, 16, 0.15
        args.steps, args.warmup = 3, 1
    return args


def problem(args, torch):
    """``(points (N, d), inputs (B, N, 1), targets (B, N, 1), latent nodes (*grid, d))``, seeded."""
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(args.points, args.dim, generator=generator)
    inputs = torch.randn(args.batch, args.points, 1, generator=generator)
    targets = torch.randn(args.batch, args.points, 1, generator=generator)
    axes = [torch.linspace(0, 1, args.latent)] * args.dim
    latent = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return points, inputs, targets, latent


def oplearn_model(name, args, torch):
    """oplearn's model and ``step_input -> prediction (B, N, 1)`` (channel-first inside)."""
    from oplearn.layers.kernel_integral import KernelIntegral
    from oplearn.layers.neighbors import radius_neighbors
    from oplearn.models import build

    points, inputs, _, _ = problem(args, torch)
    coords = points.T.expand(args.batch, -1, -1)  # (B, d, N)
    if name == "gno":
        layer = KernelIntegral(args.width, args.width, args.dim, args.kernel_width, 2, "linear")
        values = torch.randn(args.batch, args.width, args.points, generator=torch.Generator().manual_seed(1))

        def predict():
            neighbors = radius_neighbors(coords, coords, args.radius)
            return layer(values, coords, coords, neighbors).transpose(1, 2)[..., :1]

        return layer, predict
    model = build("gino", 1, 1, latent_grid=[args.latent] * args.dim, modes=[args.modes] * args.dim,
                  width=args.width, fno_layers=args.layers, radius=args.radius, kernel_width=args.kernel_width,
                  kernel_layers=2, projection_channels=args.projection,
                  domain=[[0.0] * args.dim, [1.0] * args.dim])
    channel_first = inputs.transpose(1, 2).contiguous()
    return model, lambda: model(channel_first, coords=coords).transpose(1, 2)


def neuraloperator_model(name, args, torch):
    """neuraloperator's module and ``() -> prediction (B, N, 1)``, configured like oplearn's."""
    import torch.nn.functional as F
    from neuralop.layers.gno_block import GNOBlock
    from neuralop.models import GINO

    points, inputs, _, latent = problem(args, torch)
    if name == "gno":
        block = GNOBlock(args.width, args.width, args.dim, args.radius, transform_type="linear", reduction="mean",
                         pos_embedding_type=None, channel_mlp_layers=[args.kernel_width, args.kernel_width],
                         channel_mlp_non_linearity=F.gelu, use_torch_scatter_reduce=False,
                         use_open3d_neighbor_search=False)
        values = torch.randn(args.batch, args.points, args.width, generator=torch.Generator().manual_seed(1))
        return block, lambda: block(points, points, values)[..., :1]
    model = GINO(in_channels=1, out_channels=1, gno_coord_dim=args.dim, in_gno_radius=args.radius,
                 out_gno_radius=args.radius, in_gno_transform_type="linear", out_gno_transform_type="linear",
                 in_gno_pos_embed_type=None, out_gno_pos_embed_type=None, fno_in_channels=args.width,
                 fno_n_modes=[2 * args.modes] * (args.dim - 1) + [2 * args.modes - 1],  # m on the last axis too
                 fno_hidden_channels=args.width,
                 fno_lifting_channel_ratio=1, fno_n_layers=args.layers,
                 in_gno_channel_mlp_hidden_layers=[args.kernel_width, args.kernel_width],
                 out_gno_channel_mlp_hidden_layers=[args.kernel_width, args.kernel_width],
                 gno_use_open3d=False, gno_use_torch_scatter=False, fno_use_channel_mlp=False,
                 fno_skip="linear", projection_channel_ratio=max(1, args.projection // args.width))
    return model, lambda: model(input_geom=points[None], latent_queries=latent[None],
                                output_queries=points[None], x=inputs)


def run_one(args) -> dict:
    """Build one (library, model), time its training steps; the result as a dict (printed as JSON)."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    library, name = args.only.split(":")
    if name == "baseline":  # the library imported and one Adam step on one number: what every run pays
        __import__("oplearn.models" if library == "oplearn" else "neuralop.models")
        weight = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.Adam([weight])
        (weight**2).sum().backward()
        optimizer.step()
        return {"library": library, "model": name, "max_rss_mb": maxrss_mb()}
    build_model = oplearn_model if library == "oplearn" else neuraloperator_model
    model, predict = build_model(name, args, torch)
    _, _, targets, _ = problem(args, torch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(predict(), targets)
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return {"library": library, "model": name, "parameters": real_parameters(model),
            "step_s": statistics.median(times), "loss": loss.item(), "max_rss_mb": maxrss_mb()}


def real_parameters(model) -> int:
    """Trainable real numbers: a complex parameter counts twice (neuraloperator keeps complex weights)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main(argv=None) -> None:
    args = parse(argv)
    if args.only:
        print(json.dumps(run_one(args)))
        return
    passed = list(argv if argv is not None else sys.argv[1:])
    print(f"N={args.points} points, d={args.dim}, batch {args.batch}, radius {args.radius}, width {args.width}, "
          f"kernel MLP 2x{args.kernel_width}, latent {args.latent}^{args.dim}, modes {args.modes}, "
          f"{args.layers} Fourier layers, {args.threads} threads")
    rows = []
    for only in ("oplearn:baseline", "neuraloperator:baseline", "oplearn:gno", "neuraloperator:gno",
                 "oplearn:gino", "neuraloperator:gino"):
        command = [sys.executable, __file__, *passed, "--only", only]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"{only}: failed: {last}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'library':<15} {'model':<9} {'parameters':>10} {'step (s)':>9} {'peak RSS (MB)':>14}")
    for row in rows:
        step = f"{row['step_s']:.4f}" if "step_s" in row else "-"
        print(f"{row['library']:<15} {row['model']:<9} {row.get('parameters', '-'):>10} {step:>9} "
              f"{row['max_rss_mb']:>14.0f}")
    timed = {(row["library"], row["model"]): row["step_s"] for row in rows if "step_s" in row}
    for name in ("gno", "gino"):
        if ("oplearn", name) in timed and ("neuraloperator", name) in timed:
            print(f"{name}: neuraloperator / oplearn step time = "
                  f"{timed['neuraloperator', name] / timed['oplearn', name]:.2f}")


if __name__ == "__main__":
    main()
