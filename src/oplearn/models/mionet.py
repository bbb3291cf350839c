"""MIONet (Jin, Meng & Lu 2022): a DeepONet for several input functions.

    G(a_1, ..., a_n)(y)_k = sum_{i=1..p} (prod_{j=1..n} b^j_{k,i}(a_j)) t_{k,i}(y) + b0_k

one branch net per input function, merged by the elementwise product of their outputs, then summed
against the trunk as in :class:`~oplearn.models.deeponet.DeepONet` (same trunk, multi-output strategies
and transforms). The input functions are groups of input channels (``input_groups``: channels per
function, in order).
"""

from __future__ import annotations

from oplearn.errors import ConfigError
from oplearn.models.deeponet import DeepONet
from oplearn.models.operator import register


@register("mionet")
class MIONet(DeepONet):
    """Shapes as :class:`DeepONet`'s; hyperparameters in :class:`MIONet.Hyper`."""

    class Hyper(DeepONet.Hyper):
        input_groups: list[int] | None = None
        """Input channels of each input function, e.g. [1, 2]: channel 0 is one function, 1-2 another
        (None: every channel its own function)."""

    def __init__(self, in_channels: int, out_channels: int, **hyper):
        groups = hyper.get("input_groups")
        if groups is not None and (sum(groups) != in_channels or min(groups, default=0) < 1):
            raise ConfigError(f"model mionet: input_groups {groups} must be positive channel counts summing "
                              f"to the {in_channels} input channels")
        super().__init__(in_channels, out_channels, **hyper)

    def _groups(self) -> list[int]:
        return list(self.hyper.input_groups or [1] * self.in_channels)
