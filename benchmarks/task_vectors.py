"""Task arithmetic on neural operators: do tangent-space task vectors interfere less?

    python benchmarks/task_vectors.py --out runs/task_vectors      # about 5 minutes on 2 CPU cores

One base FNO is trained on default Darcy flow (coefficient 12/3). It is then
fine-tuned on two other regimes, A (high contrast, 20/2) and B (low contrast,
6/4), once non-linearly (all weights, ordinary training) and once in tangent
space (the linearized model of ``oplearn.models.linearize``), with the same
loop, optimizer and budget. Each fine-tuning leaves a task vector
``tau = theta_ft - theta_0``; the merged model is ``theta_0 + a (tau_A + tau_B)``
(for the tangent-space pair: evaluated as the linearized model at that point).
Prints a markdown table of test relative L2 errors on the three regimes.
Figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path

import torch

from oplearn.models.linearize import TaskVector, linearize
from oplearn.train import fit
from oplearn.train.config import DataSource
from oplearn.train.recipes import load_run
from oplearn.train.run_dir import RunDir
from oplearn.data.sources import load_source

REGIMES = {"base 12/3": {"high": 12.0, "low": 3.0}, "A 20/2": {"high": 20.0, "low": 2.0},
           "B 6/4": {"high": 6.0, "low": 4.0}}


def source(root: Path, name: str, params: dict, n: int, resolution: int, seed: int) -> DataSource:
    tag = f"{name.split()[0]}_{n}_{resolution}_{seed}"
    return DataSource(path=str(root / f"darcy_{tag}.h5"), pde="darcy", n=n, resolution=resolution, seed=seed,
                      params=params)


def finetune(model, task, data, epochs: int, lr: float, batch_size: int, seed: int):
    """Adam with a cosine schedule on ``task``'s training loss; the same loop for both kinds of model."""
    torch.manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr)
    steps = epochs * math.ceil(len(data) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data))
        for start in range(0, len(data), batch_size):
            loss = task.per_sample_loss(model, data.batch(order[start:start + batch_size].tolist())).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for data and the base run (default: a temp dir)")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--n-base", type=int, default=300)
    parser.add_argument("--n-task", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--base-epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs per task")
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (both kinds)")
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--modes", type=int, default=8)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0], help="merge coefficients a")
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    root = Path(args.out or tempfile.mkdtemp(prefix="task_vectors_"))
    root.mkdir(parents=True, exist_ok=True)

    base_name = next(iter(REGIMES))
    config = {
        "seed": 0, "device": "cpu",
        "data": {"train": source(root, base_name, REGIMES[base_name], args.n_base, args.resolution, 1).model_dump(),
                 "test": source(root, base_name, REGIMES[base_name], args.n_test, args.resolution, 2).model_dump()},
        "model": {"name": "fno", "modes": [args.modes, args.modes], "width": args.width, "n_layers": 4,
                  "padding": 0.1, "projection_channels": 4 * args.width},
        "train": {"epochs": args.base_epochs, "batch_size": 20, "lr": 3e-3},
    }
    run = root / "base_run"
    if not RunDir(run).results.is_file():
        fit(config, run, progress=False, overwrite=True)
    _, base, task = load_run(run, "cpu")
    tests = {name: load_source(source(root, name, params, args.n_test, args.resolution, 20 + i), name)
             for i, (name, params) in enumerate(REGIMES.items())}
    tasks = {name: load_source(source(root, name, REGIMES[name], args.n_task, args.resolution, 10 + i), name)
             for i, name in enumerate(list(REGIMES)[1:])}

    models: dict[str, torch.nn.Module] = {"base": base}
    vectors: dict[str, dict[str, TaskVector]] = {"non-linear": {}, "tangent": {}}
    for i, (name, data) in enumerate(tasks.items()):
        short = name.split()[0]
        tuned = finetune(copy.deepcopy(base), task, data, args.epochs, args.lr, 20, seed=100 + i)
        models[f"non-linear ft {short}"] = tuned
        vectors["non-linear"][short] = TaskVector.between(base, tuned)
        tangent = finetune(linearize(base), task, data, args.epochs, args.lr, 20, seed=100 + i)
        models[f"tangent ft {short}"] = tangent
        vectors["tangent"][short] = TaskVector.between(base, tangent)
    for kind, pair in vectors.items():
        total = pair["A"] + pair["B"]
        for scale in args.scales:
            model = linearize(base) if kind == "tangent" else copy.deepcopy(base)
            models[f"{kind} merged a={scale:g}"] = (scale * total).apply_to(model).eval()

    print(f"Base FNO width {args.width}, modes {args.modes}, {args.n_base} samples {args.base_epochs} epochs; "
          f"fine-tuning {args.n_task} samples x {args.epochs} epochs, Adam lr {args.lr}; test {args.n_test} "
          f"per regime at {args.resolution}x{args.resolution}. Test relative L2:\n")
    order = ["base"] + sorted((k for k in models if k != "base"),
                              key=lambda k: (not k.startswith("non"), "merged" in k, k))
    models = {k: models[k] for k in order}
    print("| model | " + " | ".join(REGIMES) + " | mean A,B |")
    print("| --- |" + " --- |" * (len(REGIMES) + 1))
    for label, model in models.items():
        errors = [task.evaluate(model, data, torch.device("cpu")) for data in tests.values()]
        print(f"| {label} | " + " | ".join(f"{e:.4f}" for e in errors) + f" | {(errors[1] + errors[2]) / 2:.4f} |")
    norms = {kind: {k: round(v.norm(), 3) for k, v in pair.items()} for kind, pair in vectors.items()}
    cosines = {kind: sum((pair["A"][k] * pair["B"][k]).sum() for k in pair["A"]).item()
               / (pair["A"].norm() * pair["B"].norm()) for kind, pair in vectors.items()}
    print(f"\ntask-vector norms {norms}; cosine(tau_A, tau_B) "
          + ", ".join(f"{kind} {c:.3f}" for kind, c in cosines.items()))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
