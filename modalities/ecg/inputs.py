"""ECG probe and fine-tuning inputs in the pretraining layout: canonical lead slots, ECG band and clip.

A record's channels are mapped to canonical leads with :func:`~modalities.ecg.leads.lead_alias`
(:func:`lead_mapping`) and read into their slots by the shared
:func:`modalities.signals.preprocess.preprocess_window` (resampled to ``fs``, band-passed on the filled leads,
z-scored per lead and clipped); leads a record lacks stay zero.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from modalities.ecg.leads import LEADS_12, lead_alias
from modalities.ecg.options import EcgOptions
from modalities.signals import preprocess
from modalities.signals.preprocess import Band
from modalities.signals.record import RecordInfo

__all__ = ["Band", "DEFAULT_BAND", "DEFAULT_CLIP", "lead_mapping", "preprocess_window"]

DEFAULT_BAND: Band = EcgOptions.band  # the probe builders' defaults: the data options' (modalities/ecg/options.py)
DEFAULT_CLIP: float | None = EcgOptions.clip


def preprocess_window(
    info: RecordInfo,
    start_s: float,
    window_s: float,
    mapping: Sequence[tuple[str, int]],
    fs: float,
    n_leads: int = len(LEADS_12),
    band: Band = DEFAULT_BAND,
    clip: float | None = DEFAULT_CLIP,
) -> np.ndarray:
    """One model input, float32[n_leads, round(window_s * fs)], as SignalWindows builds it: the shared
    :func:`~modalities.signals.preprocess.preprocess_window` with the ECG defaults.

    ``mapping`` pairs a record channel with the output row it fills; other rows are zero.
    """
    return preprocess.preprocess_window(info, start_s, window_s, mapping, fs, n_leads, band, clip)


def lead_mapping(info: RecordInfo, leads: Sequence[str]) -> list[tuple[str, int]]:
    """Record channel -> output row, the first channel of each canonical lead (as SignalWindows)."""
    rows: dict[int, str] = {}
    for name in info.channels:
        lead = lead_alias(name)
        if lead in leads:
            rows.setdefault(list(leads).index(lead), name)
    return sorted(((name, row) for row, name in rows.items()), key=lambda t: t[1])
