"""save_pretrained -> load_pretrained round-trips bit-exactly and never unpickles."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import models


def test_round_trip_is_bit_exact(tmp_path, monkeypatch):
    torch.manual_seed(3)
    enc = models.create("vit1d_xs", depth=2)
    out_dir = models.save_pretrained(enc, tmp_path / "encoder", extra={"fs": 500})
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "model.safetensors"]

    def no_pickle(*a, **k):
        raise AssertionError("load_pretrained must not unpickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = models.load_pretrained(out_dir)
    a, b = enc.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    x = torch.randn(2, 12, 500)
    assert torch.equal(enc.eval()(x), loaded(x))
    assert loaded.pretrained_extra == {"fs": 500}
    assert json.loads((out_dir / "config.json").read_text())["model"]["depth"] == 2


def test_overwrite_is_atomic_and_complete(tmp_path):
    d = tmp_path / "encoder"
    models.save_pretrained(models.create("vit1d_xs", depth=1), d)
    enc2 = models.create("vit1d_xs", depth=2)
    models.save_pretrained(enc2, d)
    assert models.load_pretrained(d).config["depth"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["encoder"]  # no temp or .old folders left behind


def test_missing_or_broken_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        models.load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        models.load_pretrained(tmp_path)
