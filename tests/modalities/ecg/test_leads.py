"""Lead-name aliases: every channel of the shared records, common spellings, and non-leads."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import wfdb

from modalities.ecg.leads import LEADS_12, lead_alias

# Every channel name found in the shared WFDB headers, with the lead it must map to. A record added
# to the shared data with a new channel name fails test_every_shared_channel_has_a_decision until
# its mapping is decided here.
SHARED_CHANNELS = {
    "MLII": "II",  # mitdb: modified limb lead II
    "V5": "V5",
    "II": "II",  # challenge2015
    "V": "V1",  # challenge2015: one chest lead of unknown placement -> V1 (documented guess)
    "PLETH": None,
    "i": "I",  # ptbdb, lower case
    "ii": "II",
    "iii": "III",
    "avr": "aVR",
    "avl": "aVL",
    "avf": "aVF",
    "v1": "V1",
    "v2": "V2",
    "v3": "V3",
    "v4": "V4",
    "v5": "V5",
    "v6": "V6",
    "vx": None,  # ptbdb Frank leads
    "vy": None,
    "vz": None,
    "MCL1": "V1",  # mimicdb: modified chest lead 1
    "ABP": None,
    "RESP": None,
    "ECG 1": None,  # macecgdb: electrode pairs of a patch, not standard leads
    "ECG 2": None,
    "ECG 3": None,
    "ECG 4": None,
}


def _shared_channel_names(signals_dir: Path) -> list[str]:
    names: list[str] = []
    for hea in sorted(signals_dir.glob("**/*.hea")):
        header = wfdb.rdheader(str(hea.with_suffix("")))
        names += [str(n) for n in header.sig_name]
    return names


def test_every_shared_channel_has_a_decision(signals_dir: Path) -> None:
    names = _shared_channel_names(signals_dir)
    assert len(names) >= 20  # 2 + 3 + 15 + 3 + 4 channels in the five records
    undecided = sorted({n for n in names if n not in SHARED_CHANNELS})
    assert not undecided, f"channels without an alias decision: {undecided}"
    for name in names:
        assert lead_alias(name) == SHARED_CHANNELS[name], name


def test_ptb_maps_all_twelve_leads_once(signals_dir: Path) -> None:
    header = wfdb.rdheader(str(signals_dir / "ptbdb" / "s0010_re"))
    mapped = [lead_alias(n) for n in header.sig_name]
    assert [m for m in mapped if m is not None] == list(LEADS_12)


@pytest.mark.parametrize("lead", LEADS_12)
def test_canonical_names_map_to_themselves(lead: str) -> None:
    assert lead_alias(lead) == lead
    assert lead_alias(lead.lower()) == lead
    assert lead_alias(lead.upper()) == lead
    assert lead_alias(f"ECG {lead}") == lead
    assert lead_alias(f" lead_{lead} ") == lead


@pytest.mark.parametrize(
    "name, lead",
    [
        ("ECG II", "II"),
        ("ecg_ii", "II"),
        ("EKG-II", "II"),
        ("MLII", "II"),
        ("ML II", "II"),
        ("MLIII", "III"),
        ("DII", "II"),
        ("D1", "I"),
        ("D3", "III"),
        ("AVR", "aVR"),
        ("avL", "aVL"),
        ("V 4", "V4"),
        ("MCL6", "V6"),
        ("V", "V1"),
    ],
)
def test_spellings(name: str, lead: str) -> None:
    assert lead_alias(name) == lead


@pytest.mark.parametrize(
    "name",
    ["", " ", "-aVR", "V7", "V0", "MCL7", "ECG1", "ECG", "1", "vx", "VY", "Vz", "PLETH", "ABP", "RESP",
     "EEG Fpz-Cz", "SpO2", "IV", "aV"],
)
def test_not_a_standard_lead(name: str) -> None:
    assert lead_alias(name) is None


def test_outputs_are_canonical_and_function_pickles() -> None:
    for name in list(SHARED_CHANNELS) + ["MLI", "DIII", "MCL3"]:
        assert lead_alias(name) in (*LEADS_12, None)
    restored = pickle.loads(pickle.dumps(lead_alias))
    assert restored is lead_alias
    assert restored("MLII") == "II"
