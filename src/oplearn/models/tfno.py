"""Tensorized FNO (Kossaifi et al., TMLR 2024): an FNO whose spectral weights are a Tucker tensor.

Same model as :class:`~oplearn.models.fno.FNO` with ``factorization="tucker"`` and
``rank=0.1`` as defaults: every Fourier block stores its weights ``W(i, o, k)`` as a
small core and one factor matrix per axis, about a tenth of the dense parameters
(see :mod:`oplearn.layers.factorized_spectral` for the rank rule and the contraction).
``factorization="cp"`` gives the CP variant. Registered as ``"tfno"``.
"""

from __future__ import annotations

import inspect

from oplearn.models.fno import FNO

_DEFAULTS = {"factorization": "tucker", "rank": 0.1}


class TFNO(FNO):
    """FNO with Tucker-factorized spectral weights; takes every FNO hyperparameter.

    Shapes: ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    """

    def __init__(self, *args, factorization: str = _DEFAULTS["factorization"], rank: float = _DEFAULTS["rank"],
                 **hyper):
        super().__init__(*args, factorization=factorization, rank=rank, **hyper)

    # FNO's signature with the TFNO defaults, so that build() and configs see the real hyperparameter names.
    __init__.__signature__ = inspect.signature(FNO.__init__).replace(parameters=[
        parameter.replace(default=_DEFAULTS.get(parameter.name, parameter.default))
        for parameter in inspect.signature(FNO.__init__).parameters.values()
    ])
