"""Geo-FNO: Fourier neural operator with a learned deformation (Li et al., JMLR 2023, arXiv 2207.05209).

    z = phi(x) / (1 + padding),  phi(x) = x + MLP(x)            deformation onto the latent torus (identity at start)
    v_0(x) = P(a(x), x)                                         lifting, pointwise
    w_0 = sigma(F_S^-1[R_in . v_0_hat]),  v_0_hat(k) = (1/N) sum_i v_0(x_i) exp(-2 pi i k . z_i)
    w <- FNO blocks sigma(K w + W w) on the latent uniform grid S of the torus
    u(x) = Q(sum_k R_out(k) w_hat(k) exp(2 pi i k . z(x)) + W v_0(x))   back at the points, projection

The first layer is the irregular spectral transform (:func:`~oplearn.layers.nonuniform_fourier.nonuniform_forward`,
the masked direct sum over each sample's real points), the last its inverse evaluated at the deformed
points, both with learned complex channel mixing ``R`` on the kept modes; ``W v_0`` is the pointwise path
every Fourier layer has. Points are first mapped onto the unit box of ``domain`` (:mod:`oplearn.models.gno`)
and then shrunk by ``1 + padding`` so that the box does not wrap around the torus (as FNO's domain padding).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from oplearn.errors import ConfigError
from oplearn.layers.activations import make_activation
from oplearn.layers.coordinates import check_domain
from oplearn.layers.nonuniform_fourier import nonuniform_forward, nonuniform_inverse
from oplearn.layers.pointwise import PointwiseLinear
from oplearn.layers.spectral import complex_channel_mix, forward_modes, inverse_modes
from oplearn.models.fno import FourierBlock
from oplearn.models.gno import PointOperator, projection_net
from oplearn.models.operator import PointHyper, register


class Deformation(nn.Module):
    """``phi(x) = x + MLP(x)`` on ``(B, d, N)`` points; the MLP's last layer starts at zero (identity map)."""

    def __init__(self, dim: int, width: int, activation: str):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, width), make_activation(activation), nn.Linear(width, width),
                                 make_activation(activation), nn.Linear(width, dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return points + self.net(points.transpose(1, 2)).transpose(1, 2)


def spectral_weights(channels: int, modes: tuple[int, ...]) -> nn.Parameter:
    """Complex ``channels x channels`` weights per kept mode as real pairs, scaled like SpectralConv's."""
    kept = tuple(2 * m for m in modes[:-1]) + (modes[-1],)
    return nn.Parameter(torch.randn(channels, channels, *kept, 2) / math.sqrt(2 * channels * channels))


@register("geo_fno")
class GeoFNO(PointOperator):
    """Geo-FNO on meshes, point clouds and grids; hyperparameters in :class:`GeoFNO.Hyper`.

    Shapes: ``(B, C_in, N)`` at ``coords (B, d, N)`` -> ``(B, C_out, N)``; grids ``(B, C_in, *S) -> (B, C_out, *S)``.
    """

    class Hyper(PointHyper):
        modes: tuple[int, ...]
        """Fourier modes per axis (see SpectralConv); its length is the dimension d."""
        latent_grid: tuple[int, ...] | None = None
        """Points per axis of the latent uniform grid (periodic, nodes ``j / n``), at least ``2 * modes``
        (None: ``4 * modes``)."""
        width: int = 32
        """Channels of the lifted function and of the latent FNO."""
        n_layers: int = 3
        """Fourier blocks on the latent grid (between the irregular first and last layers)."""
        deformation_width: int = 32
        """Hidden units of the deformation MLP (0: no deformation, phi = identity)."""
        activation: str = "gelu"
        """Name of the nonlinearity (gelu, relu, silu, tanh)."""
        padding: float = 0.25
        """The latent torus has period ``1 + padding`` unit boxes (0: the box is periodic)."""
        projection_channels: int = 128
        """Hidden width of the projection MLP."""
        chunk_points: int = 4096
        """Points per chunk of the non-uniform Fourier sums (memory: about chunk_points x modes floats)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        super().__init__(in_channels, out_channels, **hyper)
        h = self.hyper
        dim = len(h.modes)
        self.latent_grid = tuple(h.latent_grid or (4 * m for m in h.modes))
        if not 1 <= dim <= 3 or len(self.latent_grid) != dim or min(h.modes) < 1:
            raise ConfigError(f"modes lists 1 to 3 positive counts and latent_grid one size per axis; got "
                              f"modes={h.modes}, latent_grid={h.latent_grid}")
        if any(n < 2 * m for n, m in zip(self.latent_grid, h.modes)):
            raise ConfigError(f"latent_grid {list(self.latent_grid)} must hold at least 2 * modes {list(h.modes)} "
                              "points per axis")
        if min(in_channels, out_channels, h.width, h.n_layers, h.projection_channels, h.chunk_points) < 1 \
                or h.deformation_width < 0:
            raise ConfigError("in_channels, out_channels, width, n_layers, projection_channels and chunk_points "
                              "must be positive, deformation_width >= 0")
        check_domain(self.name, h.domain, dim)
        if h.padding < 0:
            raise ConfigError(f"padding must be >= 0, got {h.padding}")
        self.deformation = Deformation(dim, h.deformation_width, h.activation) if h.deformation_width else None
        self.lifting = PointwiseLinear(in_channels + dim, h.width)
        self.encoder_weights = spectral_weights(h.width, h.modes)
        self.blocks = nn.ModuleList(FourierBlock(h.width, h.modes, h.activation, PointwiseLinear)
                                    for _ in range(h.n_layers))
        self.decoder_weights = spectral_weights(h.width, h.modes)
        self.skip = PointwiseLinear(h.width, h.width)
        self.activation = make_activation(h.activation)
        self.projection = projection_net(h.width, h.projection_channels, out_channels, h.activation)

    @property
    def dim(self) -> int:
        return len(self.hyper.modes)

    def dimension_hint(self, dim: int) -> str:
        return f"give modes (and latent_grid) {dim} numbers each"

    def latent_points(self, points: torch.Tensor) -> torch.Tensor:
        """``(B, d, N)`` unit-box points -> their places ``z`` on the latent torus."""
        deformed = points if self.deformation is None else self.deformation(points)
        return deformed / (1 + self.hyper.padding)

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        values, points, mask, grid, _ = self.as_points(x, coords, mask)
        h = self.hyper
        z = self.latent_points(points.to(values.dtype))
        v = self.lifting(torch.cat([values, points.to(values.dtype)], dim=1))
        coefficients = nonuniform_forward(v, z, h.modes, mask, h.chunk_points)
        mixed = complex_channel_mix(coefficients, self.encoder_weights)
        # sum_k c(k) exp(2 pi i k . z_j) at the grid nodes z_j = j / n is n^d times the inverse real DFT
        w = self.activation(inverse_modes(mixed * math.prod(self.latent_grid), h.modes, self.latent_grid))
        for block in self.blocks:
            w = block(w)
        spectrum = forward_modes(w, h.modes) / math.prod(self.latent_grid)
        u = nonuniform_inverse(complex_channel_mix(spectrum, self.decoder_weights), z, h.modes, h.chunk_points)
        out = self.projection(self.activation(u.to(v.dtype) + self.skip(v)))
        return self.finish(out, mask, grid)
