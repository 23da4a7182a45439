"""The signal modalities' typed data options (modalities/{ecg,eeg,ppg}/options.py on modalities/signals/options.py):
defaults, refusals, and the recipes setting only what differs."""

from __future__ import annotations

import pytest

import modalities
import pretrain.config as C
from modalities.ecg.options import EcgOptions
from modalities.eeg.options import EegOptions
from modalities.options import OptionError
from modalities.ppg.options import PpgOptions
from modalities.signals.options import SignalOptions

OPTIONS = {"ecg": EcgOptions, "eeg": EegOptions, "ppg": PpgOptions}


def test_a_partial_mapping_gets_the_defaults_and_keeps_its_own_values():
    opts = EcgOptions.of({"fs": 250, "probe_window_s": 4})
    assert EcgOptions.of(opts) is opts
    assert opts.fs == 250.0 and isinstance(opts.fs, float) and opts.probe_window_s == 4.0
    assert opts.window_s == 10.0 and opts.band == (0.5, 100.0) and opts.clip == 5.0 and opts.val_fraction == 0.1
    assert len(opts.leads) == 12 and opts.view_source == "window" and opts.probe_identity_folds == 3
    assert opts.probe_stride() == 2.0 and opts.replace(probe_stride_s=1).probe_stride() == 1.0
    assert opts.split_fractions == (0.8, 0.1, 0.1) and opts.max_windows_per_record == 10 and opts.split_seed == 0
    eeg = EegOptions.of({"fs": 128, "band": [1, 40]})
    assert eeg.band == (1.0, 40.0) and eeg.clip == 10.0 and eeg.notch_hz == (50.0, 60.0) and eeg.n_channels == 4
    assert eeg.probe_folds == 6 and eeg.probe_embedding == "channels" and eeg.label_window_s is None
    ppg = PpgOptions.of({"window_s": 8})
    assert ppg.window_s == 8.0 and ppg.fs == 64.0 and ppg.view_source == "record" and ppg.channels == ["PPG"]
    assert ppg.probe_stride() == 2.0 and ppg.probe_identity_folds is None and ppg.augment["p_cutout"] == 0.4
    assert PpgOptions().augment is not PpgOptions().augment  # no shared mutable default
    for cls in OPTIONS.values():
        assert issubclass(cls, SignalOptions)
    with pytest.raises(TypeError):  # the shared base leaves the rate, window and band to each modality
        SignalOptions()


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_unknown_options_and_wrong_types_are_refused_in_one_line(name):
    cls = OPTIONS[name]
    with pytest.raises(OptionError, match=r"^data\.fss: unknown option") as e:
        cls.of({"fss": 3})
    assert "\n" not in str(e.value) and cls.__name__ in str(e.value)
    with pytest.raises(OptionError, match=r"^data\.fs: expected a number, got 'fast'$"):
        cls.of({"fs": "fast"})
    with pytest.raises(OptionError, match=r"^data\.band: "):
        cls.of({"band": [0.5]})
    with pytest.raises(OptionError, match=r"^data\.view_source: expected 'window' \| 'record', got 'subject'$"):
        cls.of({"view_source": "subject"})
    with pytest.raises(OptionError, match=r"^data\.max_windows_per_record: expected an integer"):
        cls.of({}).replace(max_windows_per_record=2.5)
    with pytest.raises(C.ConfigError, match=r"^data\.fss: unknown option"):
        C.resolve(modalities.get(name).recipe, overrides=["data.fss=3"])
    with pytest.raises(C.ConfigError, match=r"^data\.split_fractions: "):
        C.resolve(modalities.get(name).recipe, overrides=["data.split_fractions=[0.5,0.5]"])


def test_eeg_refuses_an_unknown_probe_embedding():
    with pytest.raises(OptionError, match=r"^data\.probe_embedding: expected 'channels' \| 'mean', got 'median'$"):
        EegOptions.of({"probe_embedding": "median"})


@pytest.mark.parametrize("name, demo", [(n, d) for n in sorted(OPTIONS) for d in (False, True)])
def test_the_recipe_sets_only_what_differs_from_the_defaults(name, demo):
    mod = modalities.get(name)
    cls = OPTIONS[name]
    assert mod.options is cls
    data = C.resolve(mod.recipe, demo=demo).data
    assert isinstance(data, cls)
    tree = C.load_yaml(mod.recipe)
    sets = dict(tree.get("data") or {})
    if demo:
        sets.update((tree.get("demo") or {}).get("data") or {})
    defaults = cls().to_dict()
    for key, value in sets.items():
        assert key in defaults, key
        assert value != defaults[key], f"{name} recipe: data.{key} repeats the default {value!r}"
    assert data.to_dict() == {**defaults, **{k: cls.of(sets).to_dict()[k] for k in sets}}
    # what real runs use: the paper's inputs
    expect = {"ecg": {"fs": 500.0, "window_s": 10.0, "band": [0.5, 100.0], "clip": 5.0},
              "eeg": {"fs": 128.0, "window_s": 4.0, "band": [0.5, 45.0], "clip": 10.0, "notch_hz": [50.0, 60.0]},
              "ppg": {"fs": 64.0, "window_s": 8.0 if demo else 60.0, "band": [0.5, 8.0], "clip": 5.0}}[name]
    assert {k: data.to_dict()[k] for k in expect} == expect


def test_the_finetune_section_sets_only_options_of_the_modality():
    for name, cls in OPTIONS.items():
        ft = (C.load_yaml(modalities.get(name).recipe).get("finetune") or {}).get("data") or {}
        opts = cls.of(ft)
        assert all(getattr(opts, k) != getattr(cls(), k) for k in ft), name
