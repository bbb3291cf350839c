"""Empirical NTK: time and peak memory of oplearn's methods against the torch.func-tutorial baselines.

    python benchmarks/ntk.py [--device cpu|cuda|auto] [--quick] [--only mlp|fno] [--timeout 300]

Methods: ``tut-jac`` (per-sample Jacobians by vmap(jacrev), contracted with einsum, as the
torch.func NTK tutorial describes), ``tut-vps`` (its NTK-vector products: a vmap over
sample pairs of vjp-then-jvp over every output direction), and ``empirical_ntk`` with
``jacobian``, ``vjp`` and ``structured``. Cases: MLP 64 -> W -> W -> O (ReLU), kernel
K(X, X) with outputs="full" (trace for O = 1 is the same matrix), and a 2-D FNO (width 32,
modes 12, 32x32 inputs, 4 layers) with outputs="trace".

Every measurement runs in its own process: one warm-up call gives the peak memory (CPU:
peak resident set size above the process's size before the call, as torch's CPU allocator
is invisible to tracemalloc; CUDA: torch.cuda.max_memory_allocated above the allocation
before), then the median of ``--repeats`` calls (the warm-up alone when it took > 20 s).
Requests predicted to exceed the memory at hand are skipped with the size they would need;
a process past ``--timeout`` seconds is reported as such. For the FNO, whose full Jacobian
cannot be held (9 GiB per sample), ``tut-jac`` is replaced by a lower bound: the time of one
sample's Jacobian for 128 of the 1024 outputs times 8 * N (contraction not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from oplearn.analysis.ntk import empirical_ntk
from oplearn.models import build

METHODS = ("tut-jac", "tut-vps", "jacobian", "vjp", "structured")


def make_case(case: dict, device: torch.device):
    torch.manual_seed(0)
    if case["model"] == "mlp":
        w, o = case["width"], case["out"]
        model = nn.Sequential(nn.Linear(64, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, o))
        x = torch.randn(case["n"], 64)
    else:
        model = build("fno", in_channels=1, out_channels=1, modes=(12, 12), width=32, n_layers=4)
        x = torch.randn(case["n"], 1, 32, 32)
    return model.to(device).eval(), x.to(device)


# ---- the two baselines, written from the torch.func tutorial's description ----

def tutorial_jacobian(model, x1, x2, outputs):
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, x):  # one sample in, its flattened outputs back
        return functional_call(model, p, (x.unsqueeze(0),)).reshape(-1)

    j1 = [j.flatten(2) for j in vmap(jacrev(f), (None, 0))(params, x1).values()]
    j2 = [j.flatten(2) for j in vmap(jacrev(f), (None, 0))(params, x2).values()]
    pattern = {"full": "Naf,Mbf->NMab", "trace": "Naf,Maf->NM", "diagonal": "Naf,Maf->NMa"}[outputs]
    return sum(torch.einsum(pattern, a, b) for a, b in zip(j1, j2))


def tutorial_vector_products(model, x1, x2, outputs):
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).reshape(-1)

    def pair(a, b):  # (P, P) block for one pair of samples
        out, pull = vjp(lambda p: f(p, a), params)
        column = lambda e: jvp(lambda p: f(p, b), (params,), pull(e))[1]  # noqa: E731
        block = vmap(column)(torch.eye(out.numel(), dtype=out.dtype, device=out.device))
        return block.diagonal().sum() if outputs == "trace" else block

    return vmap(vmap(pair, (None, 0)), (0, None))(x1, x2)


def fno_jacobian_lower_bound(model, x, outputs_per_call=128):
    """Seconds for one sample's Jacobian restricted to ``outputs_per_call`` outputs (scaled by the caller)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).reshape(-1)[:outputs_per_call]

    return jacrev(f)(params, x[0])


# ---- one measurement, in a child process ----

def predicted_bytes(case: dict, method: str, n_params: int, outputs: int) -> float:
    n, item = case["n"], 4
    return {"tut-jac": 2 * n * outputs * n_params * item * 1.2,
            "tut-vps": n * n * outputs * n_params * item * 1.5,
            "jacobian": n * outputs * n_params * item * 1.2}.get(method, 0.0)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(case: dict, method: str, device: torch.device, repeats: int) -> dict:
    model, x = make_case(case, device)
    n_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        n_outputs = model(x[:1]).numel()
    limit = (torch.cuda.get_device_properties(device).total_memory if device.type == "cuda"
             else os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) * 0.7
    need = predicted_bytes(case, method, n_params, n_outputs)
    if case["model"] == "fno" and method == "tut-jac":
        need = 0  # replaced by the lower bound below
    if need > limit:
        return {"skipped": f"needs ~{need / 2**30:.0f} GiB"}
    outputs = case["outputs"]
    calls = {
        "tut-jac": lambda: tutorial_jacobian(model, x, x, outputs),
        "tut-vps": lambda: tutorial_vector_products(model, x, x, outputs),
    }
    if case["model"] == "fno" and method == "tut-jac":
        calls["tut-jac"] = lambda: fno_jacobian_lower_bound(model, x)
    for name in ("jacobian", "vjp", "structured"):
        calls[name] = lambda name=name: empirical_ntk(model, x, method=name, outputs=outputs)

    def timed():
        start = time.perf_counter()
        calls[method]()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss_bytes()
    first = timed()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times = [first] if first > 20 else [timed() for _ in range(repeats)]
    seconds = statistics.median(times)
    result = {"seconds": seconds, "peak_mib": max(peak, 0) / 2**20, "calls": len(times)}
    if case["model"] == "fno" and method == "tut-jac":
        result.update(seconds=seconds * 8 * case["n"], bound=True,
                      note=f"lower bound: {seconds:.2f} s per 128 outputs of one sample x 8 x {case['n']}; "
                           f"full Jacobian {case['n'] * n_outputs * n_params * 4 / 2**30:.0f} GiB")
    return result


def run_child(case: dict, method: str, args) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps({"case": case, "method": method}),
               "--device", args.device, "--repeats", str(args.repeats)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"> {args.timeout} s"}
    if done.returncode != 0:
        lines = (done.stderr.strip() or "no output").splitlines()
        return {"skipped": f"failed: {lines[-1][:80]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def cases(quick: bool, only: str | None) -> list[dict]:
    mlp = [{"model": "mlp", "width": w, "out": o, "n": n, "outputs": "full"}
           for w in ((256,) if quick else (256, 1024)) for o in (1, 10) for n in ((64,) if quick else (64, 256))]
    fno = [{"model": "fno", "n": 4 if quick else 64, "outputs": "trace"}]
    return [c for c in mlp + fno if only in (None, c["model"])]


def label(case: dict) -> str:
    if case["model"] == "mlp":
        return f"MLP W={case['width']} O={case['out']} N={case['n']}"
    return f"FNO-2D 32x32 w32 m12 N={case['n']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--quick", action="store_true", help="small cases only (W=256, N=64; FNO N=4)")
    parser.add_argument("--only", choices=("mlp", "fno"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per measurement")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(measure(job["case"], job["method"], torch.device(args.device), args.repeats)))
        return
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.2f}")
    print("| case | method | time (s) | peak (MiB) | structured speed-up | structured memory share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case in cases(args.quick, args.only):
        methods = METHODS if case["model"] == "mlp" else ("tut-jac", "jacobian", "structured")
        results = {m: run_child(case, m, args) for m in methods}
        fast = results["structured"]
        for method, r in results.items():
            if "skipped" in r:
                print(f"| {label(case)} | {method} | {r['skipped']} | | | |")
                continue
            speed = mem = ""
            if "seconds" in fast and method != "structured":
                speed = f"{'>=' if r.get('bound') else ''}{r['seconds'] / fast['seconds']:.1f}x"
                if not r.get("bound") and r["peak_mib"] > 0:
                    mem = f"{fast['peak_mib'] / r['peak_mib']:.3f}"
            shown = f"{'>= ' if r.get('bound') else ''}{r['seconds']:.3g}"
            peak = "" if r.get("bound") else f"{r['peak_mib']:.0f}"
            print(f"| {label(case)} | {method} | {shown} | {peak} | {speed} | {mem} |", flush=True)
            if r.get("note"):
                print(f"|  | ({r['note']}) | | | | |", flush=True)


if __name__ == "__main__":
    main()
