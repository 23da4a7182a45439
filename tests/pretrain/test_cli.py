"""The command line: listing, and one clear line (exit 2) for every kind of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import modalities
from pretrain import objectives
from pretrain.cli import main
from pretrain.config import ConfigError


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, [l for l in err.strip().splitlines() if l and not l.startswith("warning: ")]


def test_listing_names_everything(capsys):
    code, out, _ = run([], capsys)
    assert code == 0
    for name in ["ecg", "jepa", "vicreg", "barlow_twins", "infonce", "equivariance", "vit1d_xs", "vit1d_s", "vit1d_b"]:
        assert name in out


def copy_record(signals_dir: Path, dst: Path, rel: str = "mitdb/100") -> Path:
    dst.mkdir(parents=True)
    src = signals_dir / rel
    for f in src.parent.glob(src.name + ".*"):
        shutil.copy(f, dst / f.name)
    return dst / src.name


def bad_data_cases(signals_dir: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    cases = {}
    empty = tmp / "empty"
    empty.mkdir()
    cases["empty folder"] = (empty, "no recordings found")
    rec = copy_record(signals_dir, tmp / "missing")
    rec.with_suffix(".dat").unlink()
    cases["missing .dat"] = (tmp / "missing", "100.dat")
    rec = copy_record(signals_dir, tmp / "truncated")
    dat = rec.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 3])
    cases["truncated .dat"] = (tmp / "truncated", "100.dat")
    rec = copy_record(signals_dir, tmp / "disagree")
    hea = rec.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("100 2 360 650000", "100 2 360 900000"))
    cases["header disagrees"] = (tmp / "disagree", "100")
    cases["no such path"] = (tmp / "nowhere", "does not exist")
    return cases


def test_bad_data_is_one_line(tmp_path, signals_dir, capsys, run_cache):
    for what, (path, needle) in bad_data_cases(signals_dir, tmp_path).items():
        code, _, err = run(["ecg", "--data", str(path), "--out", str(tmp_path / "run"), "--max-steps", "1",
                            "--quiet", "--no-eval"], capsys)
        assert code == 2, what
        assert len(err) == 1 and err[0].startswith("error: "), (what, err)
        assert needle in err[0] and str(path.name) in err[0], (what, err[0])


@pytest.mark.parametrize("argv,needle", [
    (["ecg", "--bogus"], "unrecognized arguments: --bogus"),
    (["ecg", "--max-steps", "ten"], "--max-steps"),
    (["ecg", "--set", "optim.lr=-1"], "optim.lr: must be > 0"),
    (["ecg", "--objective", "nope"], "unknown objective 'nope'"),
    (["ecg", "--set", "model.name=vit9"], "unknown encoder 'vit9'"),
    (["ecg", "--set", "objective.keep=[0.9, 0.1]"], "objective.keep"),
    (["ecg", "--devices", "two"], "--devices"),
    (["sonar"], "unknown modality 'sonar'"),
    (["--data", "x"], "expected a modality first"),
    (["ecg", "--resume", "/nonexistent/run"], "no config.yaml there"),
    (["evaluate", "/nonexistent/run"], "config.yaml"),
])
def test_bad_options_are_one_line(argv, needle, capsys, tmp_path, signals_dir, run_cache):
    if argv[0] == "ecg" and "--resume" not in argv:
        argv = argv + ["--data", str(signals_dir), "--out", str(tmp_path / "r"), "--max-steps", "1", "--quiet", "--no-eval"]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert len(err) == 1 and needle in err[0], err


def test_incompatible_objective_is_refused_with_the_ones_that_fit():
    graphs = modalities.Modality(name="molecules", description="", recipe=Path("x"), build_dataset=None,
                                 default_data=None, probe_targets=None, sample_kind="graph", view_augmentations=False)
    with pytest.raises(ConfigError, match=r"--objective jepa: modality molecules cannot use it .*serves signal"):
        objectives.check_compatible(objectives.get("jepa"), graphs)
    with pytest.raises(ConfigError, match=r"needs 2 augmented views.*fit: grover$"):
        objectives.check_compatible(objectives.get("vicreg"), graphs)
    ecg = modalities.get("ecg")
    for name in objectives.names():
        if "signal" in objectives.get(name).sample_kinds:
            objectives.check_compatible(objectives.get(name), ecg)
    with pytest.raises(ConfigError, match=r"--objective grover: modality ecg cannot use it .*serves graph"):
        objectives.check_compatible(objectives.get("grover"), ecg)
