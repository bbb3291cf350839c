"""One batch of samples: what every dataset yields and every task consumes.

Every tensor is channel-first, as the models see it:

* grid data: ``inputs (B, C_in, *S)``, ``targets (B, C_out, *S)`` on one
  uniform grid shared by the batch; ``spacing`` holds its step per axis and
  there are no per-point coordinates (a model that wants them builds them
  from the shape, as the FNO does).
* point data (meshes and point clouds, any number of points per sample):
  ``inputs (B, C_in, N)``, ``targets (B, C_out, N)``, ``coords (B, d, N)``,
  padded with zeros to the largest sample's ``N``; ``mask (B, N)`` is True at
  real points (``None`` when no sample was padded). Meshes add ``cells``, one
  ``(M_i, k)`` tensor of point indices per sample.

``queries (B, d, Q)`` (with ``query_mask (B, Q)``) are points where a model
is asked to predict when they are not the input's points (DeepONet and the
like); ``pde`` and ``params`` name the equation the data solve, for losses
that use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

KINDS = ("grid", "mesh", "points")


@dataclass
class Batch:
    inputs: torch.Tensor
    targets: torch.Tensor | None
    kind: str = "grid"
    spacing: tuple[float, ...] | None = None
    coords: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    cells: list[torch.Tensor] | None = None
    queries: torch.Tensor | None = None
    query_mask: torch.Tensor | None = None
    pde: str | None = None
    params: dict = field(default_factory=dict)
    labelled: torch.Tensor | None = None  # (B,) bool: samples whose targets data terms may read (None: all)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Batch kind must be one of {KINDS}, got {self.kind!r}")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device, non_blocking: bool = False) -> "Batch":
        """The same batch with every tensor on ``device`` (tensors already there are not copied)."""
        def move(t):
            return t.to(device, non_blocking=non_blocking) if isinstance(t, torch.Tensor) else t

        cells = None if self.cells is None else [move(c) for c in self.cells]
        return dataclasses.replace(self, inputs=move(self.inputs), targets=move(self.targets),
                                   coords=move(self.coords), mask=move(self.mask), cells=cells,
                                   queries=move(self.queries), query_mask=move(self.query_mask),
                                   labelled=move(self.labelled))

    def labelled_targets(self) -> torch.Tensor:
        """The targets of the labelled samples only ``(L, C_out, ...)`` (all of them when every sample is)."""
        return self.targets if self.labelled is None else self.targets[self.labelled]

    def labelled_mask(self) -> torch.Tensor | None:
        """The padding mask of the labelled samples (None where there is none)."""
        return self.mask if self.mask is None or self.labelled is None else self.mask[self.labelled]

    def with_targets(self, targets: torch.Tensor | None) -> "Batch":
        """The same batch with other targets (a residual, one time step of a trajectory)."""
        return dataclasses.replace(self, targets=targets)

    def with_inputs(self, inputs: torch.Tensor) -> "Batch":
        return dataclasses.replace(self, inputs=inputs)

    def masked(self, values: torch.Tensor) -> torch.Tensor:
        """``values (B, C, N)`` with padded points set to zero (unchanged when nothing is padded)."""
        if self.mask is None:
            return values
        return values * self.mask[:, None].to(values.dtype)
