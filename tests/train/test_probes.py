"""The NTK drift probe: a training callback that measures how far the tangent kernel moves."""

import pytest
import torch
from torch import nn

from oplearn.analysis.kernels import relative_drift
from oplearn.analysis.ntk import empirical_ntk
from oplearn.errors import ConfigError
from oplearn.train.probes import NTKDrift


def test_bad_probe_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="every"):
        NTKDrift(torch.zeros(2, 1, 4), every=0)


def test_ntk_drift_callback_measures_kernel_motion():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.Tanh(), nn.Conv1d(8, 1, 1)).double()
    probe = torch.randn(4, 1, 16, dtype=torch.float64)
    drift = NTKDrift(probe, every=2)
    drift.on_train_begin(model)
    reference = empirical_ntk(model, probe)
    torch.testing.assert_close(drift.reference, reference)
    metrics = {}
    drift.on_epoch_end(1, metrics, model)  # not an epoch this probe records
    assert metrics == {} and drift.history == []
    drift.on_epoch_end(2, metrics, model)
    assert metrics["ntk_drift"] == 0.0
    with torch.no_grad():
        model[0].weight.mul_(1.5)
    drift.on_epoch_end(4, metrics, model)
    expected = relative_drift(empirical_ntk(model, probe), reference)
    assert metrics["ntk_drift"] == pytest.approx(expected, rel=1e-12) and expected > 0.1
    assert drift.history == [(2, 0.0), (4, metrics["ntk_drift"])]
    assert model.training  # the probe restores the mode it found
    late = NTKDrift(probe)  # no on_train_begin: the first recorded epoch is the reference
    late.on_epoch_end(3, {}, model)
    assert late.reference_epoch == 3 and late.history == [(3, 0.0)]
