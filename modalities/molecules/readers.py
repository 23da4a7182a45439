"""Molecule readers: SMILES files, CSV tables and SDF files, through RDKit.

Every reader returns a :class:`MoleculeTable`: canonical isomeric SMILES of the molecules RDKit could parse (salts and
solvents stripped on request: the largest organic fragment is kept), their names, float property columns (NaN where a
value is missing) and the records it skipped, each with its line (SMILES, CSV) or record number (SDF) and why.
Nothing invalid stops a read: :func:`read_molecules` warns once with the number skipped and the first few places.

- ``.smi`` / ``.txt`` / ``.smiles``: one molecule a line, ``SMILES [name]`` separated by whitespace or a comma; an
  optional header line whose first field is ``smiles``; blank lines and ``#`` comments are ignored.
- ``.csv`` / ``.tsv``: the SMILES column is found by name, case-insensitively (``smiles``, ``canonical_smiles``,
  ``mol``, or ``smiles_column``); every other column whose non-empty values all parse as numbers is a property.
- ``.sdf`` (``.sdf.gz``): RDKit's ``SDMolSupplier``; SD tags whose values all parse as numbers are properties.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from rdkit import Chem, RDLogger

from modalities.base import DataError

SMILES_SUFFIXES = (".smi", ".smiles", ".txt")
CSV_SUFFIXES = (".csv", ".tsv")
SDF_SUFFIXES = (".sdf", ".sdf.gz")
SMILES_COLUMNS = ("smiles", "canonical_smiles", "mol")
NAME_COLUMNS = ("name", "id", "iupac", "chembl_id", "compound_id", "mol_id")
REPORT_FIRST = 5


@dataclass
class MoleculeTable:
    """Molecules read from one or more files.

    Attributes:
        smiles: canonical isomeric SMILES per molecule.
        names: a name per molecule (name column or SD title; empty when absent).
        properties: column name -> float64[n_molecules] (NaN where the record has no value).
        skipped: ``(file, line or record number, reason)`` of every record that was not read.
        records: number of records seen (read + skipped).
    """

    smiles: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    properties: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    records: int = 0

    def __len__(self) -> int:
        return len(self.smiles)

    def report(self) -> str:
        """One line: how many records were skipped and where the first few are."""
        if not self.skipped:
            return f"read {len(self)} molecules"
        first = "; ".join(f"{Path(f).name}:{n} ({why})" for f, n, why in self.skipped[:REPORT_FIRST])
        more = f"; and {len(self.skipped) - REPORT_FIRST} more" if len(self.skipped) > REPORT_FIRST else ""
        return (f"skipped {len(self.skipped)} of {self.records} records that RDKit could not read: {first}{more}")


def molecule_files(path: str | Path) -> list[Path]:
    """The molecule files at ``path``: the file itself, or every readable file under a folder (sorted)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_file():
        if not _kind(p):
            raise DataError(f"{p}: unknown molecule file type (use .smi/.txt, .csv/.tsv or .sdf)")
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and _kind(f) and not f.name.startswith("."))
    if not files:
        raise DataError(f"{p}: no molecule files (.smi/.txt, .csv/.tsv, .sdf) in this folder")
    return files


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(SDF_SUFFIXES):
        return "sdf"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(SMILES_SUFFIXES):
        return "smiles"
    return None


class _Standardiser:
    """SMILES or molecule -> canonical SMILES, optionally keeping only the largest fragment (salt stripping)."""

    def __init__(self, strip_salts: bool) -> None:
        self.chooser = None
        if strip_salts:
            from rdkit.Chem.MolStandardize import rdMolStandardize

            self.chooser = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)

    def __call__(self, mol: Chem.Mol | None) -> tuple[str | None, str]:
        if mol is None:
            return None, "RDKit could not parse it"
        if mol.GetNumAtoms() == 0:
            return None, "no atoms"
        if self.chooser is not None and len(Chem.GetMolFrags(mol)) > 1:
            mol = self.chooser.choose(mol)
        return Chem.MolToSmiles(mol), ""


def _parse_smiles(text: str) -> Chem.Mol | None:
    return Chem.MolFromSmiles(text) if text else None


def _as_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    s = str(value).strip()
    if s == "" or s.lower() in ("nan", "na", "n/a", "none", "null"):
        return math.nan
    try:
        return float(s)
    except ValueError:
        return None


class _Columns:
    """Collects per-record values and keeps the columns whose non-empty values are all numbers."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}
        self.bad: set[str] = set()
        self.n = 0

    def add(self, row: dict[str, object]) -> None:
        for k, v in row.items():
            if k in self.bad:
                continue
            f = _as_float(v)
            if f is None:
                self.bad.add(k)
                self.values.pop(k, None)
                continue
            col = self.values.setdefault(k, [math.nan] * self.n)
            col.append(f)
        self.n += 1
        for k, col in self.values.items():
            if len(col) < self.n:
                col.append(math.nan)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.values.items()
                if k not in self.bad and not np.all(np.isnan(v))}


def _read_smiles_file(path: Path, std: _Standardiser, table: MoleculeTable) -> None:
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.replace(",", " ").replace("\t", " ").split(None, 1)
            if line_no == 1 and parts[0].lower() in SMILES_COLUMNS:
                continue  # header
            table.records += 1
            smiles, why = std(_parse_smiles(parts[0]))
            if smiles is None:
                table.skipped.append((str(path), line_no, f"{why}: {parts[0][:40]!r}"))
                continue
            table.smiles.append(smiles)
            table.names.append(parts[1].strip() if len(parts) > 1 else "")


def _read_csv(path: Path, std: _Standardiser, table: MoleculeTable, smiles_column: str | None) -> _Columns:
    columns = _Columns()
    with _open_text(path) as f:
        delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
        reader = csv.DictReader(f, delimiter=delimiter)
        header = reader.fieldnames or []
        lower = {h.strip().lower(): h for h in header}
        wanted = [smiles_column.lower()] if smiles_column else list(SMILES_COLUMNS)
        col = next((lower[w] for w in wanted if w in lower), None)
        if col is None:
            what = f"column {smiles_column!r}" if smiles_column else "SMILES column (smiles / canonical_smiles / mol)"
            raise DataError(f"{path}: no {what} among {header}")
        name_col = next((lower[n] for n in NAME_COLUMNS if n in lower), None)
        for row in reader:
            line_no = reader.line_num
            table.records += 1
            raw = (row.get(col) or "").strip()
            smiles, why = std(_parse_smiles(raw))
            if smiles is None:
                table.skipped.append((str(path), line_no, f"{why}: {raw[:40]!r}"))
                continue
            table.smiles.append(smiles)
            table.names.append((row.get(name_col) or "").strip() if name_col else "")
            columns.add({k: v for k, v in row.items() if k not in (col, name_col) and k is not None})
    return columns


def _read_sdf(path: Path, std: _Standardiser, table: MoleculeTable) -> _Columns:
    columns = _Columns()
    if path.name.lower().endswith(".gz"):
        supplier: Iterator = Chem.ForwardSDMolSupplier(gzip.open(path, "rb"), sanitize=True, removeHs=True)
    else:
        supplier = Chem.SDMolSupplier(str(path), sanitize=True, removeHs=True)
    for record, mol in enumerate(supplier, start=1):
        table.records += 1
        smiles, why = std(mol)
        if smiles is None:
            table.skipped.append((str(path), record, why))
            continue
        table.smiles.append(smiles)
        table.names.append(mol.GetProp("_Name").strip() if mol.HasProp("_Name") else "")
        columns.add({k: v for k, v in mol.GetPropsAsDict().items() if not k.startswith("_")})
    return columns


def _open_text(path: Path) -> io.TextIOBase:
    try:
        return open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror})") from None


def read_file(path: str | Path, strip_salts: bool = True, smiles_column: str | None = None) -> MoleculeTable:
    """Read one SMILES / CSV / SDF file; invalid records are recorded in ``skipped``, never raised."""
    path = Path(path)
    kind = _kind(path)
    if kind is None:
        raise DataError(f"{path}: unknown molecule file type (use .smi/.txt, .csv/.tsv or .sdf)")
    table = MoleculeTable()
    std = _Standardiser(strip_salts)
    RDLogger.DisableLog("rdApp.*")  # RDKit prints every parse error; we report them once, by line
    try:
        if kind == "smiles":
            columns = None
            _read_smiles_file(path, std, table)
        elif kind == "csv":
            columns = _read_csv(path, std, table, smiles_column)
        else:
            columns = _read_sdf(path, std, table)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    finally:
        RDLogger.EnableLog("rdApp.*")
    if columns is not None:
        table.properties = columns.arrays()
    return table


def concat_tables(tables: Sequence[MoleculeTable]) -> MoleculeTable:
    """One table from several; a property missing from a file is NaN for its molecules."""
    out = MoleculeTable()
    keys = sorted({k for t in tables for k in t.properties})
    for t in tables:
        out.smiles += t.smiles
        out.names += t.names
        out.skipped += t.skipped
        out.records += t.records
    for k in keys:
        out.properties[k] = np.concatenate([t.properties.get(k, np.full(len(t), np.nan)) for t in tables]) \
            if tables else np.zeros(0)
    return out


def require_property(table: MoleculeTable, name: str, where: str | Path) -> np.ndarray:
    """float64[n] values of property ``name`` (case-insensitive), or one DataError line naming what exists."""
    match = next((k for k in table.properties if k.lower() == name.lower()), None)
    if match is None or np.all(np.isnan(table.properties[match])):
        have = ", ".join(sorted(table.properties)) or "none"
        raise DataError(f"{where}: no usable numeric property {name!r} (numeric properties found: {have})")
    return table.properties[match]


def read_molecules(path: str | Path, strip_salts: bool = True, smiles_column: str | None = None,
                   warn: bool = True) -> MoleculeTable:
    """Read every molecule file at ``path`` (a file or a folder); warn once about skipped records."""
    table = concat_tables([read_file(f, strip_salts, smiles_column) for f in molecule_files(path)])
    if warn and table.skipped:
        warnings.warn(f"{path}: {table.report()}", stacklevel=2)
    if len(table) == 0:
        raise DataError(f"{path}: no valid molecule ({table.records} records read)")
    return table


__all__ = ["MoleculeTable", "concat_tables", "molecule_files", "read_file", "read_molecules", "require_property"]
