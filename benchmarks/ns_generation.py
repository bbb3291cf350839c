"""Navier-Stokes data generation: oplearn's solver against the FNO reference generator.

    python benchmarks/ns_generation.py --device cpu --batch 2 --final-time 0.5
    python benchmarks/ns_generation.py --device cuda --batch 20 --final-time 50 --precision float32

The reference is the numerics of the generator behind the FNO paper's
Navier-Stokes data, rewritten here: batched torch pseudo-spectral vorticity
solver, full complex FFTs (four inverse, one forward per step), forward-Euler
advection and forcing, Crank-Nicolson viscosity, 2/3 dealiasing, fixed
dt = 1e-4. Both solvers start from the same initial vorticity (oplearn's
NavierStokes sampler: FNO GRF, FNO forcing) and store the same times. Each is
scored by the relative L2 error of its snapshots (t > 0) against a much finer
solve (oplearn's scheme at a small fixed step, float64; its own error is
bounded by comparing it with the solve at twice that step), and timed in one
process on the same device; samples per second = batch / wall time.

The projection to the FNO setting (T = 50, 50 snapshots, 256 solved, 64
stored) multiplies each solver's measured time per step by its step count to
T = 50: 500,000 for the reference; for oplearn the count its CFL rule gives
along the speed history of the same flows solved to T = 50 on a 64 x 64 grid.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from oplearn.data.pdes.navier_stokes import NavierStokes, solve_navier_stokes

REFERENCE_DT = 1e-4
FNO_FINAL_TIME = 50.0
FNO_SNAPSHOTS = 50


def reference_navier_stokes(w0: torch.Tensor, forcing: torch.Tensor, viscosity: float, final_time: float,
                            n_times: int, dt: float = REFERENCE_DT) -> torch.Tensor:
    """FNO-reference numerics: w0 (B, N, N) -> snapshots (B, n_times, N, N) at k T / n_times, k = 1..n_times.

    w_hat <- [-dt A_hat + dt f_hat + (1 - dt nu |k|^2 / 2) w_hat] / (1 + dt nu |k|^2 / 2), A = u . grad w
    formed from four complex inverse FFTs and dealiased (|k_x|, |k_y| <= 2/3 * N/2); the step count is
    ceil(T / dt) and a snapshot is kept every steps / n_times steps, as in the original script.
    """
    n = w0.shape[-1]
    half = n // 2
    steps = math.ceil(final_time / dt)
    record_every = steps // n_times
    wavenumber = torch.cat([torch.arange(0, half), torch.arange(-half, 0)]).to(w0.device, w0.dtype)
    k_y = wavenumber.repeat(n, 1)  # varies along the last axis
    k_x = k_y.transpose(0, 1)
    laplacian = 4 * math.pi**2 * (k_x**2 + k_y**2)
    laplacian[0, 0] = 1.0
    dealias = ((k_y.abs() <= (2 / 3) * half) & (k_x.abs() <= (2 / 3) * half)).to(w0.dtype)[None]
    w_hat = torch.fft.fft2(w0)
    forcing_hat = torch.fft.fft2(forcing)[None]
    snapshots = w0.new_empty((w0.shape[0], n_times, n, n))
    recorded = 0
    for step in range(steps):
        psi_hat = w_hat / laplacian
        u = torch.fft.ifft2(2j * math.pi * k_y * psi_hat).real  # psi_y
        v = torch.fft.ifft2(-2j * math.pi * k_x * psi_hat).real  # -psi_x
        w_x = torch.fft.ifft2(2j * math.pi * k_x * w_hat).real
        w_y = torch.fft.ifft2(2j * math.pi * k_y * w_hat).real
        advection_hat = dealias * torch.fft.fft2(u * w_x + v * w_y)
        w_hat = (-dt * advection_hat + dt * forcing_hat + (1 - 0.5 * dt * viscosity * laplacian) * w_hat) / (
            1 + 0.5 * dt * viscosity * laplacian)
        if (step + 1) % record_every == 0 and recorded < n_times:
            snapshots[:, recorded] = torch.fft.ifft2(w_hat).real
            recorded += 1
    return snapshots


def relative_error(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """||estimate - truth|| / ||truth|| over all snapshots and samples (float64)."""
    difference = (estimate.to(torch.float64) - truth.to(torch.float64)).norm()
    return float(difference / truth.to(torch.float64).norm())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, function, *args, **kwargs):
    synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    synchronize(device)
    return result, time.perf_counter() - start


def projected_oplearn_steps(pde: NavierStokes, seed: int, batch: int, resolution: int) -> int:
    """Steps oplearn's CFL rule takes to T = 50 at ``resolution``, from the speed history of a 64^2 solve."""
    coarse = pde.model_copy(update={"solver_resolution": 64, "final_time": FNO_FINAL_TIME,
                                    "n_times": FNO_SNAPSHOTS, "precision": "float64", "dt": None})
    w = torch.from_numpy(coarse.solve_batch(seed, range(batch), 64)["trajectories"][:, :, 0]).to(torch.float64)
    w_hat = torch.fft.rfft2(w)
    k_x = 2 * math.pi * torch.fft.fftfreq(64, 1 / 64, dtype=torch.float64)[:, None]
    k_y = 2 * math.pi * torch.fft.rfftfreq(64, 1 / 64, dtype=torch.float64)[None, :]
    inverse_laplacian = torch.where(k_x**2 + k_y**2 > 0, 1 / (k_x**2 + k_y**2).clamp_min(1e-30), 0.0)
    u = torch.fft.irfft2(1j * k_y * inverse_laplacian * w_hat, s=(64, 64))
    v = torch.fft.irfft2(-1j * k_x * inverse_laplacian * w_hat, s=(64, 64))
    speed = (u.abs().amax(dim=(0, 2, 3)) + v.abs().amax(dim=(0, 2, 3))).numpy()  # (T,)
    interval = FNO_FINAL_TIME / FNO_SNAPSHOTS
    steps = 0
    for start, end in zip(speed[:-1], speed[1:]):
        limit = min(pde.max_dt, pde.cfl / (max(start, end) * resolution))
        steps += math.ceil(interval / limit - 1e-9)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=256, help="solver grid points per axis")
    parser.add_argument("--final-time", type=float, default=0.5)
    parser.add_argument("--n-times", type=int, default=5, help="stored snapshots after t = 0")
    parser.add_argument("--viscosity", type=float, default=1e-3)
    parser.add_argument("--precision", choices=("float64", "float32"), default="float64")
    parser.add_argument("--fine-dt", type=float, default=2.5e-4,
                        help="fixed step of the accuracy reference (oplearn's scheme, float64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = torch.float64 if args.precision == "float64" else torch.float32
    pde = NavierStokes(viscosity=args.viscosity, final_time=args.final_time, n_times=args.n_times,
                       solver_resolution=args.resolution, precision=args.precision)
    w0 = pde.initial_condition(args.seed, range(args.batch), device)
    forcing = pde.forcing(device)
    times = pde.times()

    # Warm up FFT plans and kernels on a few steps of each solver.
    reference_navier_stokes(w0[:, :, :].to(dtype), forcing.to(dtype), args.viscosity, 5 * REFERENCE_DT, 1)
    solve_navier_stokes(w0.to(dtype), [0.0, 5 * REFERENCE_DT], args.viscosity, forcing, dt=REFERENCE_DT)

    fine = solve_navier_stokes(w0, times, args.viscosity, forcing, dt=args.fine_dt)[:, 1:]
    fine_self_error = relative_error(solve_navier_stokes(w0, times, args.viscosity, forcing,
                                                         dt=2 * args.fine_dt)[:, 1:], fine)
    reference, reference_seconds = timed(device, reference_navier_stokes, w0.to(dtype), forcing.to(dtype),
                                         args.viscosity, args.final_time, args.n_times)
    ours, our_seconds = timed(device, solve_navier_stokes, w0.to(dtype), times, args.viscosity, forcing,
                              cfl=pde.cfl, max_dt=pde.max_dt)
    ours = ours[:, 1:]
    probe_steps = 20
    _, probe_seconds = timed(device, solve_navier_stokes, w0.to(dtype), [0.0, probe_steps * REFERENCE_DT],
                             args.viscosity, forcing, dt=REFERENCE_DT)

    reference_steps = math.ceil(args.final_time / REFERENCE_DT)
    reference_step_seconds = reference_seconds / reference_steps
    our_step_seconds = probe_seconds / probe_steps
    our_projected_steps = projected_oplearn_steps(pde, args.seed, args.batch, args.resolution)
    fno_reference_steps = math.ceil(FNO_FINAL_TIME / REFERENCE_DT)
    rows = {
        "reference (FNO numerics, FE dt=1e-4)": {
            "seconds": reference_seconds, "samples_per_second": args.batch / reference_seconds,
            "relative_l2_error": relative_error(reference, fine),
            "trajectories_per_10_minutes_T50": 600 * args.batch / (reference_step_seconds * fno_reference_steps)},
        "oplearn (RK3/CN, adaptive CFL)": {
            "seconds": our_seconds, "samples_per_second": args.batch / our_seconds,
            "relative_l2_error": relative_error(ours, fine),
            "trajectories_per_10_minutes_T50": 600 * args.batch / (our_step_seconds * our_projected_steps)},
    }
    results = {
        "device": str(device), "torch_threads": torch.get_num_threads(), "batch": args.batch,
        "resolution": args.resolution, "final_time": args.final_time, "n_times": args.n_times,
        "viscosity": args.viscosity, "precision": args.precision, "fine_dt": args.fine_dt,
        "fine_error_bound": fine_self_error,
        "cfl": pde.cfl, "max_dt": pde.max_dt, "oplearn_projected_steps_T50": our_projected_steps,
        "speedup": rows["oplearn (RK3/CN, adaptive CFL)"]["samples_per_second"]
        / rows["reference (FNO numerics, FE dt=1e-4)"]["samples_per_second"],
        "solvers": rows,
    }

    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch}, {args.resolution}^2, "
          f"T = {args.final_time}, {args.n_times} snapshots, nu = {args.viscosity}, {args.precision}; "
          f"error vs fine solve (dt = {args.fine_dt:g}; it differs from dt = {2 * args.fine_dt:g} by "
          f"{fine_self_error:.1e})")
    print(f"{'solver':40s} {'seconds':>9s} {'samples/s':>10s} {'rel. L2 error':>14s} {'traj/10 min @T=50':>18s}")
    for name, row in rows.items():
        print(f"{name:40s} {row['seconds']:9.2f} {row['samples_per_second']:10.4f} "
              f"{row['relative_l2_error']:14.3e} {row['trajectories_per_10_minutes_T50']:18.2f}")
    print(f"speedup at T = {args.final_time}: {results['speedup']:.1f}x; T = 50 projection: reference "
          f"{fno_reference_steps} steps, oplearn ~{our_projected_steps} steps (CFL {pde.cfl})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
