"""Denoisers write their output: ``python -m pretrain ct|sar --data F`` leaves ``RUN/denoised/F`` in F's format, and
``python -m pretrain denoise RUN --data OTHER --out OUT`` denoises other files; bad requests end in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import yaml

import models

from modalities.sar.readers import read_slc
from modalities.sar.tiling import centred_scene
from pretrain import config as config_mod
from pretrain.cli import main
from pretrain.denoise import write_run_outputs
from tests.conftest import REPO, shared_data

pytestmark = pytest.mark.usefixtures("one_thread", "run_cache")

AFFINE = np.array([[-0.7, 0.05, 0.0, 101.0], [0.02, 0.69, 0.0, -47.5], [0.0, 0.0, 3.0, -12.0], [0, 0, 0, 1]])
PER_IMAGE = ["--set", "data.slices=[0]", "--set", "data.patch=null", "--set", "train.batch_size=2", "--max-steps",
             "3", "--no-eval", "--set", "train.threads=1", "--set", "train.num_workers=0", "--quiet"]


def cli(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, [line for line in err.strip().splitlines() if line and not line.startswith("warning: ")]


def hu_slice() -> np.ndarray:
    """float32[64, 64] HU of a real head CT (CQ500): air, skull and brain."""
    hu = np.load(shared_data("ct") / "cq500_head_ct_693_UNCR_HU_512.npy").astype(np.float32)
    return hu[200:264, 96:160]


def nifti(path: Path, hu: np.ndarray, dtype, slope: float | None = None, inter: float = 0.0) -> Path:
    data = hu.T[:, :, None]  # one axial slice: [X, Y, 1]
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    img = nib.Nifti1Image(np.round((data - inter) / slope).astype(dtype) if slope else data.astype(dtype), None,
                          header)
    img.set_sform(AFFINE, code=1)
    img.set_qform(AFFINE, code=1)
    img.header.set_xyzt_units("mm")
    if slope:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


def same_geometry(src: Path, dst: Path) -> tuple[np.ndarray, np.ndarray]:
    a, b = nib.load(str(src)), nib.load(str(dst))
    assert b.shape == a.shape and b.get_data_dtype() == a.get_data_dtype()
    np.testing.assert_allclose(b.affine, a.affine)
    assert int(b.header["sform_code"]) == int(a.header["sform_code"])
    assert int(b.header["qform_code"]) == int(a.header["qform_code"])
    x, y = a.get_fdata(), b.get_fdata()
    assert not np.array_equal(x, y)
    return x, y


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ct_files")
    hu = hu_slice()
    lo, hi = float(hu.min()), float(hu.max())
    return {"int16": nifti(d / "head_int16.nii.gz", hu, np.int16, slope=0.5, inter=-1024.0),
            "float32": nifti(d / "head_float32.nii", hu, np.float32),
            "unit": nifti(d / "head_unit.nii.gz", (hu - lo) / (hi - lo), np.float32)}


def test_ct_run_writes_denoised_nifti_and_denoise_other_files(tmp_path, ct_files, capsys):
    run = tmp_path / "run"
    code, out, err = cli(["ct", "--data", str(ct_files["int16"]), "--out", str(run), *PER_IMAGE], capsys)
    assert code == 0, err
    assert f"denoised:   {run / 'denoised'}" in out
    assert sorted(p.name for p in (run / "denoised").iterdir()) == ["head_int16.nii.gz"]
    x, y = same_geometry(ct_files["int16"], run / "denoised" / "head_int16.nii.gz")
    written = nib.load(str(run / "denoised" / "head_int16.nii.gz"))
    assert (written.dataobj.slope, written.dataobj.inter) == (0.5, -1024.0)
    assert np.abs(x - y).mean() < 60 and np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.95

    # other files, other conventions (float32 HU, [0, 1]), through `python -m pretrain denoise`
    other = tmp_path / "other"
    for key in ("float32", "unit"):
        code, out, err = cli(["denoise", str(run), "--data", str(ct_files[key]), "--out", str(other), "--quiet"],
                             capsys)
        assert code == 0, err
        assert f"denoised: 1 file(s) in {other}" in out
    x, y = same_geometry(ct_files["float32"], other / "head_float32.nii")
    assert np.abs(x - y).mean() < 60
    x, y = same_geometry(ct_files["unit"], other / "head_unit.nii.gz")
    span = float(hu_slice().max() - hu_slice().min())
    assert -0.01 <= y.min() and y.max() <= 1.01 and np.abs(x - y).mean() < 60 / span  # [0, 1] out, HU-sized change

    # a run on simulated low doses or on the embedded default writes nothing of the user's
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    for key, value in (("dose_i0", [1.0e5]), ("path", None)):
        sim = tmp_path / f"sim_{key}"
        shutil.copytree(run, sim, ignore=shutil.ignore_patterns("denoised"))
        (sim / "config.yaml").write_text(yaml.safe_dump({**cfg, "data": {**cfg["data"], key: value}}))
        assert write_run_outputs(sim, progress=False) is None
        assert not (sim / "denoised").exists()


def test_ct_zs_n2n_run_on_unit_interval_data(tmp_path, ct_files, capsys):
    run = tmp_path / "run"
    code, out, err = cli(["ct", "--data", str(ct_files["unit"]), "--objective", "zs_n2n", "--set", "model.name=zsn2n",
                          "--out", str(run), *PER_IMAGE], capsys)
    assert code == 0, err
    x, y = same_geometry(ct_files["unit"], run / "denoised" / "head_unit.nii.gz")
    assert np.abs(x - y).mean() < 0.05 and -0.5 < y.min() and y.max() < 1.5  # still in [0, 1] units


def test_sar_run_writes_despeckled_slc_with_the_input_phase(tmp_path, capsys):
    data = tmp_path / "scenes"
    data.mkdir()
    reim = np.load(shared_data("sar") / "envisat_slc_500x500_reim.npy")[150:278, 100:228]
    np.save(data / "envisat.npy", reim)
    run = tmp_path / "run"
    code, out, err = cli(["sar", "--data", str(data), "--out", str(run), "--set", "data.patch=64", "--set",
                          "model.width=8", "--set", "train.batch_size=2", "--max-steps", "3", "--no-eval", "--set",
                          "train.threads=1", "--set", "train.num_workers=0", "--quiet"], capsys)
    assert code == 0, err
    written = np.load(run / "denoised" / "envisat.npy")
    assert written.shape == reim.shape == (128, 128, 2) and written.dtype == np.float32
    z_in, z_out = read_slc(data / "envisat.npy"), read_slc(run / "denoised" / "envisat.npy")
    nonzero = np.abs(z_in) > 0
    assert np.abs(np.angle(z_out[nonzero] * np.conj(z_in[nonzero]))).max() < 1e-4
    a_in, a_out = np.abs(z_in), np.abs(z_out)
    assert np.abs(a_out - a_in).mean() > 0.1 * a_in.mean()  # despeckled
    # the amplitude is the exported despeckler's, in the input's scale (its log normalisation undone)
    view = centred_scene(data / "envisat.npy")
    expected = models.load_pretrained(run / "encoder").denoise(view)[0]
    np.testing.assert_allclose(a_out, expected, rtol=1e-4)


def test_a_layout_that_cannot_be_written_back_warns_and_keeps_the_run(tmp_path, capsys):
    """A multi-band complex TIFF (a polarisation stack) trains, but is not written back yet: one warning line."""
    z = read_slc(shared_data("sar") / "envisat_slc_500x500_reim.npy")[150:214, 100:164]
    stack = tmp_path / "scene_HH_HV.tif"
    tifffile.imwrite(stack, np.stack([z, z.T.copy()], -1), photometric="minisblack", planarconfig="contig")
    run = tmp_path / "run"
    code = main(["sar", "--data", str(stack), "--out", str(run), "--set", "data.polarisation=HV", "--set",
                 "data.patch=32", "--set", "model.width=8", "--set", "train.batch_size=2", "--max-steps", "2",
                 "--no-eval", "--set", "train.threads=1", "--set", "train.num_workers=0", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0 and (run / "encoder" / "config.json").is_file()
    assert "denoised:" not in out and not (run / "denoised" / stack.name).exists()
    warned = [line for line in err.splitlines() if "not written" in line]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {run / 'denoised'} not written: ")
    assert "scene_HH_HV.tif: writing this TIFF layout" in warned[0]
    code, _, err = cli(["denoise", str(run), "--quiet"], capsys)  # the same refusal, as an error, on request
    assert code == 2 and len(err) == 1 and "scene_HH_HV.tif: writing this TIFF layout" in err[0], err


def ecg_run(tmp_path: Path) -> Path:
    run = tmp_path / "ecg_run"
    run.mkdir()
    cfg = config_mod.resolve(REPO / "modalities" / "ecg" / "recipe.yaml")
    cfg.modality = "ecg"
    config_mod.save(cfg, run / "config.yaml")
    return run


def test_bad_requests_end_in_one_line(tmp_path, ct_files, capsys):
    cases = {
        "not a denoiser": (["denoise", str(ecg_run(tmp_path)), "--data", str(ct_files["int16"])],
                           "ecg run (objective"),
        "not a run": (["denoise", str(tmp_path / "nowhere")], "not a run folder"),
    }
    run = tmp_path / "ct_run"
    run.mkdir()
    cfg = config_mod.resolve(REPO / "modalities" / "ct" / "recipe.yaml", extra={"data": {"path": str(ct_files["int16"])}})
    cfg.modality = "ct"
    config_mod.save(cfg, run / "config.yaml")
    bare = tmp_path / "bare_run"  # a run that never exported its denoiser
    shutil.copytree(run, bare)
    models.save_pretrained(models.create("bilateral"), run / "encoder")
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(ct_files["int16"], folder / "a.nii.gz")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    cases.update({
        "missing --data": (["denoise", str(run), "--data", str(tmp_path / "missing.nii.gz")], "missing.nii.gz: no such"),
        "unreadable format": (["denoise", str(run), "--data", str(text)], "notes.txt: not a DICOM"),
        "output is the input": (["denoise", str(run), "--data", str(folder), "--out", str(folder)],
                                "--out"),
        "no exported denoiser": (["denoise", str(bare)], "no exported denoiser"),
    })
    for what, (argv, needle) in cases.items():
        code, _, err = cli(argv, capsys)
        assert code == 2, what
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (what, err)
