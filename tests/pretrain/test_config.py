"""Config resolution: recipe -> user YAML -> --set overrides, with one-line errors naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

import modalities
from pretrain import config as C


def recipe():
    return modalities.get("ecg").recipe


def test_recipe_and_demo_and_overrides(tmp_path):
    cfg = C.resolve(recipe())
    assert cfg.model["name"] == "vit1d_xs" and cfg.objective["name"] == "jepa"
    assert cfg.optim.lr == 1e-3 and cfg.optim.warmup_steps == 10000 and cfg.train.max_steps == 100000
    demo = C.resolve(recipe(), demo=True)
    assert demo.train.max_steps == 150 and demo.optim.warmup_steps == 20
    user = tmp_path / "my.yaml"
    user.write_text("optim:\n  lr: 2.0e-4\ntrain:\n  batch_size: 8\n")
    cfg = C.resolve(recipe(), user, ["optim.lr=3e-4", "model.name=vit1d_s", "data.window_s=5"])
    assert cfg.optim.lr == 3e-4 and cfg.train.batch_size == 8
    assert cfg.model == {"name": "vit1d_s"} and cfg.data["window_s"] == 5
    # the written file reads back to the same config
    C.save(cfg, tmp_path / "config.yaml")
    assert C.load_run_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("item,msg", [
    ("optim.lrr=1", "optim.lrr: unknown option"),
    ("optim.lr=-1", "optim.lr: must be > 0"),
    ("optim.lr=fast", "optim.lr: expected a number"),
    ("train.batch_size=1.5", "train.batch_size: expected an integer"),
    ("train.precision=fp8", "train.precision: unknown precision"),
    ("trian.max_steps=3", "unknown section 'trian'"),
    ("optim.lr", "expected KEY=VALUE"),
    ("lr=3", "KEY must be SECTION.NAME"),
    ("optim.betas=[0.9, 1.2]", "optim.betas"),
])
def test_bad_overrides_are_one_line(item, msg):
    with pytest.raises(C.ConfigError, match=msg) as e:
        C.resolve(recipe(), None, [item])
    assert "\n" not in str(e.value)


def test_bad_yaml_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(C.ConfigError, match="bad.yaml: not valid YAML"):
        C.resolve(recipe(), bad)
    with pytest.raises(C.ConfigError, match="nope.yaml: config file not found"):
        C.resolve(recipe(), tmp_path / "nope.yaml")


def test_exponent_numbers_are_numbers(tmp_path):
    user = tmp_path / "u.yaml"
    user.write_text("optim:\n  lr: 5e-4\n  min_lr: 1E-7\nobjective:\n  name: jepa\n  ema: [0.998, 9995e-4]\n")
    cfg = C.resolve(recipe(), user, ["optim.weight_decay=5e-2"])
    assert cfg.optim.lr == 5e-4 and cfg.optim.min_lr == 1e-7 and cfg.optim.weight_decay == 0.05
    assert cfg.objective["ema"] == [0.998, 0.9995]


def test_named_recipe_merges_over_the_recipe_and_unknown_ones_are_refused():
    ct = modalities.get("ct").recipe
    assert C.named_recipes(ct) == ["per_image"]
    base = C.resolve(ct)
    per_image = C.resolve(ct, named="per_image", overrides=["data.slices=[3]"])
    assert base.data["patch"] == 128 and base.train.max_steps == 2000 and base.model.get("sigma_init", "unset") == "unset"
    assert per_image.data["patch"] is None and per_image.data["slices"] == [3]  # --set still wins
    assert per_image.train.max_steps == 500 and per_image.train.batch_size == 2 and per_image.train.seed == 77
    assert per_image.objective["edge_weight"] == 400.0 and per_image.model["sigma_init"] is None
    assert per_image.optim.warmup_steps == 150
    with pytest.raises(C.ConfigError, match=r"--recipe fast: not a named recipe of ct \(named recipes: per_image\)"):
        C.resolve(ct, named="fast")
    with pytest.raises(C.ConfigError, match=r"--recipe per_image: not a named recipe of ecg \(named recipes: jepa_short\)"):
        C.resolve(modalities.get("ecg").recipe, named="per_image")
    short = C.resolve(modalities.get("ecg").recipe, named="jepa_short", demo=True)  # over the demo section too
    assert short.train.max_steps == 300 and short.train.batch_size == 32 and short.optim.warmup_steps == 30
    assert short.model["patch_norm"] is True and short.model["patch_init"] == "fan_in"
    assert list(short.objective["ema"]) == [0.99, 0.999] and short.objective["keep"] == [0.15, 0.25]


@pytest.mark.parametrize("modality,named", [(m, n) for m in modalities.names()
                                            for n in C.named_recipes(modalities.get(m).recipe)])
def test_every_named_recipe_resolves_and_changes_the_recipe(modality, named):
    recipe = modalities.get(modality).recipe
    base, over = C.resolve(recipe).to_dict(), C.resolve(recipe, named=named).to_dict()
    assert over != base and over["modality"] == modality


def test_a_named_recipe_with_a_stray_section_is_refused(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipe.yaml").write_text(Path(modalities.get("ecg").recipe).read_text())
    (tmp_path / "recipes" / "bad.yaml").write_text("trian:\n  max_steps: 3\n")
    with pytest.raises(C.ConfigError, match=r"bad.yaml: 'trian' is not a section"):
        C.resolve(tmp_path / "recipe.yaml", named="bad")


def test_resolve_run_is_one_path_for_fresh_and_resumed_runs(tmp_path):
    ecg = modalities.get("ecg").recipe
    fresh = C.resolve_run(ecg, "ecg", overrides=["optim.lr=3e-4"], extra={"train": {"max_steps": 7}})
    assert fresh.optim.lr == 3e-4 and fresh.train.max_steps == 7 and fresh.modality == "ecg"
    run = tmp_path / "run"
    run.mkdir()
    C.save(fresh, run / "config.yaml")
    resumed = C.resolve_run(ecg, "ecg", resume_dir=run, overrides=["optim.lr=1e-4"], extra={"train": {"max_steps": 9}})
    assert resumed.optim.lr == 1e-4 and resumed.train.max_steps == 9  # the run's config, then --set and the flags
    assert resumed.model == fresh.model and resumed.data == fresh.data
    with pytest.raises(C.ConfigError, match="that run is 'ecg', not 'ppg'"):
        C.resolve_run(modalities.get("ppg").recipe, "ppg", resume_dir=run)
    with pytest.raises(C.ConfigError, match="--recipe applies to a new run"):
        C.resolve_run(ecg, "ecg", resume_dir=run, named="jepa_short")
    with pytest.raises(C.ConfigError, match="a recipe of 'ecg', not 'ppg'"):
        C.resolve_run(ecg, "ppg")
