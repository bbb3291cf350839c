"""Physics-informed FNO training (PINO) on Darcy and Burgers: data-only, data-free and hybrid at equal budgets,
test-time fine-tuning on out-of-distribution inputs, and neuraloperator's BurgersEqnLoss beside ours.

    python benchmarks/pino.py darcy --resolution 64 --n-train 100 --epochs 100      # the three recipes
    python benchmarks/pino.py burgers --n-train 100 --epochs 100 --boundary-weight 5 # the same on Burgers
    python benchmarks/pino.py tune --resolution 64 --steps 300                       # test-time fine-tuning
    python benchmarks/pino.py burgers-loss                                           # ours vs neuraloperator

darcy: our Darcy generator on nodes (a two-valued, f = 1, u = 0 on the boundary; solved twice finer), the FNO
(modes 12, width 32) trained three ways with the same optimizer, batch size and epochs: ``data-only``
(relative L2 on ``--fraction`` of the training samples), ``hybrid`` (every training input, the same samples
labelled: ``data.train.labelled``; relative L2 on those, the pde and boundary residual terms on all; with
``--labelled-per-batch m`` every batch holds m labelled samples beside ``--batch-size`` unlabelled ones) and
``data-free`` (every training input, the residual terms only, no solution read). ``--norm`` sets the pde term's
norm (l2, h-1, h-2), ``--boundary-weight`` the boundary term's weight.
Every error is the relative L2 against our solver's solutions on the test split.

burgers: our Burgers solver (nu = 0.1, periodic, 1024 points stored at ``--resolution`` 128, 41 snapshots on
[0, 1]); the operator maps u(0.25) to u on [0.25, 1] (the PINO paper's space-time setting, started after
the random field's first transient), a space-time FNO over (x, t); the same three recipes with the pde term
(``Burgers.residual``) and the initial term (u at t = 0.25 against the input) weighted by
``--boundary-weight``.

tune: a data-only FNO trained on the default coefficients (3 / 12), then each of ``--samples`` inputs drawn with
another contrast (``--high``, default 24: twice the training one) is fine-tuned alone by its residual
(oplearn.train.fine_tune, Adam, ``--steps`` steps); the mean error before and after.

burgers-loss: the residual of our Burgers solver's trajectories (space-time, nu = 0.1) by oplearn's
Burgers.residual (spectral in x, second-order finite differences in t) and by neuraloperator 2.0.0's
BurgersEqnLoss (finite differences), for the solution, a 1% perturbed and a time-shifted field, and each
loss's time per call; the same tensors go to both. The residual starts at ``--start`` (0.25): in the first
instants the random initial condition's high modes decay at rates nu (2 pi k)^2 that snapshot finite
differences in time cannot resolve, and that layer would dominate both losses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from oplearn.data.batch import Batch
from oplearn.data.generate import generate
from oplearn.data.pdes import DarcyFlow, get_pde
from oplearn.train import fit
from oplearn.train.fine_tune import default_loss, fine_tune
from oplearn.train.recipes import load_run
from oplearn.train.run_dir import RunDir

PDE_WEIGHTS = {"l2": 1e-4, "h-1": 0.05, "h-2": 1.0}  # the pde term's weight by its norm (the boundary term's is 1)


def physics_terms(norm: str = "l2", boundary_weight: float = 1.0, pde_weight: float | None = None) -> list[dict]:
    """fine_tune's default pde + boundary terms, the pde term in ``norm`` at its weight by norm (PDE_WEIGHTS)."""
    pde, boundary = default_loss("darcy", norm, boundary_weight)
    return [{**pde, "weight": PDE_WEIGHTS[norm] if pde_weight is None else pde_weight}, boundary]


def darcy_files(data_dir: Path, resolution: int, n_train: int, n_test: int) -> dict[str, Path]:
    files = {"train": data_dir / f"pino_darcy_train_{resolution}.h5", "test": data_dir / f"pino_darcy_test_{resolution}.h5"}
    for (split, path), seed, n in zip(files.items(), (1, 2), (n_train, n_test)):
        if not path.exists():
            generate("darcy", n, resolution, seed=seed, out=path, params={"oversample": 2}, progress=False)
    return files


def recipe_parts(recipe: str, physics: list[dict], args) -> tuple[dict, object, int, int]:
    """What the three recipes share on any PDE: ``(train data overrides, loss, epochs, batch size)``. data-only
    reads the labelled ``--fraction`` of the training samples, hybrid every input (the same samples labelled),
    data-free every input and no solution; all make the same number of optimizer steps."""
    labelled = max(1, round(args.fraction * args.n_train))
    train = {"n": labelled if recipe == "data-only" else args.n_train}
    # hybrid: the data term scores the labelled share of each batch (zero elsewhere); weighted by the inverse
    # share it weighs as much per step as in data-only. With --labelled-per-batch m a batch is m labelled
    # samples and batch-size unlabelled ones (data.train.labelled_per_batch), else a shuffle of all inputs.
    per_batch = args.labelled_per_batch if recipe == "hybrid" else None
    batch_size = args.batch_size + (per_batch or 0)
    data = {"name": "relative_l2", "weight": batch_size / per_batch if per_batch else args.n_train / labelled}
    loss = {"data-only": "relative_l2", "hybrid": [data, *physics], "data-free": physics}[recipe]
    if recipe == "data-free":
        train["targets"] = False
    if recipe == "hybrid":
        train.update(labelled=labelled, labelled_per_batch=per_batch)
    # equal budgets in optimizer steps: every recipe makes epochs * (n_train / batch) steps
    steps = args.epochs * max(1, args.n_train // args.batch_size)
    return train, loss, max(1, steps // steps_per_epoch(train, args.batch_size)), batch_size


def recipe_config(recipe: str, files, args) -> dict:
    """Darcy: the FNO (modes 12, width 32) on the grid; pde and boundary terms."""
    train, loss, epochs, batch_size = recipe_parts(recipe, physics_terms(args.norm, args.boundary_weight,
                                                                         args.pde_weight), args)
    return {"seed": args.seed, "model": {"name": "fno", "modes": [12, 12], "width": 32},
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": 3e-3, "loss": loss,
                      "balance": args.balance},
            "data": {"train": {"path": str(files["train"]), **train}, "test": {"path": str(files["test"]),
                                                                              "n": args.n_test},
                     "normalize_outputs": recipe != "data-free"}}


def steps_per_epoch(train: dict, batch_size: int) -> int:
    """Optimizer steps in one epoch of the data section ``train`` (``batch_size`` unlabelled samples a step
    when it has ``labelled_per_batch``)."""
    if train.get("labelled_per_batch"):
        return -(-(train["n"] - train["labelled"]) // batch_size)
    return max(1, -(-train["n"] // batch_size))


BURGERS = {"viscosity": 0.1, "final_time": 1.0, "n_times": 40, "solver_resolution": 1024}
BURGERS_START = 10  # the input snapshot, t = 0.25: past the initial field's stiff transient (see the docstring)


def burgers_files(data_dir: Path, resolution: int, n_train: int, n_test: int) -> dict[str, Path]:
    files = {"train": data_dir / f"pino_burgers_train_{resolution}.h5",
             "test": data_dir / f"pino_burgers_test_{resolution}.h5"}
    for (split, path), seed, n in zip(files.items(), (1, 2), (n_train, n_test)):
        if not path.exists():
            generate("burgers", n, resolution, seed=seed, out=path, params=BURGERS, progress=False)
    return files


def burgers_config(recipe: str, files, args) -> dict:
    """Burgers: u(t = 0.25) -> u on [0.25, 1] (31 snapshots, the first the input: the initial term's), a
    space-time FNO over (x, t), periodic in x and padded in t; the pde term (Burgers.residual: spectral in x,
    second-order in t) and the initial term."""
    weight = 1.0 if args.pde_weight is None else args.pde_weight
    physics = [{"name": "pde", "weight": weight}, {"name": "initial", "weight": args.boundary_weight}]
    train, loss, epochs, batch_size = recipe_parts(recipe, physics, args)
    steps = {"input_steps": [BURGERS_START], "output_steps": list(range(BURGERS_START, BURGERS["n_times"] + 1))}
    return {"seed": args.seed, "model": {"name": "fno", "modes": [16, 12], "width": 32, "padding": [0.0, 0.25]},
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": 3e-3, "loss": loss, "task": "space_time",
                      "balance": args.balance},
            "data": {"train": {"path": str(files["train"]), **train, **steps},
                     "test": {"path": str(files["test"]), "n": args.n_test, **steps},
                     "normalize_outputs": False, "normalize_inputs": False}}


def run_recipes(args) -> None:
    """data-only, hybrid and data-free on ``args.experiment`` (darcy or burgers), one table row each."""
    torch.set_num_threads(args.threads)
    darcy = args.experiment == "darcy"
    files = (darcy_files if darcy else burgers_files)(args.data_dir, args.resolution, args.n_train, args.n_test)
    config_of = recipe_config if darcy else burgers_config
    if darcy:
        weight = physics_terms(args.norm, args.boundary_weight, args.pde_weight)[0]["weight"]
        terms = f"pde term {args.norm} at weight {weight:g}, boundary term at {args.boundary_weight:g}"
    else:
        weight = 1.0 if args.pde_weight is None else args.pde_weight
        terms = f"pde term at weight {weight:g}, initial term at {args.boundary_weight:g}"
    print(f"{args.experiment} {args.resolution}, {args.n_train} train inputs ({args.fraction:.0%} labelled for "
          f"data-only and hybrid), {args.n_test} test, {args.epochs} epochs-equivalent, {args.threads} threads, "
          f"{terms}\n")
    print("| recipe | training samples (labelled) | optimizer steps | test rel. L2 | seconds |\n| --- | --- | --- | --- | --- |")
    for recipe in args.recipes:
        config = config_of(recipe, files, args)
        per_batch = f"_m{args.labelled_per_batch}" if recipe == "hybrid" and args.labelled_per_batch else ""
        norm = f"_{args.norm}" if darcy else ""
        name = f"{recipe}{norm}_p{weight:g}_b{args.boundary_weight:g}{per_batch}_s{args.seed}"
        out = args.out / f"{args.experiment}{args.resolution}_{name}"
        started = time.perf_counter()
        fit(config, out, progress=False, overwrite=True)
        seconds = time.perf_counter() - started
        metrics = RunDir(out).read_metrics()
        n = config["data"]["train"]["n"]
        labelled = {"data-free": 0, "hybrid": config["data"]["train"].get("labelled")}.get(recipe, n)
        steps = config["train"]["epochs"] * steps_per_epoch(config["data"]["train"], args.batch_size)
        print(f"| {recipe} | {n} ({labelled}) | {steps} | {metrics[-1]['test_rel_l2']:.4f} | {seconds:.0f} |", flush=True)


def run_tune(args) -> None:
    torch.set_num_threads(args.threads)
    files = darcy_files(args.data_dir, args.resolution, args.n_train, args.n_test)
    args.fraction = 1.0
    out = args.out / f"darcy{args.resolution}_trained"
    if not (out / "results.json").exists():
        fit(recipe_config("data-only", files, args), out, progress=False, overwrite=True)
    _, model, task = load_run(out, device="cpu")
    pde = DarcyFlow(high=args.high, oversample=2)
    before, after = [], []
    for index in range(args.samples):
        sample = pde.sample(7, index, args.resolution)
        batch = Batch(torch.tensor(sample["inputs"])[None], torch.tensor(sample["outputs"])[None],
                      spacing=(1 / (args.resolution - 1),) * 2, pde="darcy", params=pde.model_dump(mode="json"))
        tuned, _ = fine_tune(model, task, batch, steps=args.steps, lr=args.tune_lr,
                             loss=physics_terms(args.norm, args.boundary_weight, args.pde_weight))
        with torch.no_grad():
            for model_, errors in ((model, before), (tuned, after)):
                errors.append(((task.predict(model_, batch) - batch.targets).norm() / batch.targets.norm()).item())
        print(json.dumps({"sample": index, "before": before[-1], "after": after[-1]}), flush=True)
    mean_before, mean_after = statistics.mean(before), statistics.mean(after)
    print(f"\nDarcy {args.resolution}, contrast {args.high}/3 (trained on 12/3), {args.samples} samples, "
          f"{args.steps} Adam steps at lr {args.tune_lr}: rel. L2 {mean_before:.4f} -> {mean_after:.4f} "
          f"({100 * (mean_after / mean_before - 1):+.0f}%)")


def run_burgers_loss(args) -> None:
    torch.set_num_threads(args.threads)
    n_times, final_time, resolution = args.snapshots, 1.0, 128
    pde = get_pde("burgers", final_time=final_time, n_times=n_times, solver_resolution=resolution)
    trajectories = torch.tensor(pde.solve_batch(0, range(4), resolution)["trajectories"])  # (4, T+1, 1, X)
    first = round(args.start / final_time * n_times)  # skip the initial layer: see the module docstring
    trajectories, times = trajectories[:, first:], pde.times()[first:].tolist()
    fields = {"solution": trajectories,
              "1% perturbed": trajectories * 1.01,
              "shifted one step": torch.cat([trajectories[:, :1], trajectories[:, :-1]], dim=1)}
    try:
        from neuralop.losses.equation_losses import BurgersEqnLoss
        theirs = BurgersEqnLoss(visc=pde.viscosity, method="fdm", domain_length=[final_time - times[0], 1.0])
    except ImportError as error:
        theirs = None
        print(f"neuraloperator is not installed ({error}); pip install 'neuraloperator==2.0.0' (the bench extra)")
    print(f"Burgers nu = {pde.viscosity}, {resolution} points, {len(times)} snapshots on [{times[0]}, {final_time}], "
          f"4 samples\n")
    print("| field | oplearn mean residual^2 | neuraloperator BurgersEqnLoss |\n| --- | --- | --- |")
    timings = {"oplearn": [], "neuraloperator": []}
    for label, field in fields.items():
        batch = Batch(field[:, :1, 0], field[:, 1:, 0], spacing=(1 / resolution,), pde="burgers",
                      params={**pde.model_dump(mode="json"), "input_times": times[:1], "output_times": times[1:]})
        started = time.perf_counter()
        ours = pde.residual(field[:, 1:, 0], batch).square().mean().item()
        timings["oplearn"].append(time.perf_counter() - started)
        line = f"| {label} | {ours:.3e} |"
        if theirs is not None:
            started = time.perf_counter()
            value = theirs(field.transpose(1, 2)).item()  # (B, 1, T, X)
            timings["neuraloperator"].append(time.perf_counter() - started)
            line += f" {value:.3e} |"
        else:
            line += " - |"
        print(line)
    print("\n" + ", ".join(f"{k}: {1000 * statistics.median(v):.2f} ms per call" for k, v in timings.items() if v))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=("darcy", "burgers", "tune", "burgers-loss"))
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=50)
    parser.add_argument("--fraction", type=float, default=0.1, help="labelled share of the training inputs")
    parser.add_argument("--epochs", type=int, default=100, help="epochs over n-train inputs (steps are equal)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--balance", default="fixed")
    parser.add_argument("--labelled-per-batch", type=int, default=None,
                        help="hybrid: this many labelled samples join every batch of --batch-size unlabelled ones")
    parser.add_argument("--norm", choices=sorted(PDE_WEIGHTS), default="l2", help="the pde term's norm")
    parser.add_argument("--boundary-weight", type=float, default=1.0, help="the boundary (darcy) or initial "
                        "(burgers) term's weight")
    parser.add_argument("--pde-weight", type=float, default=None, help="default: by --norm (PDE_WEIGHTS)")
    parser.add_argument("--recipes", nargs="+", default=["data-only", "hybrid", "data-free"])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--tune-lr", type=float, default=1e-3)
    parser.add_argument("--high", type=float, default=24.0)
    parser.add_argument("--snapshots", type=int, default=200, help="burgers-loss: time intervals on [0, 1]")
    parser.add_argument("--start", type=float, default=0.25, help="burgers-loss: first time of the residual")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("data") / "pino")
    parser.add_argument("--out", type=Path, default=Path("runs") / "pino")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.experiment == "burgers" and args.resolution == 64:
        args.resolution = 128  # Burgers' default grid (the flag's default is Darcy's)
    {"darcy": run_recipes, "burgers": run_recipes, "tune": run_tune,
     "burgers-loss": run_burgers_loss}[args.experiment](args)


if __name__ == "__main__":
    main()
