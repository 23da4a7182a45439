"""The Modality contract's batching: views become [V, B, ...] as objectives expect."""

from __future__ import annotations

import torch

from modalities.base import collate_samples


def test_views_are_view_major():
    samples = [{"signal": torch.full((2, 5), float(b)), "views": torch.stack([torch.full((2, 5), 10.0 * v + b) for v in range(3)]),
                "subject": f"s{b}"} for b in range(4)]
    batch = collate_samples(samples)
    assert batch["signal"].shape == (4, 2, 5)
    assert batch["views"].shape == (3, 4, 2, 5)
    for v in range(3):
        for b in range(4):
            assert torch.all(batch["views"][v, b] == 10.0 * v + b)
    assert batch["subject"] == ["s0", "s1", "s2", "s3"]
