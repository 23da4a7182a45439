"""The ECG ``data`` options: every option the ECG code reads, its type, its one default and what it means.

The recipe (``modalities/ecg/recipe.yaml``) sets only what differs from these defaults (its ``demo`` and ``finetune``
sections); ``--set data.NAME=VALUE`` changes one for a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modalities.ecg.leads import LEADS_12
from modalities.signals.options import SignalOptions

__all__ = ["EcgOptions"]


@dataclass(frozen=True)
class EcgOptions(SignalOptions):
    """ECG-JEPA's inputs: 12 leads at 500 Hz, 10 s windows, band-passed 0.5-100 Hz, z-scored and clipped at +-5.

    ``path`` (--data): a folder of WFDB records (searched recursively) or one record. ``probe_data``
    (--probe-data): a folder of annotated WFDB records for the report's probes (beat class on mitdb/100 with .atr,
    record identity over every record); null: simulated ECGSYN subjects (seed 1001, not the training default's) with
    their known heart rates. Fine-tuning (``data.labels``): beats (WFDB .atr) with ``window_s: 2.5`` for windows
    centred on each beat; record labels (PTB-XL) with ``label_column: scp_codes``, ``subject_column: patient_id``
    and ``statements: scp_statements.csv`` for the superclasses.
    """

    fs: float = 500.0  # every record is resampled to this rate (Hz)
    window_s: float = 10.0  # random crops of this length (s); the length of labelled windows too
    leads: list[str] = field(default_factory=lambda: list(LEADS_12))  # the canonical leads of a sample, in order
    band: tuple[float, float] | None = (0.5, 100.0)  # zero-phase Butterworth band-pass (Hz); null to skip
    # record-identity probe: windows of 2.5 s (stride: half of it) give every record, even the 38 s PTB one,
    # >= 9 test windows; 3 blocked folds of every record
    probe_window_s: float = 2.5
