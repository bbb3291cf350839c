"""Gaussian random fields on the unit cube [0, 1]^d.

The field has mean zero and covariance operator

    C = sigma^2 (-Laplacian + tau^2 I)^(-alpha),

and is drawn through its Karhunen-Loeve expansion

    u(x) = sum_k sqrt(lambda_k) xi_k phi_k(x),   xi_k ~ N(0, 1) iid,

where phi_k are the eigenfunctions of -Laplacian on [0, 1]^d (periodic or
Neumann) with eigenvalues mu_k, and lambda_k = sigma^2 (mu_k + tau^2)^(-alpha).
The expansion is truncated to the modes the grid can represent, so there are
exactly as many modes as grid points and the map noise -> field is linear and
invertible.

Boundary conditions:

* ``"periodic"``: grid x_j = j / N (j = 0..N-1), phi_k = exp(2 pi i k.x),
  mu_k = 4 pi^2 |k|^2, k ranging over the FFT wavenumbers of the grid.
  Pointwise variance sum_k lambda_k (the same at every point).
* ``"neumann"``: grid x_j = j / (N - 1) (both ends included),
  phi_k = prod_i c_{k_i} cos(pi k_i x_i) with c_0 = 1, c_k = sqrt(2),
  mu_k = pi^2 |k|^2, k_i = 0..N-1. Pointwise variance
  sum_k lambda_k phi_k(x)^2.
"""

from __future__ import annotations

import math

import torch

from oplearn.errors import ConfigError, ShapeError

BOUNDARIES = ("periodic", "neumann")


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"GRF {name} must be a positive number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"GRF {name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_int(name: str, value: int, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"GRF {name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"GRF {name} must be {bounds}, got {value}")
    return value


def _sum_of_squares_grid(wavenumbers: torch.Tensor, dim: int) -> torch.Tensor:
    """|k|^2 on the tensor grid of ``dim`` copies of the 1-D ``wavenumbers``."""
    axes = torch.meshgrid(*([wavenumbers] * dim), indexing="ij")
    return sum(k**2 for k in axes)


class GaussianRandomField:
    """Sampler of a mean-zero GRF with covariance sigma^2 (-Laplacian + tau^2)^(-alpha).

    Samples have shape (batch, *[resolution] * dim) and dtype float64.
    Computations use torch, so noise on a GPU gives a field on the GPU.
    """

    def __init__(
        self,
        dim: int,
        resolution: int,
        alpha: float = 2.0,
        tau: float = 3.0,
        sigma: float = 1.0,
        boundary: str = "periodic",
    ) -> None:
        self.dim = _check_int("dim", dim, 1, 3)
        self.resolution = _check_int("resolution", resolution, 2)
        self.alpha = _check_positive("alpha", alpha)
        self.tau = _check_positive("tau", tau)
        self.sigma = _check_positive("sigma", sigma)
        if boundary not in BOUNDARIES:
            raise ConfigError(
                f"unknown GRF boundary {boundary!r}; choose one of: {', '.join(BOUNDARIES)}"
            )
        self.boundary = boundary
        self.eigenvalues = self._covariance_eigenvalues()
        # Neumann only: cosine matrix phi[j, k] = c_k cos(pi k x_j), shape (N, N).
        self.cosine_basis = self._cosine_basis() if boundary == "neumann" else None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample: (resolution,) * dim."""
        return (self.resolution,) * self.dim

    @property
    def grid(self) -> torch.Tensor:
        """1-D grid coordinates along each axis, shape (resolution,)."""
        n = self.resolution
        if self.boundary == "periodic":
            return torch.arange(n, dtype=torch.float64) / n
        return torch.arange(n, dtype=torch.float64) / (n - 1)

    def laplacian_eigenvalues(self) -> torch.Tensor:
        """Eigenvalues mu_k of -Laplacian for every represented mode, shape (N,) * dim.

        Periodic: laid out in FFT order (torch.fft.fftfreq); Neumann: k = 0..N-1.
        """
        n = self.resolution
        if self.boundary == "periodic":
            k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
            return 4 * math.pi**2 * _sum_of_squares_grid(k, self.dim)
        k = torch.arange(n, dtype=torch.float64)
        return math.pi**2 * _sum_of_squares_grid(k, self.dim)

    def _covariance_eigenvalues(self) -> torch.Tensor:
        """lambda_k = sigma^2 (mu_k + tau^2)^(-alpha), shape (N,) * dim."""
        mu = self.laplacian_eigenvalues()
        return self.sigma**2 * (mu + self.tau**2) ** (-self.alpha)

    def _cosine_basis(self) -> torch.Tensor:
        n = self.resolution
        k = torch.arange(n, dtype=torch.float64)
        scale = torch.full((n,), math.sqrt(2.0), dtype=torch.float64)
        scale[0] = 1.0
        return scale * torch.cos(math.pi * torch.outer(self.grid, k))

    def pointwise_variance(self) -> torch.Tensor:
        """Analytic Var u(x) at every grid point, shape (N,) * dim."""
        if self.boundary == "periodic":
            return torch.full(self.shape, float(self.eigenvalues.sum()), dtype=torch.float64)
        squared = self._apply_cosine_basis(self.eigenvalues.unsqueeze(0), self.cosine_basis**2)
        return squared[0]

    def _apply_cosine_basis(self, coefficients: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """sum over k of coefficients[b, k_1..k_d] prod_i basis[x_i, k_i], axis by axis."""
        out = coefficients
        for _ in range(self.dim):
            # Contracting axis 1 appends the new grid axis last; after d turns
            # the axes are back in their original order.
            out = torch.tensordot(out, basis, dims=([1], [1]))
        return out

    def sample_from_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """Map white noise xi, shape (batch, *[N] * dim), to fields of the same shape.

        The map is deterministic and linear, so the caller controls randomness.
        Output is float64 on ``noise.device``.
        """
        if noise.dim() != self.dim + 1 or tuple(noise.shape[1:]) != self.shape:
            raise ShapeError(
                f"GRF noise must have shape (batch, {', '.join(map(str, self.shape))}), "
                f"got {tuple(noise.shape)}; draw it with the field's resolution and dim"
            )
        noise = noise.to(torch.float64)
        sqrt_eigenvalues = self.eigenvalues.sqrt().to(noise.device)
        axes = tuple(range(1, self.dim + 1))
        if self.boundary == "periodic":
            # Orthonormal FFT turns real white noise into Hermitian-symmetric
            # complex noise with E|z_k|^2 = 1; the unnormalised inverse then
            # evaluates sum_k sqrt(lambda_k) z_k exp(2 pi i k.x) on the grid.
            coefficients = torch.fft.fftn(noise, dim=axes, norm="ortho")
            field = torch.fft.ifftn(sqrt_eigenvalues * coefficients, dim=axes, norm="forward")
            return field.real
        basis = self.cosine_basis.to(noise.device)
        return self._apply_cosine_basis(sqrt_eigenvalues * noise, basis)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` fields, shape (n, *[N] * dim), float64 on the generator's device."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"number of GRF samples must be an integer >= 1, got {n!r}")
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(
            (n, *self.shape), generator=generator, dtype=torch.float64, device=device
        )
        return self.sample_from_noise(noise)
