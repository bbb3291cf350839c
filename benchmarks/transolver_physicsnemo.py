"""Transolver: oplearn's against NVIDIA PhysicsNeMo's, per training step at equal parameters, on CPU.

    python benchmarks/transolver_physicsnemo.py                    # B=4, N=4096 2-D points, width 128, 4 layers
    python benchmarks/transolver_physicsnemo.py --smoke            # tiny sizes: does everything run?
    python benchmarks/transolver_physicsnemo.py --train data/mesh/elasticity_train_r16_n200.h5 \
        --test data/mesh/elasticity_test_r16_n100.h5 --epochs 15     # trained error side by side

The same data (B point sets of N uniform points in [0, 1]^2, one input channel, one output channel) and the
same architecture (width, layers, heads, slices, MLP ratio; the parameter counts are printed and must
match). One training step is forward, mean squared error, backward and an Adam step; the figure is the
median over --steps steps after --warmup, with ``torch.set_num_threads(--threads)``. Peak memory is
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of a separate Python process per library, printed whole and
as the rise during training over the process's peak before the first step (imports, model, data).

The two models have the same parameters in the same roles, so the script first copies PhysicsNeMo's
weights into oplearn's model (float64) and prints the largest difference of their outputs (PhysicsNeMo
adds 1e-2 to the slice weights' sums, oplearn 1e-5; the second figure uses 1e-2 in both).

``--train FILE --test FILE``: both models, starting from the same weights (PhysicsNeMo's initialization copied
into oplearn's), train on the same mesh file with the same loop: one sample per step (PhysicsNeMo's
Transolver has no padding mask, so samples with different point counts cannot share a batch), the same
sample order, Adam at lr 1e-3, relative L2 loss on targets standardized by the training mean and std; the
test relative L2 of each after every epoch, and the seconds per epoch.

PhysicsNeMo's package imports timm (for other models), which imports torchvision. Where torchvision
cannot load (its PyPI wheel is a CUDA build and needs CUDA torch libraries), ``--torchvision stand-in``
(the default ``auto`` does it when the import fails) puts an empty stand-in module in its place before
importing PhysicsNeMo; its Transolver does not use torchvision. Tested with nvidia-physicsnemo 2.2.2.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import resource
import statistics
import subprocess
import sys
import time
import types

import torch
from torch import nn

from oplearn.models import build

LIBRARIES = ("oplearn", "physicsnemo")


# ---- importing PhysicsNeMo where torchvision cannot load -------------------------------------------------

class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of ``torchvision[.*]`` give empty modules whose every public name is a do-nothing module class."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _stand_in_attribute
        return module

    def exec_module(self, module):
        pass


class _AnyAttribute(type):
    def __getattr__(cls, name):
        return _stand_in_attribute(name)


def _stand_in_attribute(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return _AnyAttribute(name, (nn.Module,), {"__init__": lambda self, *args, **kwargs: nn.Module.__init__(self)})


def import_physicsnemo_transolver(torchvision: str):
    """PhysicsNeMo's Transolver class, with torchvision stood in for if asked (or, with "auto", if it fails)."""
    if torchvision == "auto":
        try:
            import torchvision  # noqa: F401
        except (ImportError, RuntimeError, OSError) as error:
            print(f"torchvision does not import ({str(error).splitlines()[0]}); using a stand-in", file=sys.stderr)
            torchvision = "stand-in"
    if torchvision == "stand-in":
        for name in [key for key in sys.modules if key == "torchvision" or key.startswith("torchvision.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _TorchvisionStandIn())
    from physicsnemo.models.transolver import Transolver

    return Transolver


# ---- the two models ---------------------------------------------------------------------------------------

def make_model(library: str, args, torchvision: str = "auto") -> nn.Module:
    sizes = {"width": args.width, "n_layers": args.layers, "n_heads": args.heads, "n_slices": args.slices}
    if library == "oplearn":
        return build("transolver", 1, 1, dim=2, mlp_ratio=float(args.mlp_ratio), **sizes)
    Transolver = import_physicsnemo_transolver(torchvision)
    return Transolver(functional_dim=1, out_dim=1, embedding_dim=2, n_layers=args.layers, n_hidden=args.width,
                      n_head=args.heads, mlp_ratio=args.mlp_ratio, slice_num=args.slices, structured_shape=None,
                      use_te=False)


def predict(library: str, model: nn.Module, inputs: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``(B, 1, N)`` predictions from inputs ``(B, 1, N)`` and coordinates ``(B, 2, N)``."""
    if library == "oplearn":
        return model(inputs, coords=coords)
    return model(inputs.transpose(1, 2), embedding=coords.transpose(1, 2)).transpose(1, 2)


def copy_physicsnemo_weights(source: nn.Module, target: nn.Module) -> None:
    """Load PhysicsNeMo's Transolver weights into oplearn's (same roles; PhysicsNeMo's input is
    ``[coordinates, features]``, oplearn's ``[features, coordinates]``; its q, k, v are one stacked map)."""
    theirs = source.state_dict()
    ours = {}
    first = theirs["preprocess.layers.0.weight"]
    ours["embedding.0.weight"] = torch.cat([first[:, 2:], first[:, :2]], dim=1)
    ours["embedding.0.bias"] = theirs["preprocess.layers.0.bias"]
    for kind in ("weight", "bias"):
        ours[f"embedding.2.{kind}"] = theirs[f"preprocess.layers.2.{kind}"]
    n_layers = len(target.blocks)
    for i in range(n_layers):
        block = f"blocks.{i}."  # the same prefix in both models
        for kind in ("weight", "bias"):
            ours[block + f"attention_norm.{kind}"] = theirs[block + f"ln_1.{kind}"]
            ours[block + f"projection.{kind}"] = torch.cat([theirs[block + f"Attn.in_project_fx.{kind}"],
                                                                 theirs[block + f"Attn.in_project_x.{kind}"]])
            ours[block + f"attention.slice_logits.{kind}"] = theirs[block + f"Attn.in_project_slice.{kind}"]
            ours[block + f"attention.output.{kind}"] = theirs[block + f"Attn.out_linear.{kind}"]
            ours[block + f"mlp_norm.{kind}"] = theirs[block + f"ln_mlp1.0.{kind}"]
            ours[block + f"mlp.0.{kind}"] = theirs[block + f"ln_mlp1.1.layers.0.{kind}"]
            ours[block + f"mlp.2.{kind}"] = theirs[block + f"ln_mlp1.1.layers.2.{kind}"]
        ours[block + "attention.temperature"] = theirs[block + "Attn.temperature"].reshape(-1, 1, 1)
        q, k, v = theirs[block + "Attn.qkv_project.weight"].chunk(3)
        ours[block + "attention.query.weight"] = q
        ours[block + "attention.key.weight"] = k
        ours[block + "attention.value.weight"] = v
    last = f"blocks.{n_layers - 1}.ln_mlp2."
    for kind in ("weight", "bias"):
        ours[f"head_norm.{kind}"] = theirs[last + f"0.{kind}"]
        ours[f"head.{kind}"] = theirs[last + f"1.{kind}"]
    target.load_state_dict(ours)


def compare_outputs(args) -> tuple[float, float]:
    """Largest relative difference of the two models' outputs with PhysicsNeMo's weights copied, in float64:
    as they are, and with oplearn's slice-norm epsilon (1e-5) set to PhysicsNeMo's (1e-2)."""
    torch.manual_seed(0)
    theirs = make_model("physicsnemo", args, args.torchvision).double().eval()
    ours = make_model("oplearn", args).double().eval()
    copy_physicsnemo_weights(theirs, ours)
    inputs, coords = torch.randn(2, 1, 300, dtype=torch.float64), torch.rand(2, 2, 300, dtype=torch.float64)
    differences = []
    with torch.no_grad():
        reference = predict("physicsnemo", theirs, inputs, coords)
        for eps in (None, 1e-2):
            for block in ours.blocks:
                block.attention.eps = eps or block.attention.eps
            difference = (predict("oplearn", ours, inputs, coords) - reference).abs().max() / reference.abs().max()
            differences.append(float(difference))
    return tuple(differences)


# ---- one library's measurement, in its own process ---------------------------------------------------------

def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(library: str, args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = make_model(library, args, args.torchvision)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = torch.randn(args.batch, 1, args.points)
    coords = torch.rand(args.batch, 2, args.points)
    targets = torch.sin(6 * coords[:, :1]) * inputs
    before = peak_mib()
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = (predict(library, model, inputs, coords) - targets).pow(2).mean()
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return {"library": library, "parameters": sum(p.numel() for p in model.parameters()),
            "median_step_s": statistics.median(times), "min_step_s": min(times), "max_step_s": max(times),
            "peak_rss_mib": peak_mib(), "training_rise_mib": peak_mib() - before, "final_loss": loss.item()}


def train_side_by_side(args) -> None:
    """Both Transolvers trained alike on ``args.train``, scored on ``args.test`` (see the docstring)."""
    from oplearn.data.sources import open_data

    torch.set_num_threads(args.threads)
    train, test = open_data(args.train), open_data(args.test)
    if train.channels != (1, 1):
        raise SystemExit(f"{args.train}: one input and one output channel expected, got {train.channels}")
    samples = {name: [data.batch([i]) for i in range(len(data))] for name, data in (("train", train), ("test", test))}
    targets = torch.cat([b.targets.flatten() for b in samples["train"]])
    mean, std = targets.mean(), targets.std()
    torch.manual_seed(0)
    theirs = make_model("physicsnemo", args, args.torchvision)
    ours = make_model("oplearn", args)
    copy_physicsnemo_weights(theirs, ours)
    print(f"{len(samples['train'])} train / {len(samples['test'])} test samples of {args.train}, "
          f"{sum(p.numel() for p in ours.parameters()):,} parameters each, {args.epochs} epochs of one-sample steps")
    print("| epoch | oplearn test rel. L2 | physicsnemo test rel. L2 | oplearn s | physicsnemo s |\n"
          "| --- | --- | --- | --- | --- |")
    optimizers = {"oplearn": torch.optim.Adam(ours.parameters(), lr=1e-3),
                  "physicsnemo": torch.optim.Adam(theirs.parameters(), lr=1e-3)}
    models = {"oplearn": ours, "physicsnemo": theirs}

    def relative(prediction, batch):
        truth = (batch.targets - mean) / std
        return (prediction - truth).norm() / truth.norm()

    for epoch in range(args.epochs):
        order = torch.randperm(len(samples["train"]), generator=torch.Generator().manual_seed(epoch))
        row = {}
        for library, model in models.items():
            started = time.perf_counter()
            model.train()
            for index in order.tolist():
                batch = samples["train"][index]
                optimizers[library].zero_grad(set_to_none=True)
                relative(predict(library, model, batch.inputs, batch.coords), batch).backward()
                optimizers[library].step()
            seconds = time.perf_counter() - started
            model.eval()
            with torch.no_grad():
                errors = [((predict(library, model, b.inputs, b.coords) * std + mean - b.targets).norm()
                           / b.targets.norm()).item() for b in samples["test"]]
            row[library] = (statistics.mean(errors), seconds)
        print(f"| {epoch + 1} | {row['oplearn'][0]:.4f} | {row['physicsnemo'][0]:.4f} | {row['oplearn'][1]:.1f} | "
              f"{row['physicsnemo'][1]:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--points", type=int, default=4096)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--mlp-ratio", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--torchvision", choices=("auto", "stand-in", "real"), default="auto")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps")
    parser.add_argument("--measure", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--train", default=None, help="a mesh file: train both models on it (see above)")
    parser.add_argument("--test", default=None, help="with --train: the file they are scored on")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    if args.train:
        if not args.test:
            parser.error("--train needs --test")
        return train_side_by_side(args)
    if args.smoke:
        args.batch, args.points, args.width, args.layers, args.heads, args.slices = 2, 256, 32, 2, 4, 8
        args.steps, args.warmup = 3, 1
    if args.measure:
        print(json.dumps(measure(args.measure, args)))
        return

    print(f"B={args.batch} N={args.points} width={args.width} layers={args.layers} heads={args.heads} "
          f"slices={args.slices} mlp_ratio={args.mlp_ratio} threads={args.threads} steps={args.steps}")
    as_is, same_eps = compare_outputs(args)
    print(f"outputs with copied weights (float64): max |physicsnemo - oplearn| / max |physicsnemo| = {as_is:.2e}, "
          f"{same_eps:.2e} with PhysicsNeMo's slice-norm epsilon")
    results = {}
    for library in LIBRARIES:
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--measure", library],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{library} run failed:\n{done.stderr}")
        results[library] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'library':12} {'parameters':>10} {'median step':>12} {'peak RSS':>10} {'rise':>9}")
    for library, r in results.items():
        print(f"{library:12} {r['parameters']:>10} {r['median_step_s'] * 1e3:>10.1f}ms {r['peak_rss_mib']:>8.0f}MiB "
              f"{r['training_rise_mib']:>7.0f}MiB")
    ours, theirs = results["oplearn"], results["physicsnemo"]
    if ours["parameters"] != theirs["parameters"]:
        print(f"warning: parameter counts differ ({ours['parameters']} vs {theirs['parameters']})")
    print(f"speed-up (physicsnemo / oplearn step time): {theirs['median_step_s'] / ours['median_step_s']:.2f}x; "
          f"training memory rise ratio (oplearn / physicsnemo): "
          f"{ours['training_rise_mib'] / max(theirs['training_rise_mib'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
