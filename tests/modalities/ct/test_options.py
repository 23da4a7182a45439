"""CT's typed data options (modalities/ct/options.py): defaults, refusals, and the recipe setting only what differs."""

from __future__ import annotations

import pytest

import modalities
import pretrain.config as C
from modalities.base import DataError
from modalities.ct.options import CtOptions
from modalities.options import OptionError


def test_a_partial_mapping_gets_the_defaults_and_keeps_its_own_values():
    opts = CtOptions.of({"path": "/x", "patch": None, "dose_i0": [1e5]})
    assert CtOptions.of(opts) is opts
    assert opts.path == "/x" and opts.patch is None and opts.dose_i0 == [1e5]
    assert opts.units == "auto" and opts.n_angles == 360 and opts.sigma_e == 10.0 and opts.noise_seed == 0
    assert opts.val_fraction == 0.25 and opts.probe_doses == (1e5, 5e4, 2.5e4) and opts.slices is None
    assert CtOptions.of({"sigma_e": 5, "units": "HU"}).sigma_e == 5.0 and CtOptions.of({"units": "HU"}).units == "hu"
    assert opts.replace(units="unit_interval").units == "unit_interval" and opts.units == "auto"


def test_unknown_options_wrong_types_and_units_outside_their_values_are_refused_in_one_line():
    with pytest.raises(OptionError, match=r"^data\.unitz: unknown option") as e:
        CtOptions.of({"unitz": "hu"})
    assert "\n" not in str(e.value)
    with pytest.raises(OptionError, match=r"^data\.n_angles: expected an integer, got 'many'$"):
        CtOptions.of({"n_angles": "many"})
    with pytest.raises(OptionError, match=r"^data\.patch: "):
        CtOptions.of({"patch": [128]})
    for bad in ("percent", "mm"):
        with pytest.raises(DataError, match=rf"^data\.units: must be one of auto, hu, unit_interval, got '{bad}'$"):
            CtOptions.of({"units": bad})
    with pytest.raises(OptionError, match=r"data\.units: must be one of"):
        CtOptions.of({}).replace(units="percent")
    with pytest.raises(C.ConfigError, match=r"^data\.unitz: unknown option"):
        C.resolve(modalities.get("ct").recipe, overrides=["data.unitz=hu"])


@pytest.mark.parametrize("demo, named", [(False, None), (True, None), (False, "per_image")])
def test_the_recipe_sets_only_what_differs_from_the_defaults(demo, named):
    recipe = modalities.get("ct").recipe
    data = C.resolve(recipe, demo=demo, named=named).data
    assert isinstance(data, CtOptions) and modalities.get("ct").options is CtOptions
    tree = C.load_yaml(recipe)
    sets = dict(tree["data"] or {})
    if demo:
        sets.update(tree["demo"]["data"])
    if named:
        sets.update(C.load_yaml(recipe.parent / "recipes" / f"{named}.yaml")["data"])
    defaults = CtOptions().to_dict()
    assert data.to_dict() == {**defaults, **sets}
    if not demo and not named:
        assert data.to_dict() == defaults
    else:
        assert data.to_dict() != defaults
