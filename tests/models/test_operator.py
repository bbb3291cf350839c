"""The operator contract: every registered model is an Operator with declared hyperparameters."""

import pytest
import torch

from oplearn.data.dataset import FieldDataset
from oplearn.errors import ConfigError
from oplearn.models import FNO, MLP, MODELS, TFNO, Operator, build, register
from oplearn.models.linearize import linearize
from oplearn.models.width import apply_mup

# Smallest values of the hyperparameters that have no default, per model.
REQUIRED = {"fno": {"modes": (4, 4)}, "tfno": {"modes": (4, 4)}, "gfno": {"modes": 4}, "gino": {"modes": (4, 4)},
            "geo_fno": {"modes": (4, 4)}, "ffno": {"modes": (4, 4)}, "t1": {"modes": (4, 4)},
            "uno": {"modes": ((4, 4), (2, 2), (1, 1), (2, 2), (4, 4))}}
GRIDS = {"afno": (16, 16), "fno": (16, 16), "tfno": (16, 16), "gfno": (16, 16), "kan": (5,), "mlp": (5,),
         "deeponet": (16, 16), "pod_deeponet": (16, 16), "mionet": (16, 16)}
GRIDS.update({name: (16, 16) for name in ("ffno", "galerkin", "geo_fno", "gino", "gno", "gnot", "lsm", "mgno", "t1",
                                          "transolver", "unet", "uno")})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_is_an_operator_built_from_its_hyper_defaults(name):
    cls = MODELS[name]
    assert issubclass(cls, Operator) and cls.name == name
    assert cls.Hyper.model_config["extra"] == "forbid"
    assert all(field.description for field in cls.Hyper.model_fields.values())  # documented
    required = {key for key, field in cls.Hyper.model_fields.items() if field.is_required()}
    assert required == set(REQUIRED.get(name, {}))
    model = build(name, in_channels=2, out_channels=3, **REQUIRED.get(name, {}))
    assert isinstance(model, cls) and (model.in_channels, model.out_channels) == (2, 3)
    assert model.hyper == cls.Hyper(**REQUIRED.get(name, {}))
    # The hyperparameters rebuild the same architecture.
    again = cls(2, 3, **model.hyper.model_dump())
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
    x = torch.rand(70, 2, *GRIDS[name]) * 2 - 1  # inside the KAN grid range
    model.fit_to_data(FieldDataset(x, torch.rand(70, 3, *GRIDS[name])))  # DeepONet's sensors, POD modes; else {}
    assert model(x[:1]).shape == (1, 3, *GRIDS[name])
    groups = model.optimizer_groups(0.1)
    assert groups == [{"params": list(model.parameters()), "lr": 0.1}]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_build_rejects_unknown_and_mistyped_hyperparameters_in_one_line(name):
    with pytest.raises(ConfigError, match=f"unknown hyperparameter.*wdith.*for model '{name}'; it takes: ") as error:
        build(name, in_channels=1, out_channels=1, **REQUIRED.get(name, {}), wdith=3)
    assert len(str(error.value).splitlines()) == 1
    field = next(f for f in ("width", "widths", "basis") if f in MODELS[name].Hyper.model_fields)
    with pytest.raises(ConfigError, match=f"model '{name}': {field}: ") as error:
        build(name, in_channels=1, out_channels=1, **REQUIRED.get(name, {}), **{field: "a"})
    assert len(str(error.value).splitlines()) == 1


def test_missing_and_invalid_hyperparameters_are_named_also_in_direct_construction():
    with pytest.raises(ConfigError, match="model 'fno': missing hyperparameter.s. modes$"):
        FNO(1, 1)
    with pytest.raises(ConfigError, match=r"model 'fno': modes\[1\]: Input should be a valid integer"):
        FNO(1, 1, modes=(4, "x"))
    with pytest.raises(ConfigError, match="unknown hyperparameter.*wdith"):
        FNO(1, 1, modes=(4, 4), wdith=3)
    model = build("fno", in_channels=1, out_channels=1, modes=[4, 4], padding=[0.1, 0])  # YAML lists
    assert model.hyper.modes == (4, 4) and model.hyper.padding == (0.1, 0.0)


def test_tfno_defaults_come_from_its_hyper():
    assert TFNO.Hyper.model_fields.keys() == FNO.Hyper.model_fields.keys()
    assert (TFNO.Hyper(modes=(4,)).factorization, TFNO.Hyper(modes=(4,)).rank) == ("tucker", 0.1)
    torch.manual_seed(0)
    tfno = TFNO(1, 2, modes=(6, 6), width=16, n_layers=2)
    torch.manual_seed(0)
    fno = FNO(1, 2, modes=(6, 6), width=16, n_layers=2, factorization="tucker", rank=0.1)
    assert sum(p.numel() for p in tfno.parameters()) == sum(p.numel() for p in fno.parameters())
    for a, b in zip(tfno.parameters(), fno.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("make, base_width", [
    (lambda **mup: FNO(1, 1, modes=(3, 3), width=32, n_layers=2, projection_channels=16, **mup), 8),
    (lambda **mup: MLP(4, 1, width=128, n_layers=3, **mup), 16),
])
def test_mup_rebuild_gives_the_model_the_explicit_base_gave(make, base_width):
    """muP against the construction it replaced: SP init, then apply_mup with the base built by hand."""
    torch.manual_seed(0)
    mup = make(parameterization="mup", base_width=base_width)
    torch.manual_seed(0)
    expected = make()
    with torch.device("meta"):
        base = type(expected)(expected.in_channels, expected.out_channels,
                              **{**expected.hyper.model_dump(), "width": base_width})
    apply_mup(expected, base)
    assert mup.mup_roles == expected.mup_roles and mup.mup_lr_scale == expected.mup_lr_scale
    assert set(mup.mup_roles.values()) >= {"input", "hidden", "output"}
    for (name, a), b in zip(mup.named_parameters(), expected.parameters()):
        assert torch.equal(a, b), name
    assert [g["lr"] for g in mup.optimizer_groups(1.0)] == [g["lr"] for g in expected.optimizer_groups(1.0)]


def test_mup_base_width_defaults_to_the_default_width():
    torch.manual_seed(0)
    sp = MLP(3, 1)
    torch.manual_seed(0)
    mup = MLP(3, 1, parameterization="mup")  # width = base width = 64: muP is SP
    assert all(torch.equal(a, b) for a, b in zip(sp.parameters(), mup.parameters()))
    assert set(mup.mup_lr_scale.values()) == {1.0}


def test_geometries_are_honoured_by_accepts():
    fno, mlp = FNO(1, 1, modes=(4,)), build("mlp", in_channels=1, out_channels=1)
    assert fno.geometries == frozenset({"grid"}) and fno.accepts("grid") and not fno.accepts("mesh")
    assert not fno.accepts("points")
    for kind in ("grid", "mesh", "points"):
        assert mlp.accepts(kind) and build("kan", in_channels=1, out_channels=1).accepts(kind)
    for name in ("afno", "gfno", "tfno"):
        assert MODELS[name].geometries == frozenset({"grid"})
    assert linearize(mlp).accepts("points") and not linearize(fno).accepts("mesh")


def test_refine_releases_the_last_blocks_modes_as_the_refine_recipe_did():
    torch.manual_seed(0)
    model = FNO(1, 1, modes=(4, 4), width=6, n_layers=3, padding=0.1, projection_channels=8).double()
    model.domain_padding.fix_period((16, 16))
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    before = model(x)
    updates = model.refine((16, 16))
    padded = [16 + p for p in model.domain_padding.points((16, 16))]  # round(1.1 * 15) = 16: no zeros
    assert updates == {"last_modes": [padded[0] // 2, padded[1] // 2 + 1]} == {"last_modes": [8, 9]}
    assert model.hyper.last_modes == (8, 9)
    torch.testing.assert_close(model(x), before, rtol=0, atol=1e-13)  # new modes start at zero
    # The recipe unfroze exactly the parameters named blocks.<last>.spectral.*
    by_name = [p for name, p in model.named_parameters() if name.startswith("blocks.2.spectral.")]
    assert [id(p) for p in model.refinable_parameters()] == [id(p) for p in by_name] and by_name
    rebuilt = FNO(1, 1, **model.hyper.model_dump())
    rebuilt.load_state_dict(model.state_dict())  # the saved updates rebuild the refined model


def test_models_without_spectral_layers_cannot_be_refined():
    mlp = build("mlp", in_channels=1, out_channels=1)
    assert mlp.refinable_parameters() == []
    with pytest.raises(ConfigError, match="stage.recipe refine needs a model with spectral layers; mlp has none"):
        mlp.refine((16,))
    with pytest.raises(ConfigError, match="single-model base run"):
        linearize(FNO(1, 1, modes=(4,))).refine((16,))


def test_linearized_keeps_the_inner_contract():
    mup = MLP(2, 1, width=32, parameterization="mup", base_width=8)
    lin = linearize(mup)
    assert isinstance(lin, Operator) and (lin.in_channels, lin.out_channels) == (2, 1)
    inner = {id(p): group["lr"] for group in lin.model.optimizer_groups(1.0) for p in group["params"]}
    ours = {id(p): group["lr"] for group in lin.optimizer_groups(1.0) for p in group["params"]}
    assert ours == inner and len(set(ours.values())) > 1
    with pytest.raises(ConfigError, match="linearize takes an oplearn Operator"):
        linearize(torch.nn.Linear(2, 2))


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="taken by FNO"):
        register("fno")(type("Other", (Operator,), {}))
