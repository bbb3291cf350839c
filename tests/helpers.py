"""Helpers shared by several test modules (tests/ is on sys.path through its conftest)."""

import re

import torch

from oplearn.cli import main


def run_cli(capsys, *args):
    """``(exit status, stdout, stderr)`` of ``oplearn ARGS`` run in-process."""
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_user_error(capsys, pattern, *args):
    """The command fails with status 2 and one ``error: ...`` line matching ``pattern``, no traceback."""
    status, out, err = run_cli(capsys, *args)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


def band_limited(n, dim, coefficients):
    """Evaluate sum_k a_k cos(2 pi k.x + phi_k) on the grid j/n."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) / n] * dim, indexing="ij")
    u = torch.zeros(*([n] * dim), dtype=torch.float64)
    for k, a, phi in coefficients:
        u += a * torch.cos(2 * torch.pi * sum(kk * g for kk, g in zip(k, grids)) + phi)
    return u


def assert_resolution_invariant(layer, dim, coarse, channels=2):
    """``layer`` gives the same output on the coarse grid and on every other point of a twice finer one.

    The input is band-limited: mostly wavenumbers a 4-mode layer keeps (|k| <= 3), a few it drops
    (up to 6, below the coarse Nyquist), so both grids hold it exactly.
    """
    generator = torch.Generator().manual_seed(1)
    bounds = [3] * 6 + [6] * 2
    coefficients = [
        [(tuple(torch.randint(-b, b + 1, (dim,), generator=generator).tolist()), float(a), float(p))
         for b, a, p in zip(bounds, torch.randn(8, generator=generator), torch.rand(8, generator=generator) * 6)]
        for _ in range(channels)
    ]
    outputs = []
    for n in (coarse, 2 * coarse):
        u = torch.stack([band_limited(n, dim, c) for c in coefficients]).float()[None]
        outputs.append(layer(u).detach())
    fine_on_coarse = outputs[1][(..., *[slice(None, None, 2)] * dim)]
    assert torch.abs(fine_on_coarse - outputs[0]).max() < 1e-5
    assert outputs[0].abs().max() > 0.1  # the comparison is not between zeros
