"""Channel names and types: 10-20 / 10-10 normalisation, type inference, picking and re-referencing.

Files spell the same electrode many ways: BCI2000's EDF pads labels with dots (``"Fc5."``, ``"Cz.."``),
EDF+ prefixes the signal type (``"EEG Fpz-Cz"``), clinical systems shout (``"FP1-REF"``). Readers keep the
file's own names in :class:`~modalities.signals.record.RecordInfo` (so reads address the file exactly); the
functions here map them to one spelling, the case of MNE's ``standard_1005`` montage (``"FC5"``, ``"Fpz"``,
``"Cz-A2"``), and to one type per channel.

>>> normalize_channel_name("Fc5.")
'FC5'
>>> normalize_channel_name("EEG Fpz-Cz")
'Fpz-Cz'
>>> infer_channel_type("EOG horizontal")
'eog'
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from modalities.base import DataError

__all__ = [
    "CHANNEL_TYPES",
    "electrode_names",
    "infer_channel_type",
    "normalize_channel_name",
    "pick_channels",
    "rereference",
    "unit_scale",
]

CHANNEL_TYPES = ("ecg", "ppg", "eeg", "eog", "emg", "resp", "stim", "misc")

# EDF+ signal-type prefixes (EDF+ spec, "standard texts and polarity rules") and their types.
_TYPE_PREFIXES = {
    "EEG": "eeg", "EOG": "eog", "EMG": "emg", "ECG": "ecg", "EKG": "ecg", "RESP": "resp",
    "PPG": "ppg", "PLETH": "ppg", "SAO2": "misc", "SPO2": "misc", "TEMP": "misc", "MISC": "misc",
}
# A reference suffix that names no electrode ("FP1-REF", "C3-LE"): dropped by normalisation.
_REFERENCE_SUFFIXES = {"REF", "LE", "AR", "AVG", "AV", "CAR"}

_ECG_LEADS = {"I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6", "MLII", "MLI",
              "MLIII", "MCL1", "MCL6", "V", "ECG", "EKG", "VX", "VY", "VZ"}
_TYPE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("stim", re.compile(r"^(sti\s*\d*|stim.*|status|trigger|event.*|marker.*|annotations?)$", re.I)),
    ("ppg", re.compile(r"(pleth|\bppg\b|\bbvp\b|photopleth)", re.I)),
    ("eog", re.compile(r"(\beog\b|^[hv]eog|^(loc|roc)(\b|-)|^e[12]-)", re.I)),
    ("emg", re.compile(r"(\bemg\b|\bchin\b|submental|\bleg\b|tibial)", re.I)),
    ("resp", re.compile(r"(resp|thor|abdo|airflow|nasal|\bflow\b|snore|effort)", re.I)),
    ("ecg", re.compile(r"(\becg\b|\bekg\b)", re.I)),
)


@lru_cache(maxsize=1)
def electrode_names() -> dict[str, str]:
    """Upper-case name -> MNE spelling of every 10-05 electrode (``standard_1005``, 343 positions)."""
    import mne

    builtin = mne.channels.get_builtin_montages()
    # mne 1.13 renamed standard_1005 to colin27_1005 (same positions and names) and deprecates the old name.
    kind = "colin27_1005" if "colin27_1005" in builtin else "standard_1005"
    with warnings.catch_warnings(), mne.utils.use_log_level("error"):
        warnings.simplefilter("ignore")
        names = mne.channels.make_standard_montage(kind).ch_names
    return {n.upper(): n for n in names if n not in ("LPA", "RPA")}  # fiducials are not electrodes


def _electrode(part: str) -> str | None:
    return electrode_names().get(part.strip().rstrip(".").upper())


def _split_prefix(name: str) -> tuple[str | None, str]:
    """``"EEG Fpz-Cz"`` -> ``("eeg", "Fpz-Cz")``; a name without a known type prefix -> ``(None, name)``."""
    head, _, rest = name.partition(" ")
    kind = _TYPE_PREFIXES.get(head.upper())
    if kind is not None and rest.strip():
        return kind, rest.strip()
    return None, name


def _electrode_expression(text: str) -> str | None:
    """``"fc5"`` -> ``"FC5"``, ``"cz-a2"`` -> ``"Cz-A2"``, ``"FP1-REF"`` -> ``"Fp1"``; None unless every
    part is a 10-05 electrode (a trailing reference word excepted)."""
    parts = [p.strip().rstrip(".") for p in text.strip().rstrip(".").split("-")]
    if len(parts) > 1 and parts[-1].upper() in _REFERENCE_SUFFIXES:
        parts = parts[:-1]
    if not parts or len(parts) > 2:
        return None
    mapped = [_electrode(p) for p in parts]
    if any(m is None for m in mapped):
        return None
    return "-".join(m for m in mapped if m is not None)


def normalize_channel_name(name: str) -> str:
    """One spelling per electrode: MNE ``standard_1005`` case, no padding, no EDF+ type prefix.

    A single electrode or a bipolar / referenced pair whose parts are 10-05 electrodes is returned in
    montage case (``"Fc5."`` -> ``"FC5"``, ``"EEG Fpz-Cz"`` -> ``"Fpz-Cz"``, ``"CZ-A2"`` -> ``"Cz-A2"``,
    ``"EEG FP1-REF"`` -> ``"Fp1"``). Any other name is only trimmed of blanks and padding dots
    (``"EOG horizontal"``, ``"PLETH"``, ``"MLII"`` stay as they are).
    """
    text = " ".join(str(name).split()).rstrip(".").strip()
    _, rest = _split_prefix(text)
    for candidate in (rest, text):
        expr = _electrode_expression(candidate)
        if expr is not None:
            return expr
    return text


def infer_channel_type(name: str, unit: str = "") -> str:
    """The type of a channel from its name (and unit): one of :data:`CHANNEL_TYPES`.

    Order of evidence: an EDF+ type prefix (``"EEG ..."``, ``"EOG ..."``), a name pattern
    (``PLETH``/``PPG`` -> ppg, ``LOC``/``ROC``/``HEOG`` -> eog, ``chin``/``submental`` -> emg,
    ``thorax``/``airflow`` -> resp, ``STI``/``Status``/``Event marker`` -> stim), an ECG lead name
    (``II``, ``V5``, ``MLII``), a 10-05 electrode or electrode pair -> eeg; otherwise ``"misc"``.
    ``unit`` breaks no tie today; it is accepted so callers pass what the file says.
    """
    del unit  # documented above: names are the evidence that matters in practice
    text = " ".join(str(name).split()).rstrip(".").strip()
    kind, rest = _split_prefix(text)
    if kind is not None:
        return kind
    for kind, pattern in _TYPE_PATTERNS:
        if pattern.search(text):
            return kind
    if text.upper().replace(" ", "") in _ECG_LEADS or re.fullmatch(r"(ECG|EKG)\s*\d+", text, re.I):
        return "ecg"
    if _electrode_expression(rest) is not None:
        return "eeg"
    return "misc"


def unit_scale(unit: str, to: str = "uV") -> float:
    """Factor that converts values in ``unit`` to ``to`` (volts family only: V, mV, uV/µV, nV).

    >>> unit_scale("V", "uV")
    1000000.0

    Raises:
        ValueError: either unit is not a volt unit.
    """
    powers = {"V": 0, "MV": -3, "UV": -6, "NV": -9}

    def power(u: str) -> int | None:
        return powers.get(u.strip().replace("\u00b5", "u").replace("\u03bc", "u").upper())

    a, b = power(unit), power(to)
    if a is None or b is None:
        raise ValueError(f"cannot convert {unit!r} to {to!r}: not a volt unit")
    return float(10.0 ** (a - b))


def pick_channels(
    channels: Sequence[str] | Any,
    names: Sequence[str] | None = None,
    types: Sequence[str] | str | None = None,
    channel_types: Sequence[str] | None = None,
    record: str = "record",
) -> list[str]:
    """The file's channel names selected by normalised name and/or type, in the order asked.

    >>> pick_channels(["Fc5.", "Cz..", "EOG left"], ["cz", "FC5"])
    ['Cz..', 'Fc5.']

    Args:
        channels: the record's channel names as the file spells them, or a
            :class:`~modalities.signals.record.RecordInfo` (its channels, types and path are used).
        names: wanted names in any spelling (``"Fc5."``, ``"FC5"`` and ``"fc5"`` are the same
            electrode); returned in this order. None: every channel (of the wanted types).
        types: wanted types (:data:`CHANNEL_TYPES`); a string is one type.
        channel_types: the type of each channel (default: :func:`infer_channel_type` of its name).
        record: the record's path, for the error message.

    Returns:
        file channel names (exactly as in ``channels``).

    Raises:
        DataError: a wanted name matches no channel, or nothing is left; the one-line message
            names ``record`` and lists its channels.
    """
    if hasattr(channels, "channels") and hasattr(channels, "channel_types"):  # a RecordInfo
        channel_types = channel_types or channels.channel_types
        record = channels.path if record == "record" else record
        channels = channels.channels
    chans = list(channels)
    kinds = list(channel_types) if channel_types else [infer_channel_type(c) for c in chans]
    wanted_types = {types} if isinstance(types, str) else set(types or ())
    unknown_types = wanted_types - set(CHANNEL_TYPES)
    if unknown_types:
        raise DataError(f"{record}: unknown channel type {sorted(unknown_types)[0]!r}; types: "
                        f"{', '.join(CHANNEL_TYPES)}")
    keys = [normalize_channel_name(c).upper() for c in chans]
    available = ", ".join(f"{c} ({k})" for c, k in zip(chans, kinds)) or "none"
    if names is None:
        picked = [c for c, k in zip(chans, kinds) if not wanted_types or k in wanted_types]
    else:
        picked, missing = [], []
        for want in names:
            key = normalize_channel_name(want).upper()
            hits = [c for c, k, kind in zip(chans, keys, kinds)
                    if (k == key or c == want) and (not wanted_types or kind in wanted_types)]
            if hits:
                picked.append(hits[0])
            else:
                missing.append(str(want))
        if missing:
            raise DataError(f"{record}: no channel matches {', '.join(missing)}; available: {available}")
    if not picked:
        what = f"of type {', '.join(sorted(wanted_types))}" if wanted_types else "at all"
        raise DataError(f"{record}: no channel {what}; available: {available}")
    return picked


def rereference(
    x: np.ndarray, channels: Sequence[str], ref: str | Sequence[str], drop_ref: bool = False,
    record: str = "record",
) -> tuple[np.ndarray, list[str]]:
    """Re-reference EEG: subtract a reference signal from every channel.

    ``y_c = x_c - r`` with ``r`` the mean of all channels (``ref="average"``), one channel
    (``ref="Cz"``) or the mean of several (``ref=["M1", "M2"]``, linked mastoids; also ``"A1"/"A2"``).
    Names match in any spelling (:func:`normalize_channel_name`).

    Args:
        x: float[C, T] signals of ``channels``.
        channels: C names.
        ref: ``"average"``, a channel name, or a list of names.
        drop_ref: remove the reference channels from the output (they are zero, or for a pair
            antisymmetric, after re-referencing).
        record: the record's path, for the error message.

    Returns:
        ``(y, names)``: float[C', T] and its channel names.

    Raises:
        DataError: a reference channel is not among ``channels``.
    """
    x = np.asarray(x)
    names = list(channels)
    if x.ndim != 2 or x.shape[0] != len(names):
        raise DataError(f"{record}: rereference needs x of shape [{len(names)}, T], got {list(x.shape)}")
    if isinstance(ref, str) and ref.lower() == "average":
        y = x - x.mean(axis=0, keepdims=True)
        return y, names
    refs = [ref] if isinstance(ref, str) else list(ref)
    ref_names = pick_channels(names, refs, record=record)
    rows = [names.index(r) for r in ref_names]
    y = x - x[rows].mean(axis=0, keepdims=True)
    if drop_ref:
        keep = [i for i in range(len(names)) if i not in rows]
        return y[keep], [names[i] for i in keep]
    return y, names
