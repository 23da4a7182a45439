"""The Modality contract: how a kind of data is read, turned into samples and probed.

A modality is a small frozen dataclass registered by name in :mod:`modalities`. It never imports
``pretrain`` or ``models``; the training loop only sees the callables below.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
from torch.utils.data import Dataset, default_collate

from modalities.options import DataOptions


def collate_samples(samples: list[dict]) -> dict:
    """Stack samples into a batch (tensors stacked, strings kept as lists); per-sample ``views`` float[V, ...]
    become the batch's ``views`` float[V, B, ...], the layout every view-based objective reads."""
    batch = default_collate(samples)
    if "views" in batch:
        batch["views"] = batch["views"].transpose(0, 1).contiguous()
    return batch


class DataError(ValueError):
    """Bad input data. The message is one line that names the file (or option) and what is wrong."""


@dataclass(frozen=True)
class Modality:
    """What the loop needs from a kind of data.

    Args:
        name: registry name used on the command line (``python -m pretrain <name>``).
        description: one line shown by ``python -m pretrain``.
        recipe: path of the YAML recipe next to the modality's code (default encoder, objective,
            hyper-parameters and data options).
        build_dataset: ``(data_cfg, split, views) -> Dataset``; ``split`` is ``"train"`` or ``"val"``,
            ``views`` is 0 for single-view objectives (samples carry the raw input) or the number of
            augmented views a joint-embedding objective needs (samples carry ``"views"``).
            Items are fetched with keys ``(index, seed)`` so that every random choice of a sample is
            a function of its seed (exact resume, identical batches across process counts).
        default_data: ``(cache_dir) -> path`` of the embedded default corpus, built from installed
            packages or a simulator, never downloaded.
        probe_targets: ``(data_cfg, data_path | None) -> {probe_name: ProbeSet}`` labelled data for the
            label-free-vs-labelled report.
        sample_kind: the sample dictionary convention: ``"signal"``, ``"image"``, ``"points"`` or ``"graph"``.
        view_augmentations: whether :attr:`build_dataset` can produce augmented views (``views > 0``).
        collate: batches samples; the default is :func:`collate_samples`.
        denoise_files: denoiser modalities only (None elsewhere): ``(denoiser, data_cfg, out_dir, run_cfg,
            progress) -> [written paths]`` denoises every image of ``data_cfg["path"]`` with ``denoiser.denoise``
            (trained as the run ``run_cfg``, a config dict, says) and writes each into ``out_dir`` at its relative
            path, in the input's format and geometry (``python -m pretrain denoise``, ``RUN/denoised/``).
        read_images: denoiser modalities only: ``(path, data_cfg) -> {key: float64[H, W]}`` every image of a file
            or folder in the data's units (CT: HU or [0, 1]; SAR: amplitude), keyed by the file's path relative to
            ``path`` (``""`` for a single file) plus ``#<slice>`` for volumes: what ``evaluate --reference``
            compares (the noisy input, the written denoised files and the clean reference).
        options: the typed ``data`` section (a :class:`~modalities.options.DataOptions` subclass): every data option
            the modality reads, its type, its one default and what it means. The recipe's ``data`` section sets only
            what differs; unknown options and wrong types are refused when the config is resolved.
    """

    name: str
    description: str
    recipe: Path
    build_dataset: Callable[[Mapping[str, Any], str, int], Dataset]
    default_data: Callable[[Path], Path]
    probe_targets: Callable[[Mapping[str, Any], Path | None], dict[str, "ProbeSet"]]
    sample_kind: str
    view_augmentations: bool = False
    collate: Callable[[list[dict]], dict] = field(default=collate_samples)
    read_images: Callable[[Path, Mapping[str, Any]], dict[str, np.ndarray]] | None = None
    denoise_files: Callable[[Any, Mapping[str, Any], Path, Mapping[str, Any], bool], list[Path]] | None = None
    options: type[DataOptions] = DataOptions


@dataclass
class ProbeSet:
    """Labelled inputs for a frozen-encoder probe: a fixed train/test split, or blocks to cross-validate over
    (``folds``).

    ``task`` and what the fields hold:

    - ``"classification"`` / ``"regression"``: ``x_*`` are model inputs (signals float32[N, C, T], molecule lists),
      ``y_*`` int64 class indices or float targets; kNN and linear/ridge probes on frozen embeddings.
    - ``"denoising"``: ``x_test`` is a list of noisy model inputs and ``y_test`` a list of clean references (``None``
      where there is no ground truth, as on real SAR); ``x_train``/``y_train`` may be empty. Each encoder is a
      denoiser called as ``encoder.denoise(x)``. ``meta`` keys: ``data_range`` (PSNR/SSIM range), ``window``
      ((lo, hi) clipping before the metrics, e.g. an HU window), ``uniform_regions`` (per image, a list of
      ``(row0, row1, col0, col1)`` boxes whose std is reported), ``speckle`` (True: ENL of the output intensity in
      those boxes and ratio-image statistics), ``to_display`` (callable: a noisy input in the output's units),
      ``names`` (one label per image).
    - ``"segmentation"``: ``x_*`` are lists of point dicts (one scene each, Pointcept convention), ``y_*`` lists of
      int64[N] per-point labels (``meta["ignore_index"]``, default -1, is ignored); encoders expose
      ``point_features(points, levels)``.

    ``folds`` (classification only): int[N] block id of every item of ``x_train`` / ``y_train``, for probe sets too
    small to hold out a test part (a few dozen events); the probes are then cross-validated over these blocks
    (``pretrain.evaluate.blocked_cv_scores``) and ``x_test`` / ``y_test`` stay empty.

    ``meta`` keys read by every embedding probe: ``embedding`` (``"channels"``: per-channel features of encoders
    that have ``embed_channels``, concatenated, see ``pretrain.evaluate.probe_embedding``; default the encoder's
    ``embed``); for classification, ``knn_vote`` (default ``"balanced"``: each kNN neighbour votes 1 / its class's
    training count, see ``pretrain.evaluate.knn_predict``; ``"plain"``: one vote each) and ``knn_k`` (default 5; 1
    for ECG record identity); for regression,
    ``test_groups`` (the recording of every test item, for the within-recording correlation
    ``pretrain.evaluate.within_group_r``).

    ``class_names`` documents the label indices; ``description`` is printed under the report's tables;
    ``source`` says in a few words where the probe's data came from (``"simulated: ECGSYN subjects, known heart
    rate"``, ``"installed package heartpy"``, ``"--probe-data /path"``, ``"--probe-labels labels.csv"``); the
    report prints it beside the probe's name.
    """

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    task: str = "classification"
    class_names: tuple[str, ...] = ()
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    folds: Any = None
    source: str = ""

    @classmethod
    def folded(cls, x: np.ndarray, y: np.ndarray, folds: Any, **fields: Any) -> "ProbeSet":
        """A classification probe set cross-validated over ``folds`` (one block id per item of ``x``): every item
        in ``x_train`` / ``y_train``, empty ``x_test`` / ``y_test`` of the same item shape."""
        x, y = np.asarray(x), np.asarray(y, dtype=np.int64)
        return cls(x_train=x, y_train=y, x_test=x[:0], y_test=y[:0], task="classification",
                   folds=np.asarray(folds, dtype=np.int64), **fields)



@contextlib.contextmanager
def corpus_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive lock on ``out_dir`` while an embedded default is built there, so that concurrent callers
    (one per DDP rank, parallel test workers) build it once; no lock where ``fcntl`` is missing (not POSIX)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(Path(out_dir) / ".corpus.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Data options that describe a corpus's files (detected from them or declared for them), not preprocessing: a run's
# resolved values hold for its own --data only. Fine-tuning and evaluation on other files start again from the
# recipe's value (usually auto).
FILE_CONVENTIONS = ("units", "label_format", "point_columns", "polarisation", "polarisation_names")


def for_other_files(data_cfg: Mapping[str, Any], options: type[DataOptions] | None = None) -> dict[str, Any]:
    """``data_cfg`` with the :data:`FILE_CONVENTIONS` reset to their defaults in ``options`` (default: the class of
    ``data_cfg`` when it is typed), so that they are detected again on other files; dropped where ``options`` has
    no such field."""
    cls = options or (type(data_cfg) if isinstance(data_cfg, DataOptions) else None)
    out = {k: v for k, v in data_cfg.items() if k not in FILE_CONVENTIONS}
    if cls is not None:
        defaults = cls.of({}).to_dict()
        out.update({k: defaults[k] for k in FILE_CONVENTIONS if k in defaults})
    return out


def cache_root() -> Path:
    """Where modalities keep what they derive from data: ``$MODALITIES_CACHE`` or ``~/.cache/modalities``.

    Indexes, feature caches and built embedded defaults go here, never into a ``--data`` folder (clinical archives
    are often read-only, checksummed or under version control)."""
    return Path(os.environ.get("MODALITIES_CACHE") or Path.home() / ".cache" / "modalities").expanduser()


def data_cache_dir(kind: str, data_path: str | Path) -> Path:
    """``cache_root()/kind/<name>-<hash>``: the cache folder of one data folder or file, keyed by the SHA-256 of its
    resolved path, so that two archives never share a cache (whatever their names) and a symlinked path shares the
    cache of its target. Not created; what is cached there must still be invalidated when the data change."""
    resolved = Path(data_path).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    name = re.sub(r"[^\w.-]", "_", resolved.name)[:40] or "root"
    return cache_root() / kind / f"{name}-{digest}"


CORPUS_FILE = "corpus.json"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks: the key of caches derived from input files."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _corpus_complete(out_dir: Path, spec: Mapping[str, Any], files: Iterable[str]) -> bool:
    try:
        meta = json.loads((out_dir / CORPUS_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or {k: meta.get(k) for k in spec} != dict(spec):
        return False
    return all((out_dir / name).is_file() for name in files)


def build_corpus(out_dir: Path, spec: Mapping[str, Any], files: Iterable[str], stale: re.Pattern[str],
                 build: Callable[[], Mapping[str, Any]]) -> Path:
    """Build a simulated embedded default in ``out_dir`` once, safely under concurrency and interruption.

    Nothing is done when ``corpus.json`` holds ``spec`` and every name in ``files`` exists. Otherwise, under
    :func:`corpus_lock` (and after checking again), ``corpus.json`` and the files whose names match ``stale`` are
    removed, ``build()`` writes the files and returns extra metadata, and ``corpus.json`` (``spec`` plus that
    metadata) is written atomically last, so an interrupted build is never taken for a complete one.
    """
    out_dir = Path(out_dir).expanduser()
    files = list(files)
    if _corpus_complete(out_dir, spec, files):
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    with corpus_lock(out_dir):
        if _corpus_complete(out_dir, spec, files):  # built by another process while we waited
            return out_dir
        (out_dir / CORPUS_FILE).unlink(missing_ok=True)
        for old in out_dir.iterdir():
            if stale.fullmatch(old.name):
                old.unlink()
        meta = {**spec, **build()}
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=CORPUS_FILE, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, out_dir / CORPUS_FILE)
    return out_dir


class LabelledSubset(Dataset):
    """The items ``indices`` of a labelled dataset; keys ``(index, seed)`` pass through, ``targets()`` follows."""

    def __init__(self, base: Any, indices: Any) -> None:
        import numpy as np

        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)
        for attr in ("vocab", "scaler", "target_names"):  # what objectives and fine-tuning read off a dataset
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):
            return self.base[(int(self.indices[key[0]]), *key[1:])]
        return self.base[int(self.indices[key])]

    def targets(self) -> Any:
        return self.base.targets()[self.indices]


def labelled_subset(dataset: Any, fraction: float, seed: int = 0, bins: int = 5) -> LabelledSubset:
    """A seeded, stratified ``fraction`` of a labelled dataset (its ``targets()`` float/int[N, T]): strata are the
    classes of the first target when its values are integral with few levels, otherwise ``bins`` quantile bins, so
    that a 1 % budget still sees every class and the whole range of a property. At least one item per stratum.

    A dataset may define ``label_subset(fraction, seed)`` for a budget in its own unit (LiDAR frames labelled on a
    fraction of their points); it returns the budgeted dataset, or None for the item subset above."""
    import numpy as np

    if not 0.0 < fraction <= 1.0:
        raise DataError(f"data.label_fraction: must be in (0, 1], got {fraction!r}")
    if hasattr(dataset, "label_subset"):  # a dataset with its own unit of labels (e.g. points of LiDAR frames)
        subset = dataset.label_subset(fraction, seed)
        if subset is not None:
            return subset
    if not hasattr(dataset, "targets"):
        raise DataError("data.label_fraction: this dataset carries no labels (targets()) to subsample")
    y = np.asarray(dataset.targets(), dtype=np.float64)
    y = y.reshape(len(y), -1)[:, 0]
    finite = np.isfinite(y)
    levels = np.unique(y[finite])
    if len(levels) <= 20 and np.all(levels == np.round(levels)):
        strata = np.where(finite, y, np.nan)
    else:
        edges = np.quantile(y[finite], np.linspace(0, 1, bins + 1)[1:-1]) if finite.any() else np.array([])
        strata = np.where(finite, np.searchsorted(edges, y), -1).astype(np.float64)
    return LabelledSubset(dataset, stratified_pick(strata, fraction, np.random.default_rng(seed)))


def stratified_pick(strata: Any, fraction: float, rng: Any) -> Any:
    """Sorted int64 indices of a ``fraction`` of each stratum of ``strata`` float/int[N] (NaN: in none), drawn
    without replacement with ``rng``: ``max(1, round(fraction * n))`` of a stratum of n. The item budget of
    :func:`labelled_subset` and the point budget of labelled LiDAR frames."""
    import numpy as np

    strata = np.asarray(strata)
    present = strata[~np.isnan(strata)] if strata.dtype.kind == "f" else strata
    chosen = []
    for s in np.unique(present):
        members = np.flatnonzero(strata == s)
        k = max(1, int(round(fraction * len(members))))
        chosen.append(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)


# ------------------------------------------------------------------------------------------------ probe data, outputs

#: earlier names of ``data.probe_data`` (scenes ``probe_root``, LiDAR ``probe_path``)
RENAMED_PROBE_OPTIONS = ("probe_root", "probe_path")


def probe_folder(data_cfg: Mapping[str, Any], given: str | Path | None = None) -> Path | None:
    """The folder of labelled probe data: ``given`` when set, else ``data.probe_data``; ``None`` when neither is set
    (the modality's built-in probes then use packaged or simulated data). A folder that does not exist, or a value
    under an earlier option name, is a one-line :class:`DataError` naming the option."""
    for old in RENAMED_PROBE_OPTIONS:
        if data_cfg.get(old) not in (None, ""):
            raise DataError(f"data.{old}: renamed; give the labelled probe folder as data.probe_data "
                            f"(--probe-data PATH)")
    value = given if given is not None else data_cfg.get("probe_data")
    if value is None or value == "":
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise DataError(f"data.probe_data: {root} is not a folder")
    return root.absolute()


def output_path(src: Path, root: Path, out_dir: Path) -> Path:
    """Where a written result of input file ``src`` goes: its path relative to ``root`` (the input folder; for a
    single-file input, its name) under ``out_dir``. Refuses in one line an output that would overwrite its input."""
    rel = Path(src.name) if root.is_file() else src.relative_to(root)
    dst = out_dir / rel
    if dst.resolve() == src.resolve():
        raise DataError(f"--out {out_dir}: the output {dst} would overwrite its input")
    return dst
