"""The typed LiDAR data options: one default per option, refused typos and types, the recipe sets only deviations."""

from __future__ import annotations

import dataclasses

import pytest

import modalities
import pretrain.config as C
from modalities.base import DataError
from modalities.lidar.options import LidarOptions
from modalities.options import OptionError


def test_partial_dict_takes_the_dataclass_defaults():
    opts = LidarOptions.of({"max_points": 16000, "voxel_size": [0.2, 0.2, 0.2]})
    assert opts.max_points == 16000 and opts.voxel_size == (0.2, 0.2, 0.2)
    assert opts.preset == "kitti" and opts.val_fraction == 0.2 and opts.point_columns == "auto"
    assert opts.label_format == "auto" and opts.split_fractions == (0.8, 0.1, 0.1) and opts.label_unit == "frames"
    assert opts.grid.voxel_size == (0.2, 0.2, 0.2) and opts.grid.point_range == (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
    assert LidarOptions.of(opts) is opts and dict(opts)["max_points"] == 16000
    assert opts.replace(max_points=0).max_points == 0 and opts.max_points == 16000  # a copy; frozen


def test_unknown_options_and_wrong_types_are_refused_by_name():
    with pytest.raises(OptionError, match=r"^data\.voxel_sise: unknown option"):
        LidarOptions.of({"voxel_sise": 0.1})
    with pytest.raises(OptionError, match=r"^data\.max_points: expected an integer"):
        LidarOptions.of({"max_points": "many"})
    with pytest.raises(OptionError, match=r"^data\.point_columns: "):
        LidarOptions.of({"point_columns": 5})
    with pytest.raises(OptionError, match=r"^data\.label_format: "):
        LidarOptions.of({"label_format": "ids"})
    with pytest.raises(DataError, match=r"^data\.preset: unknown preset 'lyft'"):  # checked when built
        LidarOptions.of({"preset": "lyft"})
    with pytest.raises(DataError, match=r"^data\.voxel_size: needs 3 positive sizes"):
        LidarOptions.of({"voxel_size": -1})
    with pytest.raises(OptionError, match=r"^data\.voxel_sise: unknown option"):
        C.resolve(modalities.get("lidar").recipe, overrides=["data.voxel_sise=0.1"])


def test_recipe_data_is_the_defaults_except_what_it_sets():
    recipe = modalities.get("lidar").recipe
    assert modalities.get("lidar").options is LidarOptions
    defaults = LidarOptions().to_dict()
    tree = C.load_yaml(recipe)
    for demo, sets in ((False, tree.get("data") or {}), (True, tree["demo"]["data"])):
        got = C.resolve(recipe, demo=demo).data
        assert isinstance(got, LidarOptions)
        d = got.to_dict()
        assert {k: v for k, v in d.items() if v != defaults[k]} == sets, demo
    # the recipe sets no option to its default value (the one default lives in the dataclass)
    assert all(v != defaults[k] for k, v in (tree.get("data") or {}).items())
    assert {f.name for f in dataclasses.fields(LidarOptions)} >= {"preset", "point_range", "voxel_size", "max_points",
                                                                   "val_fraction", "label_format", "point_columns"}
