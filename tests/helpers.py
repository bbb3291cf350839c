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
