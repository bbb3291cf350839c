"""bf16 mixed precision on point operators (``train.precision: mixed``): outputs and gradients stay close
to float32 on padded point sets, and a mesh run trains under it."""

import pytest
import torch
from train.test_point_data import mesh_config, write_mesh_file

from oplearn.models import build
from oplearn.train import fit
from oplearn.train.run_dir import RunDir

MODELS = {"transolver": {"dim": 2, "width": 16, "n_layers": 2, "n_heads": 2, "n_slices": 4, "chunk_points": 16},
          "galerkin": {"dim": 2, "width": 16, "n_layers": 2, "n_heads": 2},
          "gnot": {"dim": 2, "width": 16, "n_layers": 1, "n_heads": 2, "n_experts": 2},
          "gno": {"width": 16, "n_layers": 2, "kernel_width": 16, "radius": 0.3, "projection_channels": 16},
          "gino": {"modes": [4, 4], "latent_grid": [8, 8], "width": 8, "radius": 0.2},
          "geo_fno": {"modes": [4, 4], "width": 8}}


@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_autocast_tracks_float32_outputs_and_gradients(name):
    torch.manual_seed(0)
    net = build(name, 1, 2, domain=[[0.0, 0.0], [1.0, 1.0]], **MODELS[name])
    generator = torch.Generator().manual_seed(1)
    x, coords = torch.randn(2, 1, 60, generator=generator), torch.rand(2, 2, 60, generator=generator)
    mask = torch.ones(2, 60, dtype=torch.bool)
    mask[1, 45:] = False

    def run(mixed: bool):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            out = net(x, coords=coords, mask=mask)
        (out.float() ** 2).mean().backward()
        grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        return out.float().detach(), grads

    (reference, reference_grads), (mixed, mixed_grads) = run(False), run(True)
    assert torch.isfinite(mixed).all() and torch.isfinite(mixed_grads).all()
    difference = (mixed - reference).norm() / reference.norm()
    assert 0 < difference < 0.03  # bf16 did run (8 bits of mantissa), and stayed close
    assert torch.nn.functional.cosine_similarity(mixed_grads, reference_grads, dim=0) > 0.98
    assert torch.equal(mixed[1, :, 45:], torch.zeros_like(mixed[1, :, 45:]))  # padding stays zero


def test_a_mesh_run_trains_under_mixed_precision(tmp_path):
    files = {"train": str(write_mesh_file(tmp_path / "train.h5", 24, 1)),
             "test": str(write_mesh_file(tmp_path / "test.h5", 8, 2))}
    config = mesh_config(files, "transolver", width=16, n_layers=2, n_heads=2, n_slices=4)
    config["train"].update(precision="mixed", epochs=10)
    fit(config, tmp_path / "run", progress=False)
    metrics = RunDir(tmp_path / "run").read_metrics()
    assert metrics[-1]["test_rel_l2"] < 0.5 * metrics[0]["test_rel_l2"]
