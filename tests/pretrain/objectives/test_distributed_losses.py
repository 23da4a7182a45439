"""Every loss under 2-process CPU DDP (gloo) equals the single-process loss on the concatenated batch.

One ``torch.multiprocessing.spawn`` computes, on each rank's half of a fixed float64 batch, every loss and
the gradients of its inputs. DDP averages gradients over the W ranks, so the check is:

    mean_r loss_r == L(concatenated batch)        grad_r / W == dL/d(rank r's rows)

The same ranks also run the losses with the classic bug (plain ``dist.all_gather`` / ``dist.all_reduce``,
which carry no gradient from the other ranks): their loss values are still right, and the test asserts
that their gradients are not, so the equivalence test above would catch a gather that drops gradients.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pretrain import distributed
from pretrain.objectives import barlow_twins, infonce, vicreg
from pretrain.objectives.barlow_twins import BarlowTwinsLoss, MixedBarlowTwinsLoss
from pretrain.objectives.equivariance import EquivarianceClassificationLoss
from pretrain.objectives.infonce import InfoNCELoss, KoLeoLoss
from pretrain.objectives.vicreg import VICRegLoss

WORLD = 2
N, D, K = 8, 5, 4
ROWS = N // WORLD
# Same-subject pairs inside one rank's half (s0) and across the halves (s1, s2).
SUBJECTS = ["s0", "s1", "s2", "s0", "s1", "s3", "s2", "s4"]
ALPHAS = [0.3, 0.7]  # one Beta draw per rank (Mixed Barlow Twins)


def make_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    z_a = torch.randn(N, D, generator=g, dtype=torch.float64)
    return {
        "z_a": z_a,
        "z_b": z_a + 0.5 * torch.randn(N, D, generator=g, dtype=torch.float64),
        "z_m": torch.randn(N, D, generator=g, dtype=torch.float64),
        "logits": torch.randn(N, K, generator=g, dtype=torch.float64),
        "target": torch.randint(K, (N,), generator=g),
        "perms": torch.stack([torch.randperm(ROWS, generator=g) for _ in range(WORLD)]),
    }


def rank_context(data: dict[str, torch.Tensor], rank: int) -> dict[str, Any]:
    rows = slice(rank * ROWS, (rank + 1) * ROWS)
    return {"rows": rows, "perm": data["perms"][rank], "alpha": ALPHAS[rank], "subjects": SUBJECTS[rows],
            "target": data["target"][rows]}


def full_context(data: dict[str, torch.Tensor]) -> dict[str, Any]:
    perm = torch.cat([data["perms"][r] + r * ROWS for r in range(WORLD)])
    alpha = torch.tensor([ALPHAS[r] for r in range(WORLD) for _ in range(ROWS)], dtype=torch.float64)
    return {"rows": slice(0, N), "perm": perm, "alpha": alpha, "subjects": SUBJECTS, "target": data["target"]}


Case = tuple[list[str], Callable[[dict[str, torch.Tensor], dict[str, Any]], torch.Tensor]]
CASES: dict[str, Case] = {
    "barlow_twins": (["z_a", "z_b"], lambda v, c: BarlowTwinsLoss(lambda_=0.1)(v["z_a"], v["z_b"])),
    "mixed_barlow_twins": (
        ["z_a", "z_b", "z_m"],
        lambda v, c: MixedBarlowTwinsLoss(lambda_=0.1)(v["z_a"], v["z_b"], v["z_m"], c["perm"], c["alpha"]),
    ),
    "vicreg": (["z_a", "z_b"], lambda v, c: VICRegLoss()(v["z_a"], v["z_b"])),
    "infonce": (["z_a", "z_b"], lambda v, c: InfoNCELoss(temperature=0.2)(v["z_a"], v["z_b"])),
    "infonce_subjects": (
        ["z_a", "z_b"], lambda v, c: InfoNCELoss(temperature=0.2)(v["z_a"], v["z_b"], c["subjects"])
    ),
    "koleo": (["z_a"], lambda v, c: KoLeoLoss()(v["z_a"])),
    "equivariance": (["logits"], lambda v, c: EquivarianceClassificationLoss()(v["logits"], c["target"])),
}
GATHERED = [name for name in CASES if name != "equivariance"]


def evaluate(name: str, data: dict[str, torch.Tensor], context: dict[str, Any]) -> tuple[float, list[torch.Tensor]]:
    keys, fn = CASES[name]
    leaves = {k: data[k][context["rows"]].clone().requires_grad_(True) for k in keys}
    loss = fn(leaves, context)
    grads = torch.autograd.grad(loss, [leaves[k] for k in keys])
    return loss.item(), [g.detach() for g in grads]


def _plain_gather(x: torch.Tensor) -> torch.Tensor:
    """The classic bug: other ranks' rows arrive without gradient (only the local rows keep theirs)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def _plain_all_reduce(x: torch.Tensor) -> torch.Tensor:
    """The classic bug: the right sum, but gradients reach only the local term."""
    total = x.detach().clone()
    dist.all_reduce(total)
    return x + (total - x.detach())


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        data = make_data()
        context = rank_context(data, rank)
        results: dict[str, Any] = {
            "world_size": distributed.world_size(),
            "rank": distributed.rank(),
            "subjects": distributed.gather_objects(context["subjects"]),
            "correct": {name: evaluate(name, data, context) for name in CASES},
        }
        saved = (barlow_twins.all_reduce_sum_with_grad, vicreg.gather_with_grad, infonce.gather_with_grad)
        barlow_twins.all_reduce_sum_with_grad = _plain_all_reduce
        vicreg.gather_with_grad = infonce.gather_with_grad = _plain_gather
        try:
            results["plain"] = {name: evaluate(name, data, context) for name in GATHERED}
        finally:
            barlow_twins.all_reduce_sum_with_grad, vicreg.gather_with_grad, infonce.gather_with_grad = saved
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(WORLD, _free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[float, list[torch.Tensor]]]:
    data = make_data()
    return {name: evaluate(name, data, full_context(data)) for name in CASES}


def test_helpers_see_two_processes(ddp_results: list[dict[str, Any]]) -> None:
    assert [r["rank"] for r in ddp_results] == [0, 1]
    assert all(r["world_size"] == WORLD for r in ddp_results)
    assert all(r["subjects"] == SUBJECTS for r in ddp_results)


@pytest.mark.parametrize("name", list(CASES))
def test_loss_and_gradients_equal_single_process(
    name: str, ddp_results: list[dict[str, Any]], reference: dict[str, tuple[float, list[torch.Tensor]]]
) -> None:
    ref_loss, ref_grads = reference[name]
    losses = [r["correct"][name][0] for r in ddp_results]
    assert sum(losses) / WORLD == pytest.approx(ref_loss, rel=1e-10)
    for rank, result in enumerate(ddp_results):
        rows = slice(rank * ROWS, (rank + 1) * ROWS)
        for grad, ref in zip(result["correct"][name][1], ref_grads):
            torch.testing.assert_close(grad / WORLD, ref[rows], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", GATHERED)
def test_a_gather_without_gradient_is_caught(
    name: str, ddp_results: list[dict[str, Any]], reference: dict[str, tuple[float, list[torch.Tensor]]]
) -> None:
    ref_loss, ref_grads = reference[name]
    assert sum(r["plain"][name][0] for r in ddp_results) / WORLD == pytest.approx(ref_loss, rel=1e-10)
    worst = max(
        (grad / WORLD - ref[rank * ROWS : (rank + 1) * ROWS]).abs().max().item()
        for rank, result in enumerate(ddp_results)
        for grad, ref in zip(result["plain"][name][1], ref_grads)
    )
    assert worst > 1e-4
