"""Precision modes and torch.compile in training: same numbers as the fp32 eager reference, within rounding."""

import json

import pytest
import torch

from oplearn.layers import SpectralConv
from oplearn.train import fit
from oplearn.precision import autocast, tf32_matmuls


def test_spectral_layer_under_bf16_autocast_keeps_float32_transforms():
    """bf16 in, bf16 out, but the FFTs run in float32: the error is bf16 rounding of the GEMM, not of the FFT."""
    torch.manual_seed(0)
    layer = SpectralConv(8, 8, (6, 6))
    x = torch.randn(4, 8, 32, 32)
    reference = layer.double()(x.double())
    layer.float()
    with autocast("mixed", torch.device("cpu")):
        got = layer(x.bfloat16())
    assert got.dtype == torch.bfloat16
    relative = ((got.double() - reference).norm() / reference.norm()).item()
    assert 1e-4 < relative < 2e-2  # bf16 has an 8-bit mantissa: ~4e-3 per rounding


def test_tf32_switch_is_scoped():
    before = torch.backends.cuda.matmul.allow_tf32
    with tf32_matmuls(not before):
        assert torch.backends.cuda.matmul.allow_tf32 is (not before)
    assert torch.backends.cuda.matmul.allow_tf32 is before


def final_error(run):
    return json.loads((run / "results.json").read_text())["test"]["rel_l2"]


def test_mixed_precision_training_tracks_fp32(tiny_run, tmp_path):
    config, reference_run = tiny_run
    mixed = {**config, "train": {**config["train"], "precision": "mixed"}}
    fit(mixed, tmp_path / "mixed", progress=False)
    reference, got = final_error(reference_run), final_error(tmp_path / "mixed")
    assert got != reference  # bf16 really ran
    assert abs(got - reference) < 0.1 * reference


def test_compiled_checkpointed_training_matches_eager_and_resumes(tiny_config, tmp_path):
    """torch.compile plus per-block activation checkpointing: the same losses as eager, and --resume works."""
    # A constant learning rate: a cosine schedule would depend on the number of epochs of each call.
    eager = {**tiny_config, "train": {**tiny_config["train"], "epochs": 2, "scheduler": "constant"}}
    compiled = {**eager, "model": {**eager["model"], "checkpoint_blocks": True},
                "train": {**eager["train"], "compile": True, "epochs": 1}}
    fit(eager, tmp_path / "eager", progress=False)
    fit(compiled, tmp_path / "compiled", progress=False)
    fit({**compiled, "train": {**compiled["train"], "epochs": 2}}, tmp_path / "compiled", resume=True, progress=False)
    lines = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
             for name in ("eager", "compiled")}
    assert len(lines["compiled"]) == 2
    for a, b in zip(lines["eager"], lines["compiled"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["test_rel_l2"] == pytest.approx(a["test_rel_l2"], rel=1e-4)
