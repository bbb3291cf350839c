"""DeepONet: oplearn against DeepXDE 1.15 (pytorch backend) and against our FNO at equal parameters.

    python benchmarks/deeponet.py [--cases burgers darcy] [--steps 4000] [--batch 32] [--threads 2] [--branch cnn]

Data (cached under data/bench/): Burgers (nu = 0.1, T = 1) solved on 1024 points (``solver_resolution``
1024, not the paper's 8192, to keep generation to a minute or two) and subsampled to 128; Darcy generated
at 29x29 directly (our generator at 421 then subsampled would take hours on 2 cores). 1000 train / 200 test
samples each. Both DeepONets: MLP branch [m, 128, 128, 128], trunk [d, 128, 128, 128] with the activation
after the trunk's last layer (DeepXDE's definition), ReLU, p = 128, one bias; trunk on the output grid's
coordinates in [0, 1]^d (Cartesian product). ``--branch cnn``: both branches are instead our CNN
(``ConvEncoder``: stride-2 3x3 convolutions with 16, 32, 64 channels, then a dense layer of 128 and the p outputs;
DeepXDE takes the same module as its user-defined branch net, behind an unflatten of its sensor vector), as in
Lu et al. 2022's Darcy case; the FNO row is then left out. Same data as the model sees them (inputs normalized with the
training split's per-channel mean/std; the output affine ``u = std * net + mean`` as our task's decoder,
a DeepXDE output transform), the same loss (mean relative L2), Adam lr 1e-3 without weight decay, the same
steps and batch size. Initialization differs (DeepXDE: Glorot normal; ours: PyTorch's default).

Time per step: our trainer's ``epoch_seconds`` (the whole training loop: batch assembly, normalization,
forward, backward, Adam; not the per-epoch test evaluation and checkpoint, reported apart as wall time)
and DeepXDE's ``model.train`` wall time divided by the steps (its test loss evaluated once, at the end).
Each side runs in its own process (DeepXDE sets global torch state) on ``--threads`` CPU threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "bench"
N_TRAIN, N_TEST = 1000, 200
WIDTH, DEPTH, BASIS = 128, 2, 128
CONV_CHANNELS = [16, 32, 64]


def data_files(case: str) -> dict[str, Path]:
    """``{"train": file, "test": file}`` of a case, generated once."""
    from oplearn.data import generate
    from oplearn.data.writer import DatasetWriter

    files = {split: DATA / f"deeponet_{case}_{split}.h5" for split in ("train", "test")}
    if all(path.is_file() for path in files.values()):
        return files
    DATA.mkdir(parents=True, exist_ok=True)
    n = N_TRAIN + N_TEST
    if case == "burgers":
        raw = generate("burgers", n, 1024, seed=0, batch=50, progress=True, params={"solver_resolution": 1024})
        inputs, outputs = raw["trajectories"][:, 0, :, ::8], raw["trajectories"][:, -1, :, ::8]
        params = {"viscosity": 0.1, "solver_resolution": 1024, "subsampled_from": 1024}
    else:
        raw = generate("darcy", n, 29, seed=0, batch=50, progress=True)
        inputs, outputs, params = raw["inputs"], raw["outputs"], {}
    for split, rows in (("train", slice(0, N_TRAIN)), ("test", slice(N_TRAIN, n))):
        a, u = inputs[rows].astype(np.float32), outputs[rows].astype(np.float32)
        with DatasetWriter(files[split], pde=case, params=params, seed=0, n_samples=len(a),
                           shapes={"inputs": a.shape[1:], "outputs": u.shape[1:]}, overwrite=True) as writer:
            writer.append({"inputs": a, "outputs": u})
    return files


def ours(case: str, model: str, steps: int, batch: int, hyper: dict, device: str = "cpu") -> dict:
    from oplearn.train import fit

    files = data_files(case)
    epochs = max(1, round(steps * batch / N_TRAIN))
    config = {"seed": 0, "device": device,
              "data": {"train": {"path": str(files["train"])}, "test": {"path": str(files["test"])}},
              "model": {"name": model, **hyper},
              "train": {"epochs": epochs, "batch_size": batch, "lr": 1e-3, "weight_decay": 0.0,
                        "scheduler": "constant"}}
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        results = fit(config, Path(out) / "run", progress=False)
        wall = time.perf_counter() - started
        metrics = [json.loads(line) for line in (Path(out) / "run" / "metrics.jsonl").read_text().splitlines()]
    steps_done = epochs * -(-N_TRAIN // batch)
    return {"library": "oplearn", "model": model, "rel_l2": results["test"]["rel_l2"],
            "parameters": results["parameters"], "steps": steps_done,
            "ms_per_step": 1000 * sum(m["epoch_seconds"] for m in metrics) / steps_done, "wall_s": wall}


def cnn_branch(grid: tuple[int, ...]):
    """The CNN branch both libraries get with ``--branch cnn``: ``(B, 1, *grid) -> (B, p)``."""
    from oplearn.layers.dense import ConvEncoder

    return ConvEncoder(1, grid, CONV_CHANNELS, [WIDTH], BASIS, "relu")


def deepxde(case: str, steps: int, batch: int, branch: str = "mlp") -> dict:
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    import deepxde as dde
    import torch

    from oplearn.data.sources import open_data
    from oplearn.layers.coordinates import grid_coordinates

    files = data_files(case)
    train, test = open_data(files["train"]), open_data(files["test"])
    a_train, u_train = (t.numpy() for t in (train.batch(range(len(train))).inputs, train.batch(range(len(train))).targets))
    a_test, u_test = (t.numpy() for t in (test.batch(range(len(test))).inputs, test.batch(range(len(test))).targets))
    a_mean, a_std = a_train.mean(), a_train.std()
    u_mean, u_std = float(u_train.mean()), float(u_train.std())
    grid = train.resolution
    trunk = grid_coordinates(grid, dtype=torch.float32, device="cpu").reshape(len(grid), -1).T.numpy()
    flat = lambda a: ((a - a_mean) / a_std).reshape(len(a), -1).astype(np.float32)  # noqa: E731
    data = dde.data.TripleCartesianProd(X_train=(flat(a_train), trunk), y_train=u_train.reshape(len(u_train), -1),
                                        X_test=(flat(a_test), trunk), y_test=u_test.reshape(len(u_test), -1))
    m, d = flat(a_train).shape[1], trunk.shape[1]
    branch_sizes = [m] + [WIDTH] * DEPTH + [BASIS] if branch == "mlp" else \
        [m, torch.nn.Sequential(torch.nn.Unflatten(1, (1, *grid)), cnn_branch(tuple(grid)))]
    net = dde.nn.DeepONetCartesianProd(branch_sizes, [d] + [WIDTH] * DEPTH + [BASIS], "relu", "Glorot normal")
    net.apply_output_transform(lambda inputs, outputs: outputs * u_std + u_mean)
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3, loss="mean l2 relative error")
    started = time.perf_counter()
    model.train(iterations=steps, batch_size=batch, display_every=steps, verbose=0)
    seconds = time.perf_counter() - started
    prediction = model.predict(data.test_x)
    truth = u_test.reshape(len(u_test), -1)
    error = float(np.mean(np.linalg.norm(prediction - truth, axis=1) / np.linalg.norm(truth, axis=1)))
    return {"library": f"deepxde {dde.__version__}", "model": f"deeponet ({branch} branch)", "rel_l2": error,
            "parameters": sum(p.numel() for p in net.parameters()), "steps": steps,
            "ms_per_step": 1000 * seconds / steps, "wall_s": seconds}


def eager_floor(case: str, steps: int, batch: int, device: str = "cpu") -> dict:
    """The same MLP DeepONet step written as plainly as PyTorch allows: tensors already normalized and in
    memory, nn.Linear/ReLU nets, one matrix product, mean relative L2, fused Adam, nothing else. What any
    eager-mode library can approach for this network on this machine (no test evaluation, no checkpoint)."""
    import torch

    from oplearn.data.sources import open_data
    from oplearn.layers.coordinates import grid_coordinates
    from oplearn.layers.dense import dense_net

    train = open_data(data_files(case)["train"])
    everything = train.batch(range(len(train)))
    a = everything.inputs.flatten(1)
    a = (a - a.mean()) / a.std()
    u = everything.targets.flatten(1)
    grid = train.resolution
    trunk_points = grid_coordinates(grid, dtype=torch.float32, device="cpu").reshape(len(grid), -1).T

    torch.manual_seed(0)
    a, u, trunk_points = a.to(device), u.to(device), trunk_points.to(device)
    branch = dense_net([a.shape[1]] + [WIDTH] * DEPTH + [BASIS], "relu").to(device)
    trunk = dense_net([trunk_points.shape[1]] + [WIDTH] * DEPTH + [BASIS], "relu", last_activation=True).to(device)
    bias = torch.nn.Parameter(torch.zeros(1, device=device))
    params = [*branch.parameters(), *trunk.parameters(), bias]
    optimizer = torch.optim.Adam(params, lr=1e-3, fused=True)
    u_mean, u_std = u.mean(), u.std()
    order = torch.randint(len(a), (steps, batch), device=device)
    started = time.perf_counter()
    for rows in order:
        x, target = a[rows], u[rows]
        prediction = (branch(x) @ trunk(trunk_points).T + bias) * u_std + u_mean
        loss = ((prediction - target).norm(dim=1) / target.norm(dim=1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"library": f"plain torch {torch.__version__}", "model": "deeponet (mlp branch)", "rel_l2": float("nan"),
            "parameters": sum(p.numel() for p in params), "steps": steps, "ms_per_step": 1000 * seconds / steps,
            "wall_s": seconds}


def fno_width(case: str, target: int) -> dict:
    """FNO hyperparameters (4 layers, 16 modes in 1-D, 8x8 in 2-D) with the width closest to ``target`` parameters."""
    from oplearn.models import build

    modes = [16] if case == "burgers" else [8, 8]
    best = None
    for width in range(4, 65):
        hyper = {"modes": modes, "width": width, "n_layers": 4, "projection_channels": 128}
        count = sum(p.numel() for p in build("fno", 1, 1, **hyper).parameters())
        if best is None or abs(count - target) < abs(best[0] - target):
            best = (count, hyper)
    return best[1]


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker == "floor":
        result = eager_floor(args.case, args.steps, args.batch, args.device)
    elif args.worker == "deepxde":
        result = deepxde(args.case, args.steps, args.batch, args.branch)
    elif args.worker == "deeponet":
        branch = {"branch_layers": [WIDTH] * DEPTH} if args.branch == "mlp" else \
            {"branch": "cnn", "conv_channels": CONV_CHANNELS, "branch_layers": [WIDTH]}
        result = ours(args.case, "deeponet", args.steps, args.batch,
                      {"basis": BASIS, "trunk_layers": [WIDTH] * DEPTH, "activation": "relu", **branch},
                      args.device)
        result["model"] = f"deeponet ({args.branch} branch)"
    else:
        result = ours(args.case, "fno", args.steps, args.batch, fno_width(args.case, args.parameters), args.device)
    print("RESULT " + json.dumps({"case": args.case, **result}))


def spawn(kind: str, case: str, args, parameters: int = 0) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--case", case, "--steps", str(args.steps),
               "--batch", str(args.batch), "--threads", str(args.threads), "--parameters", str(parameters),
               "--branch", args.branch, "--device", args.device]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "DDE_BACKEND": "pytorch"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        return {"case": case, "library": kind, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1][7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["burgers", "darcy"], choices=["burgers", "darcy"])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=["deepxde", "deeponet", "fno", "floor"], default=None)
    parser.add_argument("--case", default="burgers")
    parser.add_argument("--parameters", type=int, default=0)
    parser.add_argument("--branch", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--device", default="cpu", help="our runs' device (DeepXDE picks CUDA itself when present)")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for case in args.cases:
        data_files(case)
        mine = spawn("deeponet", case, args)
        added = [mine, spawn("deepxde", case, args)]
        if args.branch == "mlp":
            added += [spawn("floor", case, args), spawn("fno", case, args, mine.get("parameters", 0))]
        rows += added
        for row in added:
            print(json.dumps(row), flush=True)
    print("| case | library | model | parameters | steps | test rel. L2 | ms / step | wall s |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | {r['library']} | failed: {r['error']} | | | | | |")
        else:
            print(f"| {r['case']} | {r['library']} | {r['model']} | {r['parameters']} | {r['steps']} | "
                  f"{r['rel_l2']:.4f} | {r['ms_per_step']:.2f} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
