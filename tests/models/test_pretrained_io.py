"""save_pretrained overwrites atomically and load_pretrained names a missing or broken file (the bit-exact, pickle-free
round trip of every encoder is in test_contract.py)."""

from __future__ import annotations

import pytest

import models


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
