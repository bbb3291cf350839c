"""TFNO by name, and FNO's factorization hook."""

import pytest
import torch

from oplearn.errors import ConfigError
from oplearn.layers import SpectralConv
from oplearn.layers.factorized_spectral import CPSpectralConv, TuckerSpectralConv
from oplearn.models import FNO, build


def test_tfno_is_an_fno_with_tucker_weights_at_a_tenth_of_the_size():
    torch.manual_seed(0)
    model = build("tfno", in_channels=1, out_channels=2, modes=(6, 6), width=16, n_layers=2)
    dense = build("fno", in_channels=1, out_channels=2, modes=(6, 6), width=16, n_layers=2)
    assert all(isinstance(block.spectral, TuckerSpectralConv) for block in model.blocks)
    spectral = sum(p.numel() for block in model.blocks for p in block.spectral.parameters())
    spectral_dense = sum(p.numel() for block in dense.blocks for p in block.spectral.parameters())
    assert 0.05 * spectral_dense < spectral <= 0.1 * spectral_dense
    x = torch.randn(2, 1, 16, 16)
    model(x).square().mean().backward()
    assert model(x).shape == (2, 2, 16, 16)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_tfno_takes_fno_hyperparameters_and_rejects_unknown_ones():
    model = build("tfno", in_channels=1, out_channels=1, modes=(4,), width=8, factorization="cp", rank=0.3)
    assert isinstance(model.blocks[0].spectral, CPSpectralConv)
    with pytest.raises(ConfigError, match="unknown hyperparameter.*wdith"):
        build("tfno", in_channels=1, out_channels=1, modes=(4,), wdith=8)


def test_fno_factorization_hook_at_full_rank_matches_the_dense_fno():
    torch.manual_seed(1)
    dense = FNO(1, 1, modes=(3, 3), width=4, n_layers=2).double()
    tucker = FNO(1, 1, modes=(3, 3), width=4, n_layers=2, factorization="tucker", rank=100.0).double()
    state = {k: v for k, v in dense.state_dict().items() if "spectral" not in k}
    tucker.load_state_dict(state, strict=False)
    with torch.no_grad():  # full ranks: core = dense weights, identity factors
        for block, source in zip(tucker.blocks, dense.blocks):
            block.spectral.core_pairs.copy_(source.spectral.weight_pairs)
            for factor in block.spectral.factor_pairs:
                factor.copy_(torch.view_as_real(torch.eye(factor.shape[0], dtype=torch.complex128)))
    x = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(tucker(x), dense(x), rtol=1e-10, atol=1e-10)


def test_bad_factorization_options_are_config_errors():
    assert isinstance(FNO(1, 1, modes=(4,)).blocks[0].spectral, SpectralConv)
    with pytest.raises(ConfigError, match="unknown factorization 'tt'; choose one of: dense, tucker, cp"):
        build("fno", in_channels=1, out_channels=1, modes=(4,), factorization="tt")
    with pytest.raises(ConfigError, match="rank applies only"):
        build("fno", in_channels=1, out_channels=1, modes=(4,), rank=0.5)
    with pytest.raises(ConfigError, match="too small"):
        build("tfno", in_channels=1, out_channels=1, modes=(4, 4), width=8, rank=1e-5)
