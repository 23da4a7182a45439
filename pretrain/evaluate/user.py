"""Evaluation on the user's own data: denoised output against a clean reference, and probes on the user's labels.

- :func:`user_denoising_rows`: a denoiser run (CT Filter2Noise / ZS-N2N, SAR MERLIN) is scored on the files it was
  trained on (or ``evaluate --data``): the written denoised files (``RUN/denoised/``, written again when missing)
  and the noisy input are read back with the modality's reader (``Modality.read_images``) and compared with
  ``evaluate --reference CLEAN`` (a file or folder laid out like the data): PSNR / SSIM over the data's range and,
  for CT in Hounsfield units, in the soft-tissue window; without a reference, the noise left in the most uniform
  region (CT) or the ENL and the ratio image (SAR), which need none.
- :func:`user_label_probes`: ``--probe-labels FILE`` (a per-record label CSV, ``events`` or ``points``: the finetune
  label formats) turns the user's labelled records into a probe set scored like the built-in ones (kNN / logistic
  or ridge, blocked by record, against the random-init control).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from modalities.base import DataError, ProbeSet
from modalities.options import DataOptions
from pretrain.config import ConfigError
from pretrain.evaluate.denoising import plot_denoising, enl, enl_box_size, ratio_image_stats, region_std
from pretrain.metrics import psnr, ssim

__all__ = ["match_reference", "user_denoising_rows", "user_label_probes"]

#: CT soft-tissue window (W 400, L 40 HU): the radiologist's window for low-dose noise
SOFT_TISSUE_HU = (-160.0, 240.0)
#: the HU span of CT PSNR over the whole range (air to dense bone), as in the low-dose CT literature
FULL_RANGE_HU = (-1024.0, 3072.0)


def match_reference(noisy: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], where: str) -> dict[str, str]:
    """Pair every image of the data with one of ``reference``: same key (relative path, ``#slice``), else, when
    both sides hold one file, slice by slice, else by file name alone. A data image without a partner or of another
    shape is refused in one line naming ``where`` (the ``--reference`` path)."""
    pairs: dict[str, str] = {}
    files = {k.split("#")[0] for k in noisy}
    ref_files = {k.split("#")[0] for k in reference}
    by_name = {}
    for k in reference:
        f, _, s = k.partition("#")
        by_name.setdefault((Path(f).name, s), k)
        name = Path(f).name
        for tag in ("_clean", "-clean", "_reference", "_ref", "_gt"):  # scene_clean.npy is scene.npy's reference
            stem, dot, ext = name.partition(".")
            if stem.endswith(tag):
                by_name.setdefault((stem[:-len(tag)] + dot + ext, s), k)
    for k in noisy:
        f, _, s = k.partition("#")
        if k in reference:
            pairs[k] = k
        elif len(files) == 1 and len(ref_files) == 1:
            cand = f"{next(iter(ref_files))}#{s}" if s else next(iter(ref_files))
            if cand not in reference:
                raise ConfigError(f"--reference {where}: no slice {s or 0} to match the data's")
            pairs[k] = cand
        elif (Path(f).name, s) in by_name:
            pairs[k] = by_name[(Path(f).name, s)]
        else:
            raise ConfigError(f"--reference {where}: nothing matches the data's image {k or Path(f).name!r} "
                              f"(same relative path or file name expected)")
        if reference[pairs[k]].shape != noisy[k].shape:
            raise ConfigError(f"--reference {where}: image {pairs[k] or 'of the file'} is "
                              f"{'x'.join(map(str, reference[pairs[k]].shape))}, the data's is "
                              f"{'x'.join(map(str, noisy[k].shape))}")
    return pairs


def _ct_scores(out: np.ndarray, ref: np.ndarray | None, units: str, box: tuple[int, ...] | None) -> dict[str, float]:
    from modalities.ct.units import hu_to_units

    scores: dict[str, float] = {}
    if ref is not None:
        lo, hi = (0.0, 1.0) if units == "unit_interval" else FULL_RANGE_HU
        a, b = np.clip(out, lo, hi), np.clip(ref, lo, hi)
        scores["psnr"], scores["ssim"] = psnr(a, b, hi - lo), ssim(a, b, hi - lo)
        if units == "hu":  # the HU-window metrics
            wlo, whi = (float(hu_to_units(v, units)) for v in SOFT_TISSUE_HU)
            a, b = np.clip(out, wlo, whi), np.clip(ref, wlo, whi)
            scores["psnr_window"], scores["ssim_window"] = psnr(a, b, whi - wlo), ssim(a, b, whi - wlo)
    if box is not None:
        scores["region_std"] = region_std(out, box)
    return scores


def _sar_scores(out: np.ndarray, ref: np.ndarray | None, noisy: np.ndarray, boxes: list, ratio: bool
                ) -> dict[str, Any]:
    scores: dict[str, Any] = {}
    if ref is not None:  # amplitude, over the reference's own range
        rng = float(ref.max() - ref.min()) or 1.0
        scores["psnr"], scores["ssim"] = psnr(out, ref, rng), ssim(out, ref, rng)
    if boxes:
        scores["enl"] = float(np.mean([enl(out ** 2, b) for b in boxes]))
        scores["enl_box"] = enl_box_size(boxes)
    if ratio:
        scores.update(ratio_image_stats(noisy ** 2, out ** 2))
    return scores


def user_denoising_rows(run_dir: Path, modality: Any, data_cfg: Mapping[str, Any], run_data: str | None,
                        reference: str | Path | None, fig_dir: Path | None, max_figures: int = 3
                        ) -> tuple[list[dict[str, Any]], str]:
    """Rows (one per image and method: ``noisy input``, ``denoised``) scoring the run's denoised output of the
    data in ``data_cfg`` and a one-line description of what was compared. Empty when the run is not a denoiser of
    user files (the embedded default or a simulated dose: the built-in probe covers those) and no ``reference``
    was asked for."""
    from pretrain.denoise import denoise_files, embedded_or_simulated

    data_cfg = modality.options.of(data_cfg)
    data = data_cfg.path
    is_denoiser = modality.read_images is not None and modality.denoise_files is not None
    if not is_denoiser or not data or embedded_or_simulated(data_cfg, modality.name):
        if reference is not None:
            why = ("its modality has no denoiser" if not is_denoiser else
                   "its noisy input is simulated (data.dose_i0) or the embedded default: the report's built-in "
                   "probe already compares it with its clean reference; give --data NOISY_FILES")
            raise ConfigError(f"--reference: run {run_dir} cannot be scored against it: {why}")
        return [], ""
    same = run_data is not None and Path(str(run_data)).resolve() == Path(str(data)).resolve()
    out_dir = run_dir / ("denoised" if same else "denoised_evaluate")
    if not (same and out_dir.is_dir() and any(out_dir.iterdir())):
        denoise_files(run_dir, data=None if same else str(data), out=str(out_dir), progress=False)
    noisy = modality.read_images(Path(str(data)), data_cfg)
    denoised = modality.read_images(out_dir if Path(str(data)).is_dir() else out_dir / Path(str(data)).name, data_cfg)
    missing = sorted(set(noisy) - set(denoised))
    if missing:
        raise DataError(f"{out_dir}: no denoised image for {missing[0] or Path(str(data)).name!r}; "
                        f"run python -m pretrain denoise {run_dir} again")
    clean: dict[str, np.ndarray] = {}
    pairs: dict[str, str] = {}
    if reference is not None:
        ref_path = Path(reference).expanduser()
        if not ref_path.exists():
            raise ConfigError(f"--reference {reference}: no such file or folder")
        clean = modality.read_images(ref_path, data_cfg)
        pairs = match_reference(noisy, clean, str(reference))
    speckle = modality.name == "sar"
    units = str(data_cfg.get("units", "hu"))
    if not speckle and units == "auto":  # other files (evaluate --data): their units, detected as training would
        from modalities.ct.units import resolve_units
        from modalities.ct.volumes import index_ct, read_slice

        units = resolve_units(index_ct(Path(str(data))), "auto", read_slice)[0]
    rows: list[dict[str, Any]] = []
    for i, key in enumerate(sorted(noisy)):
        x, y = noisy[key], denoised[key]
        ref = clean[pairs[key]] if pairs else None
        name = key or Path(str(data)).name
        if speckle:
            from modalities.sar.probes import homogeneous_boxes

            boxes = homogeneous_boxes(x ** 2 if ref is None else ref ** 2, n=3)
            score = {"noisy input": _sar_scores(x, ref, x, boxes, ratio=False),
                     "denoised": _sar_scores(y, ref, x, boxes, ratio=True)}
        else:
            from modalities.ct.probes import uniform_box
            from modalities.ct.units import hu_to_units

            lo, hi = (float(hu_to_units(v, units)) for v in (-100.0, 150.0))
            box = uniform_box(y if ref is None else ref, size=24, hu_range=(lo, hi))
            score = {"noisy input": _ct_scores(x, ref, units, box), "denoised": _ct_scores(y, ref, units, box)}
        for method, s in score.items():
            rows.append({"probe": "your data", "task": "denoising", "method": method, "image": name, **s})
        if fig_dir is not None and i < max_figures:
            meta: dict[str, Any] = {"speckle": speckle}
            if not speckle and units == "hu":
                meta["window"] = SOFT_TISSUE_HU
            rows[-1]["figure"] = str(plot_denoising({"noisy input": x, "denoised": y}, ref, meta, {},
                                                     Path(fig_dir) / f"your_data_{i}.png", name))
    what = (f"`{data}` denoised into `{out_dir}`" + (f", against the clean reference `{reference}`" if reference
                                                     else " (no --reference: noise measures only)"))
    if not speckle:
        what += ("; PSNR/SSIM over [0, 1]" if units == "unit_interval" else
                 "; PSNR/SSIM over [-1024, 3072] HU and in the soft-tissue window [-160, 240] HU")
        what += "; std in the most uniform 24 x 24 soft-tissue box"
    else:
        what += "; amplitude PSNR/SSIM over the reference's range; ENL in the most homogeneous boxes"
    return rows, what


#: a numeric label column with at most this many distinct integer values is a class label, else a regression target
MAX_CLASSES = 20


def _label_table(labels: Path, targets: list[str], data_cfg: DataOptions, work: Path
                 ) -> tuple[Path, list[str], str, tuple[str, ...]]:
    """The label table to read (``labels`` itself, or a copy in ``work`` with class names replaced by indices),
    its target column, the task and the class names. Without ``data.probe_target`` the table's one column besides
    the id (and ``data.subject_column``) is the target."""
    import csv

    from modalities.signals.labelled import ID_COLUMNS

    try:
        with open(labels, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"--probe-labels {labels}: cannot read it as a CSV table ({e})") from None
    if not rows:
        raise ConfigError(f"--probe-labels {labels}: no rows")
    columns = list(rows[0])
    lower = {c.lower(): c for c in columns}
    id_column = data_cfg.id_column or next((lower[c] for c in ID_COLUMNS if c in lower), None)
    if id_column is None:
        raise ConfigError(f"--probe-labels {labels}: none of the id columns {', '.join(ID_COLUMNS)}; set "
                          f"data.id_column (columns: {', '.join(columns)})")
    others = [c for c in columns if c not in (id_column, data_cfg.subject_column)]
    if not targets:
        if len(others) != 1:
            raise ConfigError(f"--probe-labels {labels}: say which column to probe with --set data.probe_target=NAME "
                              f"(columns: {', '.join(others)})")
        targets = others
    if len(targets) != 1 or targets[0] not in columns:
        raise ConfigError(f"data.probe_target: {targets!r} is not one column of {labels} (columns: {', '.join(others)})")
    col = targets[0]
    values = [r[col].strip() for r in rows if r[col] is not None and r[col].strip()]
    try:
        numbers = np.array([float(v) for v in values])
    except ValueError:
        numbers = None
    if numbers is not None and not (len(np.unique(numbers)) <= MAX_CLASSES and np.all(numbers == np.round(numbers))):
        return labels, [col], "regression", ()
    names = tuple(sorted(set(values), key=lambda v: (float(v), v) if numbers is not None else (0.0, v)))
    index = {v: i for i, v in enumerate(names)}
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{labels.stem}_classes.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            v = (r[col] or "").strip()
            w.writerow({**r, col: str(index[v]) if v else ""})
    return out, [col], "classification", names


def user_label_probes(run_dir: Path, modality: Any, data_cfg: Mapping[str, Any], labels: str,
                      seed: int = 0) -> dict[str, ProbeSet]:
    """``{"your labels": ProbeSet}`` from ``--probe-labels``: ``points`` (per-point label files of the data:
    LiDAR, scenes), ``events`` (the records' annotations; the classes from ``data.probe_target``) or a per-record
    CSV table (an id column and a label column, ``data.probe_target`` when there are several) for signals.

    Classification probes are cross-validated over blocks of whole subjects (records), at most 5, so every labelled
    window is tested once by a probe that never saw its subject; regression probes train on about 70 % of the
    subjects and test on the rest (``modalities.signals.labelled.subject_split``; with fewer than three subjects both
    split by time inside each record)."""
    import dataclasses

    if labels == "points":
        if modality.sample_kind != "points":
            raise ConfigError(f"--probe-labels points: {modality.name} data has no per-point labels")
        data_cfg = modality.options.of(data_cfg)
        data = data_cfg.path
        probes = modality.probe_targets(data_cfg.replace(probe_data=data), Path(str(data)))
        return {"your labels" + ("" if i == 0 else f" {i + 1}"): dataclasses.replace(
                    ps, source=f"--probe-labels points: per-point labels of {data}")
                for i, ps in enumerate(p for p in probes.values() if p.task == "segmentation")}
    if modality.sample_kind != "signal":
        raise ConfigError(f"--probe-labels: {modality.name} runs take 'points' (per-point labels) only"
                          if modality.sample_kind == "points" else
                          f"--probe-labels: not available for {modality.name} runs (signals: a CSV or 'events'; "
                          f"LiDAR / scenes: 'points')")
    data_cfg = modality.options.of(data_cfg)
    data = data_cfg.path
    targets = data_cfg.probe_target or []
    targets = [targets] if isinstance(targets, str) else [str(t) for t in targets]
    if labels == "events":
        if not targets:
            raise ConfigError("--probe-labels events: name the annotation classes with --set "
                              "data.probe_target=[T1,T2] ('+' joins labels into one class: T1+T2)")
        source, task, names = "events", "classification", tuple(targets)
        what = f"annotations {', '.join(targets)} of the records"
    else:
        path = Path(labels).expanduser()
        if not path.is_file():
            raise ConfigError(f"--probe-labels {labels}: no such file (a CSV table, 'events' or 'points')")
        table, targets, task, names = _label_table(path, targets, data_cfg, run_dir / "probe_labels")
        source, what = str(table), f"{path.name}:{targets[0]}"
    cfg = {k: v for k, v in data_cfg.items() if k not in ("probe_labels", "probe_target")}
    cfg.update(labels=source, targets=targets, split_seed=seed, split_fractions=[0.7, 0.0, 0.3])
    splits = {k: modality.build_dataset(cfg, k, 0) for k in ("train", "val", "test")}
    items = [(k, i) for k, ds in splits.items() for i in range(len(ds))]
    if not items:
        raise DataError(f"--probe-labels {labels}: no labelled window in {data}")
    x = np.stack([splits[k][i]["signal"].numpy() for k, i in items])
    y = np.stack([splits[k][i]["label"].numpy() for k, i in items])[:, 0]
    subjects = [splits[k].items[i].subject for k, i in items]
    by = splits["train"].split_by
    desc = (f"{len(items)} labelled windows of {len(set(subjects))} subject(s) of `{data}` ({what}); "
            f"split by {by}")
    src = f"--probe-labels {labels}"
    if task == "classification":
        y = y.astype(np.int64)
        present = np.unique(y)
        if len(present) < 2:
            raise DataError(f"--probe-labels {labels}: one class only ({names[int(present[0])] if names else present[0]}); "
                            f"a probe needs two or more")
        if by == "subject":
            order = {s: j for j, s in enumerate(sorted(set(subjects)))}
            folds = np.array([order[s] % 5 for s in subjects])
        else:  # too few subjects: the three time blocks of each record
            folds = np.array([("train", "val", "test").index(k) for k, _ in items])
        folds = np.unique(folds, return_inverse=True)[1]
        if len(np.unique(folds)) < 2:
            raise DataError(f"--probe-labels {labels}: the labelled windows fall in one block; give more records")
        counts = ", ".join(f"{names[c] if names else c} {int(np.sum(y == c))}" for c in present)
        return {"your labels": ProbeSet.folded(x, y, folds, class_names=tuple(str(n) for n in names),
                                               description=f"{desc}; classes present: {counts}; blocked "
                                                           f"cross-validation over {len(np.unique(folds))} blocks",
                                               source=src)}
    train = np.array([k != "test" for k, _ in items])
    if train.all() or not train.any():
        raise DataError(f"--probe-labels {labels}: too few subjects or windows for a train / test split")
    return {"your labels": ProbeSet(x[train], y[train], x[~train], y[~train], task="regression",
                                    description=f"{desc}; {int(train.sum())} train / {int((~train).sum())} test "
                                                f"windows; target {targets[0]}",
                                    meta={"test_groups": np.array([s for s, t in zip(subjects, train) if not t])},
                                    source=src)}
