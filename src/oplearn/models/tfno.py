"""Tensorized FNO (Kossaifi et al., TMLR 2024): an FNO whose spectral weights are a Tucker tensor.

Same model as :class:`~oplearn.models.fno.FNO` with ``factorization="tucker"`` and
``rank=0.1`` as defaults: every Fourier block stores its weights ``W(i, o, k)`` as a
small core and one factor matrix per axis, about a tenth of the dense parameters
(see :mod:`oplearn.layers.factorized_spectral` for the rank rule and the contraction).
``factorization="cp"`` gives the CP variant. Registered as ``"tfno"``.
"""

from __future__ import annotations

from oplearn.models.fno import FNO
from oplearn.models.operator import register


@register("tfno")
class TFNO(FNO):
    """FNO with Tucker-factorized spectral weights; takes every FNO hyperparameter.

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    """

    class Hyper(FNO.Hyper):
        factorization: str = "tucker"
        """Spectral weights "tucker" (the TFNO), "cp" or "dense" (then the FNO)."""
        rank: float = 0.1
        """Size of the factorization as a fraction of the dense parameter count."""
