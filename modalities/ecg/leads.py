"""ECG lead conventions: the 12 standard leads and how record channel names map onto them.

Records name their leads in many ways (``"II"``, ``"ii"``, ``"ECG II"``, ``"MLII"``, ``"DII"``,
``"avr"``); :func:`lead_alias` reduces a channel name to one of :data:`LEADS_12`, or ``None`` when
the channel is not one of the 12 standard leads (other ECG lead systems included) or not an ECG.

Decisions (each is a judgement about the electrode a name implies; see the docstring of
:func:`lead_alias` for the rules):

- Holter "modified limb leads" ``MLI``/``MLII``/``MLIII`` (MIT-BIH) map to ``I``/``II``/``III``:
  the arm electrodes sit on the torso below the clavicles, which changes amplitudes slightly but
  keeps the lead axis.
- "Modified chest leads" ``MCL1`` .. ``MCL6`` (bedside monitors, MIMIC) map to ``V1`` .. ``V6``:
  the exploring electrode is at the V position but the reference is the left shoulder instead of
  Wilson's central terminal, so the morphology is close to, not identical with, the V lead.
- A bare ``V`` (a single chest lead of a bedside monitor, e.g. the PhysioNet/CinC Challenge 2015
  records) maps to ``V1``: its placement is not recorded, and V1 is the position recommended for
  arrhythmia monitoring (AHA practice standards, Drew et al. 2004). This is a guess that places
  the lead in the nearest canonical slot; it is not a claim that the electrode was at V1.
- Frank orthogonal leads (``vx``, ``vy``, ``vz`` in PTB) and numbered leads of non-standard
  montages (``ECG 1`` .. ``ECG 4`` of the Motion Artifact Contaminated ECG Database, four electrode
  pairs of a patch at 45 degree offsets placed at several orientations) are ``None``.
- Inverted leads (``-aVR`` of the Cabrera display) are ``None``: they are not the lead itself.
"""

from __future__ import annotations

import re

__all__ = ["LEADS_12", "LIMB_LEADS", "PRECORDIAL_LEADS", "lead_alias"]

LIMB_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF")
PRECORDIAL_LEADS: tuple[str, ...] = ("V1", "V2", "V3", "V4", "V5", "V6")
LEADS_12: tuple[str, ...] = LIMB_LEADS + PRECORDIAL_LEADS

_BY_KEY = {lead.lower(): lead for lead in LEADS_12}
# Roman numerals as some European devices write them ("D1".."D3" = "DI".."DIII").
_ARABIC_LIMB = {"1": "I", "2": "II", "3": "III"}
_SEPARATORS = re.compile(r"[\s_.:/]+")
_PREFIX = re.compile(r"^(?:ecg|ekg|lead)")


def lead_alias(name: str) -> str | None:
    """Canonical 12-lead name of a record channel, or ``None`` if it is not one of the 12 leads.

    The match ignores case, spaces, ``_``, ``.``, ``:`` and ``/``, and an ``ECG``/``EKG``/``lead``
    prefix. Accepted after that: the lead names themselves (``ii``, ``avr``, ``v4``), limb leads
    written ``DI``/``DII``/``DIII`` or ``D1``/``D2``/``D3``, modified limb leads ``MLI``/``MLII``/
    ``MLIII``, modified chest leads ``MCL1`` .. ``MCL6`` (-> ``V1`` .. ``V6``) and a bare ``V``
    (-> ``V1``). A leading ``-`` (inverted lead) gives ``None``.

    >>> lead_alias("ECG II"), lead_alias("MLII"), lead_alias("avr"), lead_alias("MCL1")
    ('II', 'II', 'aVR', 'V1')
    >>> lead_alias("vx") is None and lead_alias("PLETH") is None and lead_alias("ECG 1") is None
    True
    """
    key = _SEPARATORS.sub("", str(name).strip().lower())
    if not key or key.startswith("-"):
        return None
    key = _PREFIX.sub("", key).lstrip("-")
    if key in _BY_KEY:
        return _BY_KEY[key]
    if key == "v":
        return "V1"
    for prefix in ("ml", "d"):
        if key.startswith(prefix):
            rest = key[len(prefix):]
            if rest in ("i", "ii", "iii"):
                return rest.upper()
            if prefix == "d" and rest in _ARABIC_LIMB:
                return _ARABIC_LIMB[rest]
    match = re.fullmatch(r"mcl([1-6])", key)
    if match:
        return f"V{match.group(1)}"
    return None
