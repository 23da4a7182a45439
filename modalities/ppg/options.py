"""The PPG ``data`` options: every option the PPG code reads, its type, its one default and what it means.

The recipe (``modalities/ppg/recipe.yaml``) sets only what differs from these defaults (its ``demo`` section);
``--set data.NAME=VALUE`` changes one for a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from modalities.signals.augment import BiosignalAugment
from modalities.signals.options import SignalOptions

__all__ = ["PpgOptions"]


def _paper_augment() -> dict[str, Any]:
    """The paper's augmentation cascade: :class:`~modalities.signals.augment.BiosignalAugment`'s defaults."""
    return dataclasses.asdict(BiosignalAugment())


@dataclass(frozen=True)
class PpgOptions(SignalOptions):
    """The wearable foundation model's inputs: one PPG channel at 64 Hz, 60 s segments band-passed 0.5-8 Hz, z-scored
    and clipped at +-5; positives are two segments of the same record, each augmented.

    ``path`` (--data): a folder (searched recursively) of WFDB records with a PLETH channel or PPG CSV files.
    ``probe_data`` (--probe-data): a folder of real PPG recordings for the report's probes (ppg_heartpy/*.csv,
    challenge2015/a103l); null: the three recordings shipped inside the installed heartpy package.
    """

    csv_fs: float | None = None  # rate (Hz) of CSV files without a timer/datetime column (HeartPy's data.csv: 100)
    fs: float = 64.0  # every record is resampled to this rate (Hz)
    window_s: float = 60.0  # the paper's segment length (s)
    channels: list[str] = field(default_factory=lambda: ["PPG"])  # [PPG], or [PPG, ECG] for the cross_modal objective
    band: tuple[float, float] | None = (0.5, 8.0)  # zero-phase Butterworth band-pass (Hz) around the pulse and its
    # harmonics; null to skip
    view_source: Literal["window", "record"] = "record"  # positives: two random segments of the same record
    probe_window_s: float = 8.0  # probe windows (s; the shortest HeartPy recording lasts 25 s) ...
    probe_stride_s: float | None = 2.0  # ... every 2 s
    # record-identity probe: the fixed 2/3 vs 1/3 split (the PPG results were measured with it); K: K blocked folds
    probe_identity_folds: int | None = None
    # the views' augmentation (BiosignalAugment's options): cut-out 0.4 (30-50 %), magnitude warp 0.25 (sigma 0.2,
    # 5 knots), time warp 0.15 (sigma 0.1), Gaussian noise 0.25 (sigma 0.05-0.1), channel permutation 0.25
    augment: dict[str, Any] = field(default_factory=_paper_augment)
