"""E-SSL3D: equivariant spatio-temporal self-supervision for LiDAR sparse-voxel backbones.

After "Equivariant Spatio-Temporal Self-Supervision for LiDAR Object Detection" (Hegde, Lohit, Peng, Jones,
Patel, ECCV 2024), which builds on E-SSL (Dangovski et al., ICLR 2022). For each pair (previous sweep, current
sweep), with the previous sweep already moved into the current frame by the ego poses:

1. **Rotation by classification.** The current sweep is rotated about z by ``theta`` drawn uniformly in one of
   ``K`` equal bins of ``[-max_rotation, max_rotation]`` (view A); a head on the pooled decoder features predicts
   the bin: ``L_rot = CE(h(pool(f(A))), k)`` (:class:`~pretrain.objectives.equivariance.EquivarianceClassificationLoss`).
2. **Point contrast for translation / scale / flip.** View B = A flipped in y (p = 0.5), scaled by
   ``s ~ U(0.95, 1.05)`` and translated by ``t ~ U(-0.2, 0.2)^3`` m. The same physical points in both views
   (``contrast_points`` per scan) are positives, all other sampled points negatives (PointInfoNCE, Xie et al.
   ECCV 2020): ``L_con = InfoNCE(g(f_A(p_i)), g(f_B(p_i)))`` (:class:`~pretrain.objectives.infonce.InfoNCELoss`).
   Point features following the points under these transforms is what equivariance means at the point level.
3. **Temporal equivariance by scene flow.** The previous sweep's points are moved by a scene-flow estimate: zero
   for the static world (ego motion is removed by the poses, so a point within ``static_radius`` of the current
   sweep is static) and a nearest-neighbour flow for the rest (the displacement to the nearest current point,
   kept when shorter than ``max_flow``). Each sampled current point is matched to the nearest warped previous
   point (within ``match_radius``). An EMA target encoder (BYOL-style, momentum 0.999 -> 1, cosine) encodes the
   previous sweep under the same rotation as view A, and the online features are regressed onto it:
   ``L_flow = mean_{i, d} (q(f_A(p_i)) / ||.|| - f_T(p'_j) / ||.||)_d^2``, i.e. ``(2 - 2 cos) / D``.

``L = w_rot L_rot + w_con L_con + w_flow L_flow`` with the paper's weights 1, 0.01, 300.

**Per-scan randomness and processes.** Every draw of a scan (rotation bin and jitter, flip, scale, translation, the
contrast points, the flow queries) comes from the scan's seed (the loop's per-sample seed), so a scan is augmented
the same whatever process or batch it is in. The contrast rows of every process are gathered (with gradients) and
InfoNCE runs over the whole batch; the flow error is a sum over this process's pairs divided by the pair count of
all processes; the BatchNorms of the encoder, the EMA target and the heads use whole-batch statistics
(:class:`pretrain.distributed.GlobalBatchNorm`). Every process returns the global loss, and W processes train
exactly like one on the same batches.

The encoder is a point-wise sparse network (:class:`models.sparse_unet.SparseUNet` or
:class:`models.second.VoxelBackBone8x`): ``forward(points)`` returns ``levels``, ``num_sites`` and
``point_feat`` [N, point_dim]. Nearest-neighbour searches run on the CPU with scipy's cKDTree (coordinates only).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import nn

from modalities.lidar.voxels import VoxelGrid, crop_to_range, point_dict
from models.heads import MLPHead
from models.sparse_unet import pool_levels
from pretrain.config import ConfigError
from pretrain.distributed import (all_reduce_sum_with_grad, convert_batch_norm, full_precision, gather_rows_with_grad,
                                  world_size)
from pretrain.ema import cosine_momentum_at, ema_update, make_teacher
from pretrain.objectives.base import Objective
from pretrain.objectives.equivariance import EquivarianceClassificationLoss
from pretrain.objectives.infonce import InfoNCELoss

__all__ = ["ESSL3D", "estimate_flow", "flow_matches", "rotation_z"]


def rotation_z(theta: float) -> torch.Tensor:
    """3x3 rotation about z by ``theta`` (radians), float32."""
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def estimate_flow(prev: np.ndarray, cur: np.ndarray, static_radius: float, max_flow: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour scene flow of ``prev`` [M, 3] (ego motion removed) towards ``cur`` [N, 3].

    Returns (flow float[M, 3], valid bool[M]): 0 where the nearest current point is within ``static_radius``
    (static world), the displacement to it where that distance is below ``max_flow``; invalid beyond.
    """
    d, nn_idx = cKDTree(cur).query(prev, k=1)
    flow = cur[nn_idx] - prev
    flow[d <= static_radius] = 0.0
    return flow, d < max_flow


def flow_matches(prev: np.ndarray, cur: np.ndarray, query: np.ndarray, flow: np.ndarray, valid: np.ndarray,
                 match_radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (row of ``query`` in ``cur``, row of ``prev``) whose warped previous point ``prev + flow`` is the
    nearest one to the current point, within ``match_radius``."""
    rows = np.flatnonzero(valid)
    if len(rows) == 0 or len(query) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d, j = cKDTree(prev[rows] + flow[rows]).query(cur[query], k=1)
    ok = d <= match_radius
    return query[ok], rows[j[ok]]


class ESSL3D(Objective):
    """E-SSL3D: rotation classification, point contrast and scene-flow temporal equivariance on LiDAR pairs.

    The maths is in the module docstring.

    Args (the YAML ``objective:`` options):
        rotation_bins: ``K`` rotation classes; max_rotation: half-range in radians (pi / 2).
        translation: max |t| per axis (m); scale: (lo, hi); flip: random y-flip in view B.
        contrast_points: matched points per scan for the point contrast; temperature: of InfoNCE.
        flow_points: current points per scan sampled for the temporal loss.
        static_radius, max_flow, match_radius: flow estimate and matching distances (m).
        true_flow: use the simulator's true scene flow (``prev_flow``) instead of the estimate when present.
        proj_dim, head_hidden_dim: projector / predictor / rotation head widths.
        momentum: EMA start momentum (cosine to 1).
        weight_rotation, weight_contrast, weight_flow: loss weights (paper: 1, 0.01, 300).
    """

    name: ClassVar[str] = "e_ssl3d"
    views: ClassVar[int] = 0
    sample_kinds: ClassVar[tuple[str, ...]] = ("points",)

    def __init__(self, encoder: nn.Module, *, rotation_bins: int = 8, max_rotation: float = math.pi / 2,
                 translation: float = 0.2, scale: tuple[float, float] | list[float] = (0.95, 1.05),
                 flip: bool = True, contrast_points: int = 2048, temperature: float = 0.1, flow_points: int = 2048,
                 static_radius: float = 0.3, max_flow: float = 2.0, match_radius: float = 0.5,
                 true_flow: bool = False, proj_dim: int = 64, head_hidden_dim: int = 256, momentum: float = 0.999,
                 weight_rotation: float = 1.0, weight_contrast: float = 0.01, weight_flow: float = 300.0) -> None:
        super().__init__(encoder)
        for opt, v in (("rotation_bins", rotation_bins), ("contrast_points", contrast_points),
                       ("flow_points", flow_points), ("proj_dim", proj_dim), ("head_hidden_dim", head_hidden_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if opt == "rotation_bins" else 1):
                raise ConfigError(f"objective.{opt}: must be a positive integer (rotation_bins >= 2), got {v!r}")
        if not 0 < max_rotation <= math.pi:
            raise ConfigError(f"objective.max_rotation: must be in (0, pi], got {max_rotation}")
        lo, hi = (float(v) for v in scale)
        if not 0 < lo <= hi:
            raise ConfigError(f"objective.scale: needs 0 < lo <= hi, got {list(scale)}")
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"objective.momentum: must be in [0, 1], got {momentum}")
        for opt, v in (("static_radius", static_radius), ("max_flow", max_flow), ("match_radius", match_radius)):
            if not v > 0:
                raise ConfigError(f"objective.{opt}: must be > 0 (metres), got {v}")
        if not all(hasattr(encoder, a) for a in ("embed_dim", "level_channels")):
            raise ConfigError("model.name: e_ssl3d needs a sparse point encoder (sparse_unet*, second_8x)")
        self.bins, self.max_rotation = int(rotation_bins), float(max_rotation)
        self.translation, self.scale, self.flip = float(translation), (lo, hi), bool(flip)
        self.contrast_points, self.flow_points = int(contrast_points), int(flow_points)
        self.static_radius, self.max_flow, self.match_radius = float(static_radius), float(max_flow), float(match_radius)
        self.true_flow = bool(true_flow)
        self.momentum = float(momentum)
        self.weights = {"rotation": float(weight_rotation), "contrast": float(weight_contrast),
                        "flow": float(weight_flow)}
        d = int(getattr(encoder, "point_dim", encoder.embed_dim))  # width of forward()["point_feat"]
        self.rotation_head = MLPHead(int(sum(encoder.level_channels)), [head_hidden_dim], self.bins)
        self.projector = MLPHead(d, [head_hidden_dim], proj_dim)
        self.predictor = MLPHead(d, [head_hidden_dim], d)
        convert_batch_norm(self)  # whole-batch statistics under DDP; nn.BatchNorm itself otherwise
        self.target = make_teacher(encoder)
        self.rotation_loss = EquivarianceClassificationLoss()
        # gather=False: forward gathers the rows of every process itself (their counts may differ)
        self.contrast_loss = InfoNCELoss(temperature=temperature, gather=False)

    # ------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def grid_of(batch: dict[str, Any]) -> VoxelGrid:
        return VoxelGrid(tuple(float(v) for v in batch["point_range"].tolist()),  # type: ignore[arg-type]
                         tuple(float(v) for v in batch["voxel_size"].tolist()))  # type: ignore[arg-type]

    @staticmethod
    def _scans(batch: dict[str, Any], prefix: str = "") -> list[tuple[torch.Tensor, torch.Tensor]]:
        offset = batch[f"{prefix}offset"].tolist()
        starts = [0, *offset[:-1]]
        xyz, inten = batch[f"{prefix}coord"], batch[f"{prefix}strength"]
        return [(xyz[s:e], inten[s:e]) for s, e in zip(starts, offset)]

    def _angle(self, k: int, jitter: float) -> float:
        width = 2 * self.max_rotation / self.bins
        return -self.max_rotation + (k + jitter) * width

    # ------------------------------------------------------------------------------------------- training
    def scan_draws(self, seed: int) -> dict[str, Any]:
        """A scan's augmentation from its seed: rotation bin ``k`` and jitter, flip, scale, translation, and the
        generator (``rng``) that then picks its contrast points and flow queries."""
        rng = np.random.default_rng([int(seed), 0xE553D])
        k = int(rng.integers(self.bins))
        jitter, flip_u, scale_u = (float(v) for v in rng.random(3))
        t = (rng.random(3) * 2 - 1) * self.translation
        return {"k": k, "jitter": jitter, "flip": self.flip and flip_u < 0.5,
                "scale": self.scale[0] + (self.scale[1] - self.scale[0]) * scale_u, "t": t, "rng": rng}

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        grid = self.grid_of(batch)
        cur_scans, prev_scans = self._scans(batch), self._scans(batch, "prev_")
        true_flow = None
        if self.true_flow and "prev_flow" in batch:
            starts = [0, *batch["prev_offset"].tolist()[:-1]]
            true_flow = [batch["prev_flow"][s:e] for s, e in zip(starts, batch["prev_offset"].tolist())]
        device = batch["coord"].device
        seeds = batch.get("seed")
        if seeds is None:  # direct use outside the loop: seeds from torch's generator
            seeds = torch.randint(0, 2**62, (len(cur_scans),))
        seeds = [int(v) for v in torch.as_tensor(seeds).tolist()]
        view_a, view_b, view_p = [], [], []
        con_a, con_b, flow_a, flow_p = [], [], [], []
        labels_list = []
        base = {"a": 0, "b": 0, "p": 0}
        for s, ((cur, ci), (prev, pi)) in enumerate(zip(cur_scans, prev_scans)):
            draw = self.scan_draws(seeds[s])
            labels_list.append(draw["k"])
            rot = rotation_z(self._angle(draw["k"], draw["jitter"])).to(device=device, dtype=cur.dtype)
            a = cur @ rot.T
            pa = prev @ rot.T
            flip = torch.tensor([1.0, -1.0 if draw["flip"] else 1.0, 1.0], device=device)
            t = torch.tensor(draw["t"], dtype=a.dtype, device=device)
            b = a * flip * draw["scale"] + t
            in_a, in_b, in_p = crop_to_range(a, grid), crop_to_range(b, grid), crop_to_range(pa, grid)
            if not (in_a.any() and in_b.any() and in_p.any()):
                in_a = in_b = torch.ones(len(a), dtype=torch.bool, device=device)  # keep the scan, voxelise clamped
                in_p = torch.ones(len(pa), dtype=torch.bool, device=device)
            pos_a = torch.cumsum(in_a.long(), 0) - 1
            pos_b = torch.cumsum(in_b.long(), 0) - 1
            pos_p = torch.cumsum(in_p.long(), 0) - 1
            view_a.append((a[in_a], ci[in_a]))
            view_b.append((b[in_b], ci[in_b]))
            view_p.append((pa[in_p], pi[in_p]))
            both = torch.nonzero(in_a & in_b).squeeze(1)
            rng = draw["rng"]
            order = torch.from_numpy(rng.permutation(len(both))[: self.contrast_points]).to(device)
            pick = both[order]
            con_a.append(base["a"] + pos_a[pick])
            con_b.append(base["b"] + pos_b[pick])
            # temporal pairs on the un-rotated coordinates (rotation preserves distances)
            cur_np, prev_np = cur.detach().cpu().double().numpy(), prev.detach().cpu().double().numpy()
            in_a_np, in_p_np = in_a.cpu().numpy(), in_p.cpu().numpy()
            if true_flow is not None:
                flow = true_flow[s].detach().cpu().double().numpy()
                valid = np.ones(len(prev_np), bool)
            else:
                flow, valid = estimate_flow(prev_np, cur_np, self.static_radius, self.max_flow)
            cand = np.flatnonzero(in_a_np)
            query = np.sort(rng.choice(cand, min(self.flow_points, len(cand)), replace=False))
            qi, pj = flow_matches(prev_np, cur_np, query, flow, valid & in_p_np, self.match_radius)
            flow_a.append(base["a"] + pos_a[torch.from_numpy(qi).to(device)])
            flow_p.append(base["p"] + pos_p[torch.from_numpy(pj).to(device)])
            base["a"] += int(in_a.sum())
            base["b"] += int(in_b.sum())
            base["p"] += int(in_p.sum())
        labels = torch.tensor(labels_list, dtype=torch.long)
        ia, ib = torch.cat(con_a), torch.cat(con_b)
        fa, fp = torch.cat(flow_a), torch.cat(flow_p)
        # Row counts of the whole batch (every process), known before any collective that depends on them.
        n_pairs = len(fa)
        if world_size() > 1:
            counts = torch.tensor([float(len(ia)), float(n_pairs)], device=device)
            counts = all_reduce_sum_with_grad(counts)
            n_contrast, n_pairs = int(counts[0]), int(counts[1])
        else:
            n_contrast = len(ia)

        out_a = self.encoder(point_dict(view_a, grid))
        out_b = self.encoder(point_dict(view_b, grid))
        with torch.no_grad():
            out_p = self.target(point_dict(view_p, grid))

        logits = self.rotation_head(pool_levels(out_a, len(cur_scans)))
        l_rot_local = self.rotation_loss(logits, labels.to(device))
        if n_contrast >= 2:
            q_rows = gather_rows_with_grad(self.projector(out_a["point_feat"][ia]))
            k_rows = gather_rows_with_grad(self.projector(out_b["point_feat"][ib]))
            l_con = self.contrast_loss(q_rows, k_rows)  # the whole batch's InfoNCE, the same on every process
        else:
            l_con = out_a["point_feat"].sum() * 0.0
        if n_pairs >= 2:
            q = F.normalize(full_precision(self.predictor(out_a["point_feat"][fa])), dim=1)
            z = F.normalize(full_precision(out_p["point_feat"][fp]), dim=1).to(q.dtype)
            flow_sum = (q - z).pow(2).sum()
            flow_den = float(n_pairs * q.shape[1])
        else:  # no temporal match (e.g. a lone sweep paired with itself far out of range): no flow signal
            flow_sum, flow_den = out_a["point_feat"].sum() * 0.0, 1.0
        with torch.no_grad():
            correct = (logits.argmax(1).cpu() == labels).float().sum()
        parts = [full_precision(l_rot_local), full_precision(flow_sum)]
        dtype = torch.promote_types(parts[0].dtype, parts[1].dtype)
        total = all_reduce_sum_with_grad(torch.stack([parts[0].to(dtype), parts[1].to(dtype),
                                                      correct.to(device=flow_sum.device, dtype=dtype)]))
        w_count = float(world_size())
        l_rot = total[0] / w_count  # per-scan mean; every process holds the same number of scans
        l_flow = total[1] / flow_den
        w = self.weights
        loss = w["rotation"] * l_rot + w["contrast"] * l_con + w["flow"] * l_flow
        acc = total[2].detach() / float(len(cur_scans) * world_size())
        return {"loss": loss, "rotation": l_rot.detach(), "contrast": l_con.detach(), "flow": l_flow.detach(),
                "rotation_acc": acc, "flow_pairs": torch.tensor(float(n_pairs))}

    def on_step_end(self, step: int, total_steps: int) -> None:
        ema_update(self.target, self.encoder, cosine_momentum_at(step, total_steps, self.momentum, 1.0))

    # ---------------------------------------------------------------------------------------- monitoring
    def _current_points(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return point_dict(self._scans(batch), self.grid_of(batch))

    @torch.no_grad()
    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        """Pooled features [B, sum(level_channels)] of the un-augmented current sweeps."""
        return self.encoder.embed(self._current_points(batch))

    @torch.no_grad()
    def rotation_accuracy(self, batch: dict[str, Any], max_scans: int = 2) -> float:
        """Held-out rotation classification: every scan (up to ``max_scans``) at every bin centre; chance 1 / K."""
        grid = self.grid_of(batch)
        scans = self._scans(batch)[:max_scans]
        views, labels = [], []
        for cur, ci in scans:
            for k in range(self.bins):
                a = cur @ rotation_z(self._angle(k, 0.5)).to(cur.device).T
                keep = crop_to_range(a, grid)
                views.append((a[keep], ci[keep]))
                labels.append(k)
        logits = self.rotation_head(pool_levels(self.encoder(point_dict(views, grid)), len(views)))
        return float((logits.argmax(1).cpu() == torch.tensor(labels)).float().mean())

    @torch.no_grad()
    def monitor(self, batch: dict[str, Any]) -> dict[str, float]:
        """RankMe and std of up to 4096 point features of the held-out sweeps, and held-out rotation accuracy."""
        from pretrain.monitors import embedding_std, rankme

        f = self.encoder(self._current_points(batch))["point_feat"].float()
        g = torch.Generator().manual_seed(0)
        f = f[torch.randperm(len(f), generator=g)[:4096].to(f.device)]
        return {"rankme": rankme(f), "embed_std": embedding_std(f), "heldout_rotation_acc": self.rotation_accuracy(batch)}
