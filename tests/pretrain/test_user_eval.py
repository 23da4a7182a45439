"""Evaluation on the user's own data: ``evaluate --reference CLEAN`` scores the run's written denoised files and the
noisy input against a clean reference (CT and SAR); ``--probe-labels`` probes the encoder on the user's labels."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import wfdb

import modalities
from modalities.sar.simulate import clean_reflectivity, simulate_slc
from pretrain.cli import main
from pretrain.config import ConfigError, load_run_config
from pretrain.evaluate.user import match_reference, user_denoising_rows, user_label_probes
from pretrain.metrics import psnr, ssim
from tests.conftest import shared_data

pytestmark = pytest.mark.usefixtures("one_thread", "run_cache")

AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])
QUICK = ["--set", "train.threads=1", "--set", "train.num_workers=0", "--no-eval", "--quiet"]


def test_match_reference_pairs_by_path_name_or_single_file():
    img = np.zeros((4, 4))
    assert match_reference({"": img}, {"": img}, "r") == {"": ""}
    assert match_reference({"#0": img, "#1": img}, {"#0": img, "#1": img}, "r") == {"#0": "#0", "#1": "#1"}
    # folders: the same relative path, else the same file name, also with a _clean suffix
    assert match_reference({"a/x.npy": img, "b/y.npy": img}, {"a/x.npy": img, "other/y_clean.npy": img}, "r") \
        == {"a/x.npy": "a/x.npy", "b/y.npy": "other/y_clean.npy"}
    with pytest.raises(ConfigError, match=r"--reference r: nothing matches the data's image 'z.npy'"):
        match_reference({"z.npy": img, "y.npy": img}, {"x.npy": img, "y.npy": img}, "r")
    with pytest.raises(ConfigError, match=r"--reference r: image .* is 5x4, the data's is 4x4"):
        match_reference({"": img}, {"": np.zeros((5, 4))}, "r")


def _nifti(path: Path, img: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(img.T[:, :, None].astype(np.float32), AFFINE), str(path))
    return path


@pytest.fixture(scope="module")
def ct_pair(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A real head CT crop (CQ500, HU) as the clean reference and the same crop with 40 HU Gaussian noise."""
    d = tmp_path_factory.mktemp("ct_pair")
    clean = np.load(shared_data("ct") / "cq500_head_ct_693_UNCR_HU_512.npy").astype(np.float32)[180:276, 80:176]
    noisy = clean + np.random.default_rng(0).normal(0, 40.0, clean.shape).astype(np.float32)
    return _nifti(d / "scan.nii.gz", noisy), _nifti(d / "scan_clean.nii.gz", clean), noisy, clean


def test_ct_reference_scores_the_written_output(tmp_path, ct_pair, capsys):
    noisy_path, clean_path, noisy, clean = ct_pair
    run = tmp_path / "run"
    assert main(["ct", "--data", str(noisy_path), "--set", "data.slices=[0]", "--set", "data.patch=null",
                 "--set", "train.batch_size=2", "--max-steps", "3", "--out", str(run), *QUICK]) == 0
    written = run / "denoised" / "scan.nii.gz"
    assert written.is_file()
    cfg = load_run_config(run / "config.yaml")
    rows, what = user_denoising_rows(run, modalities.get("ct"), dict(cfg.data), cfg.data["path"], clean_path, None)
    assert "clean reference" in what and "soft-tissue window" in what
    by = {r["method"]: r for r in rows}
    # the noisy row against the formula: PSNR over [-1024, 3072] HU and in the soft-tissue window
    a, b = np.clip(noisy, -1024, 3072), np.clip(clean, -1024, 3072)
    assert by["noisy input"]["psnr"] == pytest.approx(10 * np.log10(4096 ** 2 / np.mean((a - b) ** 2)), abs=1e-6)
    a, b = np.clip(noisy, -160, 240), np.clip(clean, -160, 240)
    assert by["noisy input"]["psnr_window"] == pytest.approx(psnr(a, b, 400.0), abs=1e-9)
    # the denoised row is the written file's, read back in the file's geometry
    out = nib.load(str(written)).get_fdata()[:, :, 0].T
    assert by["denoised"]["psnr"] == pytest.approx(psnr(np.clip(out, -1024, 3072), np.clip(clean, -1024, 3072), 4096.0))
    assert by["denoised"]["ssim_window"] == pytest.approx(ssim(np.clip(out, -160, 240), np.clip(clean, -160, 240), 400.0))
    assert by["denoised"]["psnr"] != by["noisy input"]["psnr"]
    # a reference of another size, or a missing one, is refused in one line before any probe runs
    small = _nifti(tmp_path / "small.nii.gz", clean[:64, :64])
    for ref, msg in ((small, "is 64x64, the data's is 96x96"), (tmp_path / "nope.nii", "no such file or folder")):
        assert main(["evaluate", str(run), "--reference", str(ref)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len([e for e in err if e.startswith("error:")]) == 1 and msg in err[-1]


def test_reference_refused_for_simulated_doses_and_non_denoisers(tmp_path, capsys):
    from tests.conftest import REPO  # noqa: F401  (the shared data must be there)

    run = tmp_path / "run"
    ct = shared_data("ct") / "CT_small.dcm"
    assert main(["ct", "--data", str(ct), "--set", "data.dose_i0=[1.0e5]", "--set", "data.patch=null",
                 "--set", "train.batch_size=2", "--max-steps", "1", "--out", str(run), *QUICK]) == 0
    assert not (run / "denoised").exists()  # the noisy input is our simulation, not the user's image
    assert main(["evaluate", str(run), "--reference", str(ct)]) == 2
    assert "its noisy input is simulated" in capsys.readouterr().err


def test_sar_reference_amplitude_enl_and_ratio(tmp_path):
    """A simulated SLC of a scikit-image picture and its expected intensity (``*_clean.npy``), as a user with a
    simulated or multi-temporal reference would hold them."""
    r = clean_reflectivity("camera")[:128, :128]
    z, expected = simulate_slc(r, seed=3)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "scene.npy", z.astype(np.complex64))
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    np.save(ref_dir / "scene_clean.npy", expected.astype(np.float32))
    run = tmp_path / "run"
    assert main(["sar", "--data", str(data), "--max-steps", "2", "--batch-size", "2", "--set", "data.patch=64",
                 "--out", str(run), *QUICK]) == 0
    assert (run / "denoised" / "scene.npy").is_file()
    cfg = load_run_config(run / "config.yaml")
    rows, what = user_denoising_rows(run, modalities.get("sar"), dict(cfg.data), cfg.data["path"], ref_dir, None)
    by = {r["method"]: r for r in rows}
    amp, ref = np.abs(z).astype(np.float64), np.sqrt(expected.astype(np.float64))
    rng = float(ref.max() - ref.min())
    assert by["noisy input"]["psnr"] == pytest.approx(psnr(amp, ref, rng), abs=1e-6)
    assert "enl" in by["noisy input"] and "ratio_mean" in by["denoised"] and "ratio_mean" not in by["noisy input"]
    out = np.abs(np.load(run / "denoised" / "scene.npy")).astype(np.float64)
    noisy_i, out_i = amp ** 2, out ** 2
    valid = noisy_i > 0
    assert by["denoised"]["ratio_mean"] == pytest.approx(float(np.mean(noisy_i[valid] / np.maximum(out_i[valid], 1e-30))))


def _beats(record: Path, symbols: tuple[str, ...]) -> dict[str, int]:
    ann = wfdb.rdann(str(record), "atr")
    return {s: int(np.sum(np.array(ann.symbol) == s)) for s in symbols}


def test_probe_labels_events_and_csv(tmp_path):
    ecg = modalities.get("ecg")
    signals = shared_data("signals")
    cfg = {"path": str(signals / "mitdb"), "fs": 250, "window_s": 2.0, "leads": ["II"]}
    from pretrain.config import load_yaml

    cfg = {**load_yaml(ecg.recipe)["data"], **cfg}
    ps = user_label_probes(tmp_path, ecg, {**cfg, "probe_target": ["N", "A"]}, "events")["your labels"]
    counts = _beats(signals / "mitdb" / "100", ("N", "A"))
    y = np.asarray(ps.y_train)
    # every beat annotation of the file, less those whose window leaves the record or straddles the cut between
    # the two time blocks (one record: blocks by time)
    assert 0 <= counts["N"] - int(np.sum(y == 0)) <= 5 and 0 <= counts["A"] - int(np.sum(y == 1)) <= 1
    assert ps.folds is not None and len(np.unique(ps.folds)) == 2 and ps.source == "--probe-labels events"
    with pytest.raises(ConfigError, match="--probe-labels events: name the annotation classes"):
        user_label_probes(tmp_path, ecg, cfg, "events")
    # a per-record table with class names: one column besides the id, mapped to indices in a copy
    table = tmp_path / "labels.csv"
    records = {"100": "arrhythmia", "s0010_re": "infarct", "test01_00s": "motion", "03700181": "icu", "a103l": "icu"}
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record", "group"])
        w.writerows(records.items())
    probes = user_label_probes(tmp_path, ecg, {**cfg, "path": str(signals)}, str(table))
    ps = probes["your labels"]
    assert ps.class_names == ("arrhythmia", "icu", "infarct", "motion") and ps.task == "classification"
    assert set(np.unique(ps.y_train)) <= {0, 1, 2, 3} and len(np.unique(ps.y_train)) >= 2
    assert "classes present" in ps.description
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([["record", "a", "b"], ["100", "1", "2"]])
    with pytest.raises(ConfigError, match=r"say which column to probe with --set data.probe_target=NAME \(columns: a, b\)"):
        user_label_probes(tmp_path, ecg, {**cfg, "path": str(signals)}, str(table))
    with pytest.raises(ConfigError, match="no such file"):
        user_label_probes(tmp_path, ecg, cfg, str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="not available for molecules runs"):
        user_label_probes(tmp_path, modalities.get("molecules"), cfg, str(table))


def test_reference_on_other_files_detects_their_units(tmp_path, ct_pair):
    """``evaluate --data OTHER --reference CLEAN`` on a [0, 1] copy of an HU run's scan: scored over [0, 1] (units
    detected on the other files), not over the HU range."""
    from modalities.base import for_other_files

    noisy_path, _, noisy, clean = ct_pair
    run = tmp_path / "run"
    assert main(["ct", "--data", str(noisy_path), "--recipe", "per_image", "--max-steps", "2", "--out", str(run),
                 *QUICK]) == 0
    lo, hi = -1024.0, 3072.0
    other = _nifti(tmp_path / "unit.nii.gz", np.clip((noisy - lo) / (hi - lo), 0, 1))
    ref = _nifti(tmp_path / "unit_clean.nii.gz", np.clip((clean - lo) / (hi - lo), 0, 1))
    cfg = load_run_config(run / "config.yaml")
    data_cfg = for_other_files(cfg.data)
    data_cfg["path"] = str(other)
    rows, what = user_denoising_rows(run, modalities.get("ct"), data_cfg, cfg.data["path"], ref, None)
    assert "over [0, 1]" in what and (run / "denoised_evaluate" / "unit.nii.gz").is_file()
    a = np.clip((noisy - lo) / (hi - lo), 0, 1)
    b = np.clip((clean - lo) / (hi - lo), 0, 1)
    assert rows[0]["method"] == "noisy input" and rows[0]["psnr"] == pytest.approx(psnr(a, b, 1.0), abs=1e-4)
