"""W processes train exactly like one: the objectives whose losses mix samples of unequal size (molecules, scenes,
LiDAR), the whole-batch BatchNorm the loop installs under DDP, and the CLI of all 8 modalities.

**Exact part (fast).** Two gloo processes (``torch.multiprocessing.spawn``) each take one half of a fixed batch of
real-shaped samples in float64, run the objective's forward and backward, and average gradients as DDP does. Their
mean loss and averaged gradients must equal one process on the whole batch to ~1e-9 relative: any per-process mean
over unequal counts (atoms, points, matched sites), per-process BatchNorm statistics, or random draw made from a
per-process generator instead of the samples' seeds shows up at 1e-3 or more. A plain ``nn.BatchNorm1d`` run the
same way is checked to fail, so the comparison can fail.

**CLI part (slow).** ``python -m pretrain M --devices 2`` (gloo, CPU) against ``--devices 1`` for every modality,
on the embedded data, 3 steps of a batch of 4: the logged (global) loss of step 1 must match to 1e-5 relative (the
measured bugs were 0.2 % to 500x there). Later steps and the final weights are float32 runs whose gradients differ
by rounding only (gloo sums in another order); Adam's first steps move every weight by about +-lr whatever the size
of its gradient, so weights whose true gradient is ~0 (biases before a BatchNorm, attention key biases) take
rounding-noise steps, and small batches behind BatchNorms (4 LiDAR scans, 4 PPG windows) amplify that noise. The
tolerances below are per modality, measured, and far below what the bugs gave.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.pretrain.objectives.test_distributed_losses import _free_port

REPO = Path(__file__).resolve().parents[2]
WORLD = 2


# ------------------------------------------------------------------------------------------------- cases
# Each case builds, identically in every process, ``(module, samples, collate, loss_fn)``; ``split(samples, r, W)``
# is process r's share (contiguous, as the loop's SeededBatches gives it).

def _halves(samples: list, rank: int, world: int) -> list:
    per = len(samples) // world
    return samples[rank * per:(rank + 1) * per]


def _objective_loss(module: Any, batch: Any) -> torch.Tensor:
    return module(batch)["loss"]


def _case_batch_norm(plain: bool = False) -> tuple:
    """An MLP with a BatchNorm on 13 rows split 5 / 8 (unequal shares, as points and atoms are)."""
    from pretrain.distributed import convert_batch_norm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 3),
                              torch.nn.BatchNorm1d(3)).double()
    if not plain:
        convert_batch_norm(net)
    g = torch.Generator().manual_seed(1)
    rows = list(torch.randn(13, 5, generator=g, dtype=torch.float64) * 3 + 1)
    target = torch.randn(13, 3, generator=g, dtype=torch.float64)

    def loss_fn(module: Any, batch: Any) -> torch.Tensor:
        from pretrain.distributed import all_reduce_sum_with_grad

        x, t = batch
        local = (module(x) - t).pow(2).sum()
        return all_reduce_sum_with_grad(local) / (13 * 3)

    def collate(items: list) -> tuple:
        return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])

    return net, list(zip(rows, target)), collate, loss_fn


def _split_5_8(samples: list, rank: int, world: int) -> list:
    return samples[:5] if rank == 0 else samples[5:]


def _case_grover() -> tuple:
    """GROVER's tasks on molecules of 9, 14, 1, 6, 11, 3, 17, 8 atoms (the halves hold 30 and 39 atoms), dropout
    0.2 and dynamic depth drawn each pass."""
    from models.grover import GTransEncoder
    from modalities.molecules.dataset import collate
    from pretrain.objectives.grover_tasks import GroverTasks
    from tests.models.test_grover import synthetic_molecule

    torch.manual_seed(0)
    enc = GTransEncoder(hidden=16, heads=2, depth=2, depth_sigma=1.0, dropout=0.2)
    obj = GroverTasks(enc, atom_vocab_size=12, bond_vocab_size=7).double().train()
    samples = []
    for i, n in enumerate((9, 14, 1, 6, 11, 3, 17, 8)):
        m = synthetic_molecule(n, 100 + i)
        m.x, m.edge_attr, m.motif = m.x.double(), m.edge_attr.double(), m.motif.double()
        m.seed = 1000 + 7 * i
        samples.append(m)

    def collate_with_step(items: list) -> Any:
        b = collate(items)
        b.step_seed = 4242
        return b

    return obj, samples, collate_with_step, _objective_loss


def _case_msm() -> tuple:
    """Masked Scene Modeling on two views of 4 crops of simulated rooms (different point counts per process)."""
    import models
    from modalities.scenes.points import ViewAugment, collate_points, prepare_scene, two_views
    from modalities.scenes.readers import Scene
    from modalities.scenes.simulate import simulate_room
    from pretrain.objectives.msm import MSM

    torch.manual_seed(0)
    enc = models.create("sparse_unet", in_channels=6, channels=[8, 8, 16, 16], enc_blocks=1, dec_blocks=1)
    obj = MSM(enc, patch_size=4, ema=(0.9, 0.9)).double().train()
    samples = []
    for i in range(4):
        room = simulate_room(i, 2, 300.0)
        scene = prepare_scene(Scene(room["coord"], room["color"], room["normal"], room["segment"], path="room"), 0.1)
        a, b = two_views(scene, ViewAugment(max_points=800 + 300 * i), np.random.default_rng(i))
        for v in (a, b):
            v["feat"] = v["feat"].double()
            v["coord"] = v["coord"].double()
        samples.append({"view_a": a, "view_b": b, "scene_points": len(scene.coord), "seed": 10 + i})
    return obj, samples, collate_points, _objective_loss


def _synthetic_pair(i: int) -> dict[str, torch.Tensor]:
    """A LiDAR-like pair: ground, walls and boxes, previous sweep shifted by 0.3 m (ego motion removed)."""
    rng = np.random.default_rng(50 + i)
    n = 1500 + 400 * i
    ground = np.c_[rng.uniform(-15, 15, (n, 2)), rng.normal(-1.7, 0.02, n)]
    boxes = np.concatenate([np.c_[rng.uniform(c - 1, c + 1, (200, 2)), rng.uniform(-1.7, 0.5, 200)]
                            for c in rng.uniform(-10, 10, 4)])
    cur = np.concatenate([ground, boxes])
    prev = cur + np.array([0.3, 0.0, 0.0]) + rng.normal(0, 0.01, cur.shape)
    return {"coord": torch.from_numpy(cur), "strength": torch.from_numpy(rng.uniform(0, 1, len(cur))),
            "prev_coord": torch.from_numpy(prev), "prev_strength": torch.from_numpy(rng.uniform(0, 1, len(prev))),
            "seed": 77 + 13 * i}


def _collate_pairs(items: list) -> dict[str, Any]:
    batch = {k: torch.cat([s[k] for s in items]) for k in ("coord", "strength", "prev_coord", "prev_strength")}
    batch["offset"] = torch.cumsum(torch.tensor([len(s["coord"]) for s in items]), 0)
    batch["prev_offset"] = torch.cumsum(torch.tensor([len(s["prev_coord"]) for s in items]), 0)
    batch["point_range"] = torch.tensor([-20.0, -20.0, -3.0, 20.0, 20.0, 1.8])
    batch["voxel_size"] = torch.tensor([0.4, 0.4, 0.4])
    batch["seed"] = torch.tensor([s["seed"] for s in items])
    return batch


def _float64_points_loss(module: Any, batch: Any) -> torch.Tensor:
    """The objective's loss with float64 point features (``point_dict`` makes float32 ones)."""
    import pretrain.objectives.e_ssl3d as e

    original = e.point_dict

    def wrapped(scans: Any, grid: Any) -> dict[str, torch.Tensor]:
        out = original(scans, grid)
        out["feat"] = out["feat"].double()
        return out

    e.point_dict = wrapped
    try:
        return module(batch)["loss"]
    finally:
        e.point_dict = original


def _case_e_ssl3d() -> tuple:
    """E-SSL3D: rotation, point contrast (rows gathered across processes) and scene flow on 4 pairs."""
    import models
    from pretrain.objectives import create

    torch.manual_seed(0)
    enc = models.create("sparse_unet_xs")
    obj = create(enc, {"name": "e_ssl3d", "contrast_points": 128, "flow_points": 128, "head_hidden_dim": 16})
    obj = obj.double().train()
    return obj, [_synthetic_pair(i) for i in range(4)], _collate_pairs, _float64_points_loss


def _case_infonce_bn() -> tuple:
    """PPG's objective (InfoNCE + EMA teacher + KoLeo, subject-aware negatives) on an EfficientNet with BatchNorms,
    after the loop's :func:`convert_batch_norm` (what ``--devices 2`` needs; nn.BatchNorm gave 2.41 vs 0.005)."""
    import models
    from pretrain.distributed import convert_batch_norm
    from pretrain.objectives import create

    torch.manual_seed(0)
    enc = models.create("efficientnet1d", in_channels=1, embed_dim=16, stem_channels=8, head_channels=16,
                        stages=[[1, 8, 1, 2, 3], [2, 8, 1, 2, 3]])
    obj = create(enc, {"name": "infonce", "projector_hidden_dim": 16, "projector_dim": 8, "temperature": 0.2,
                       "exclude_same_subject": True})
    convert_batch_norm(obj)
    obj = obj.double().train()
    g = torch.Generator().manual_seed(3)
    samples = [{"views": torch.randn(2, 1, 64, generator=g, dtype=torch.float64), "subject": s}
               for s in ("a", "b", "a", "c", "d", "b", "e", "c")]

    def collate(items: list) -> dict[str, Any]:
        return {"views": torch.stack([i["views"] for i in items], 1), "subject": [i["subject"] for i in items]}

    return obj, samples, collate, _objective_loss


CASES: dict[str, tuple[Callable[[], tuple], Callable[[list, int, int], list]]] = {
    "batch_norm": (_case_batch_norm, _split_5_8),
    "plain_batch_norm": (lambda: _case_batch_norm(plain=True), _split_5_8),
    "grover": (_case_grover, _halves),
    "msm": (_case_msm, _halves),
    "e_ssl3d": (_case_e_ssl3d, _halves),
    "infonce_bn": (_case_infonce_bn, _halves),
}


def _run(name: str, rank: int | None, world: int) -> dict[str, Any]:
    """Loss (mean over processes) and DDP-averaged gradients of one case; buffers after the step."""
    build, split = CASES[name]
    module, samples, collate, loss_fn = build()
    share = samples if rank is None else split(samples, rank, world)
    torch.manual_seed(1234 + (rank or 0))  # per-process global RNG: nothing may depend on it
    loss = loss_fn(module, collate(share))
    module.zero_grad(set_to_none=True)
    loss.backward()
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
             for k, p in module.named_parameters() if p.requires_grad}
    loss = loss.detach().clone()
    if rank is not None:
        for g in grads.values():
            dist.all_reduce(g)
            g /= world
        dist.all_reduce(loss)
        loss /= world
    buffers = {k: b.detach().clone() for k, b in module.named_buffers() if b.is_floating_point()}
    return {"loss": float(loss), "grads": grads, "buffers": buffers}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=300))
    try:
        results = {name: _run(name, rank, world) for name in CASES}
        if rank == 0:
            torch.save(results, Path(out_dir) / "ranks.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ddp_equal")
    try:
        mp.spawn(_worker, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True)
    except mp.ProcessExitedException as e:
        # Seen once in a full CI run (not reproduced alone): a rank aborted natively at start-up ("terminate called
        # without an active exception", SIGABRT) before any result; a second start on a fresh port is the same test.
        if e.signal_name != "SIGABRT":
            raise
        mp.spawn(_worker, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True)
    return torch.load(out / "ranks.pt")


@pytest.fixture(scope="module")
def one_process() -> dict[str, Any]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: _run(name, None, 1) for name in CASES}
    finally:
        torch.set_num_threads(before)


def _worst_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest gradient difference, relative to the largest gradient of the whole module."""
    scale = max(float(v.abs().max()) for v in a.values() if v.numel())
    return max(float((a[k] - b[k]).abs().max()) for k in a if a[k].numel()) / scale


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("plain")])
def test_two_processes_give_the_loss_and_gradients_of_one(name, one_process, two_processes):
    one, two = one_process[name], two_processes[name]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-10), name
    assert set(one["grads"]) == set(two["grads"])
    assert _worst_gap(one["grads"], two["grads"]) < 1e-9, name
    for k in one["buffers"]:  # BatchNorm running statistics, EMA teachers
        torch.testing.assert_close(two["buffers"][k], one["buffers"][k], rtol=1e-9, atol=1e-12, msg=k)


def test_a_per_process_batch_norm_is_caught(one_process, two_processes):
    """The comparison above can fail: nn.BatchNorm1d on each process's share is a different network."""
    one, two = one_process["plain_batch_norm"], two_processes["plain_batch_norm"]
    assert one["loss"] == pytest.approx(one_process["batch_norm"]["loss"], rel=1e-12)  # same maths on one process
    assert abs(two["loss"] - one["loss"]) > 1e-3 * abs(one["loss"]) or _worst_gap(one["grads"], two["grads"]) > 1e-3


def test_a_molecules_dropout_and_depth_do_not_depend_on_its_batch():
    """With per-molecule seeds, a molecule's branch outputs (dropout 0.3, dynamic depth) are the same alone or
    batched with others; without seeds they are not."""
    from modalities.molecules.dataset import collate
    from models.grover import GTransEncoder
    from tests.models.test_grover import synthetic_molecule

    torch.manual_seed(0)
    enc = GTransEncoder(hidden=16, heads=2, depth=3, depth_sigma=1.0, dropout=0.3).train()
    mols = [synthetic_molecule(n, i) for i, n in enumerate((7, 12, 5))]
    seeds = torch.tensor([11, 22, 33])

    def encode(batch: Any, s: torch.Tensor | None, depth_seed: int | None = 5) -> dict[str, torch.Tensor]:
        torch.manual_seed(int(batch.num_graphs))  # a different global RNG state for each batch
        return enc.encode(batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs, seeds=s,
                          depth_seed=depth_seed)

    whole = encode(collate(mols), seeds)
    alone = encode(collate(mols[1:2]), seeds[1:2])
    atoms = slice(7, 19)
    torch.testing.assert_close(alone["atom_from_atom"], whole["atom_from_atom"][atoms], rtol=1e-5, atol=1e-6)
    bonds = slice(2 * (mols[0].edge_index.shape[1] // 2), 2 * (mols[0].edge_index.shape[1] // 2)
                  + mols[1].edge_index.shape[1])
    torch.testing.assert_close(alone["bond_from_bond"], whole["bond_from_bond"][bonds], rtol=1e-5, atol=1e-6)
    plain = encode(collate(mols[1:2]), None)
    assert not torch.allclose(plain["atom_from_atom"], whole["atom_from_atom"][atoms], atol=1e-4)
    enc.eval()  # eval mode: seeds change nothing
    torch.testing.assert_close(encode(collate(mols), seeds)["atom_from_atom"],
                               encode(collate(mols), None)["atom_from_atom"])


def test_rows_of_unequal_counts_are_gathered_in_rank_order():
    from pretrain.distributed import gather_rows_with_grad

    x = torch.randn(3, 2, requires_grad=True)
    assert gather_rows_with_grad(x) is x  # one process: the identity


# ------------------------------------------------------------------------------------------------- the CLI

MODALITIES = ("ecg", "ppg", "eeg", "ct", "sar", "molecules", "scenes", "lidar")
COMMON = ["--max-steps", "3", "--set", "train.batch_size=4", "--set", "train.num_workers=0", "--set",
          "train.threads=1", "--set", "train.log_every=1", "--set", "train.rankme_every=1000", "--no-eval", "--quiet"]
# Tolerances past step 1: (loss, relative; weights: max |difference| in units of the peak learning rate, plus a
# share of the tensor's largest value for BatchNorm running statistics and EMA teachers). Measured on this 2-core
# CPU in float32 (worst seen: scenes 6e-6 / 0.9 lr, LiDAR 1.1e-3 / 3.9 lr, PPG 1.3e-2 / 2e-3 of a running
# variance); the bugs this file guards against gave 2e-3 .. 500 at step 1.
LATER = {"ecg": (1e-5, 0.01, 1e-4), "eeg": (1e-5, 0.01, 1e-4), "sar": (1e-5, 0.01, 1e-4),
         "ct": (1e-5, 0.01, 1e-4), "molecules": (1e-5, 0.5, 1e-4), "scenes": (1e-4, 2.0, 1e-4),
         "lidar": (5e-3, 8.0, 1e-3), "ppg": (5e-2, 8.0, 1e-2)}
# Modalities whose 2-process run is known to differ (with the reason); none since EEG's VQ restarts draw from the
# tokens of every rank (models/eegformer.py, VectorQuantizer.update: step 3 differed by 7.4e-4 before, 9e-8 after).
KNOWN_UNEQUAL: dict[str, str] = {}


def pretrain(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MODALITIES_RUN_DIR"}
    proc = subprocess.run([sys.executable, "-m", "pretrain", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args[:1])}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def logged_losses(run: Path) -> dict[int, float]:
    from pretrain.loop import read_metrics

    return {int(r["step"]): r["loss"] for r in read_metrics(run) if "loss" in r}


def peak_lr(run: Path) -> float:
    from pretrain.loop import read_metrics

    return max(r["lr"] for r in read_metrics(run))


@pytest.mark.slow
@pytest.mark.parametrize("modality", [pytest.param(m, marks=pytest.mark.xfail(reason=KNOWN_UNEQUAL[m], strict=True))
                                      if m in KNOWN_UNEQUAL else m for m in MODALITIES])
def test_two_processes_log_the_losses_and_weights_of_one(modality, tmp_path, run_cache):
    args = [modality, *COMMON]
    pretrain([*args, "--out", str(tmp_path / "one")])
    pretrain([*args, "--out", str(tmp_path / "two"), "--devices", "2", "--accelerator", "cpu"])
    one, two = logged_losses(tmp_path / "one"), logged_losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == [1, 2, 3]
    assert two[1] == pytest.approx(one[1], rel=1e-5, abs=1e-6), (modality, one, two)
    loss_tol, weight_tol, share = LATER[modality]
    for s in one:
        assert two[s] == pytest.approx(one[s], rel=loss_tol, abs=1e-6), (modality, s, one, two)
    w1 = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=True)["objective"]
    w2 = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", weights_only=True)["objective"]
    assert set(w1) == set(w2)
    atol = weight_tol * peak_lr(tmp_path / "one")
    for k in w1:  # parameters, BatchNorm running statistics, EMA teachers
        if not w1[k].is_floating_point() or not w1[k].numel():
            assert torch.equal(w1[k], w2[k]), (modality, k)
            continue
        gap = float((w1[k].double() - w2[k].double()).abs().max())
        assert gap <= atol + share * float(w1[k].abs().max()), (modality, k, gap, atol)
