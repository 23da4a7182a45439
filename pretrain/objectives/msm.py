"""Masked Scene Modeling (MSM; Hermosilla, Stippel & Sick, "Masked Scene Modeling: Narrowing the Gap Between
Supervised and Self-Supervised Learning in 3D Scene Understanding", CVPR 2025) on a hierarchical sparse UNet.

Per sample, two overlapping augmented views ``A``, ``B`` of one scene (:func:`modalities.scenes.points.two_views`).
For each direction ``(v, w) in {(A, B), (B, A)}``:

1. mask: the voxels of view ``v`` are grouped into cubic patches of ``patch_size`` voxels and a ``mask_ratio``
   share of each scene's occupied patches is masked (:func:`modalities.scenes.points.patch_mask`);
2. student: the encoder sees only the visible points of ``v``. At every decoder level ``l`` (coarsest first) the
   UNet's ``decoder_hook`` appends one site per *masked voxel* of that level, the voxels of ``v`` at stride
   ``s_l`` that hold points of ``v`` but no visible one, all carrying the level's learnable mask token
   ``m_l``; the level's convolutions then fill them from the visible context, and the next, finer level
   starts again from the visible sites plus its own mask tokens (bottom-up reconstruction);
3. teacher: an EMA copy of the encoder (:mod:`pretrain.ema`) sees the full view ``w``; ``T_w^l(p)`` is the
   level-``l`` feature of the voxel holding point ``p`` (:func:`models.sparse_unet.level_point_features`);
4. targets across views: a masked site ``u`` of ``v`` at level ``l`` gets
   ``t_u = mean_{p in u, p in w} LN(T_w^l(p))`` over the scene points ``p`` that fall in ``u`` and are also in
   view ``w`` (LN: layer norm without affine parameters, as data2vec / I-JEPA normalise teacher targets); sites
   with no such point (outside the overlap) carry no loss;
5. loss: ``L_l = mean_u || H_l(S_v^l(u)) - t_u ||^2 / C_l`` with ``S_v^l(u)`` the student's level-``l`` output at
   ``u`` and ``H_l`` a linear head per level; ``loss = mean over directions and levels of L_l`` (a loss per level).

**Processes.** Scenes differ in size, so the processes of a multi-process run hold different numbers of masked
sites: every level's error is a sum over this process's sites divided by the site count of all processes (both
summed across processes with gradients), and the encoder's BatchNorms use the statistics of the whole batch
(:class:`pretrain.distributed.GlobalBatchNorm`). W processes then train exactly like one on the same batches.

The teacher (the exported encoder) follows the student with momentum going from ``ema[0]`` to ``ema[1]`` on a
cosine schedule. Masked sites that fall outside the visible input's spatial grid (possible when a whole edge row of
patches is masked; :func:`models.sparse_unet.voxelize_points` sizes the grid from the visible points) cannot be
convolved and are left out; ``dropped_frac`` reports their share.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modalities.scenes.points import patch_mask, subset_points
from pretrain.config import ConfigError
from pretrain.distributed import all_reduce_sum_with_grad, convert_batch_norm, full_precision
from pretrain.ema import cosine_momentum_at, ema_update, make_teacher
from pretrain.objectives.base import Objective

__all__ = ["MSM", "level_sites", "masked_sites", "cross_view_targets"]


def level_sites(points: dict[str, torch.Tensor], stride: int) -> torch.Tensor:
    """int64[N, 4] (batch, z, y, x) of the level-``stride`` voxel holding each point (the UNet's site layout)."""
    from models.sparse_unet import batch_index

    g = points["grid_coord"].long()
    b = batch_index(points["offset"], len(g))
    return torch.stack([b, g[:, 2] // stride, g[:, 1] // stride, g[:, 0] // stride], 1)


def _keys(sites: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    s = sites.long()
    return ((s[:, 0] * shape[0] + s[:, 1]) * shape[1] + s[:, 2]) * shape[2] + s[:, 3]


def masked_sites(point_sites: torch.Tensor, masked: torch.Tensor, visible_sites: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked voxels of one level: sites holding masked points but no visible one.

    Args:
        point_sites: int64[N, 4] level sites of all points of the view; ``masked``: bool[N].
        visible_sites: int[M, 4] the sites the student has at this level (from the visible points).

    Returns ``(sites int64[K, 4], point_slot int64[N])``: the masked sites in sorted key order and, for every
    point, the row of its site in ``sites`` (-1 for points whose site is not masked).
    """
    shape = torch.maximum(point_sites.max(0).values, visible_sites.long().max(0).values if len(visible_sites)
                          else point_sites.max(0).values)[1:] + 1
    pk = _keys(point_sites, shape)
    vk = torch.unique(_keys(visible_sites, shape)) if len(visible_sites) else pk.new_zeros(0)
    cand = torch.unique(pk[masked])
    if len(vk):
        cand = cand[~torch.isin(cand, vk)]
    slot = torch.full_like(pk, -1)
    if len(cand):
        pos = torch.searchsorted(cand, pk).clamp_max(len(cand) - 1)
        hit = (cand[pos] == pk) & masked
        slot[hit] = pos[hit]
    first = torch.full((len(cand),), -1, dtype=torch.long, device=pk.device)
    rows = torch.nonzero(slot >= 0).squeeze(1)
    first.scatter_(0, slot[rows], rows)  # any point of the site gives its coordinates
    return point_sites[first] if len(cand) else point_sites[:0], slot


def cross_view_targets(slot: torch.Tensor, n_sites: int, index_v: torch.Tensor, index_w: torch.Tensor,
                       teacher_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``t_u = mean over the points p of view v in site u (slot[p] == u) that view w also holds of teacher_w[p']``
    (``p'`` the row of ``p`` in ``w``, matched by the scene index ``index``).

    Returns ``(targets float[n_sites, C], valid bool[n_sites])`` (sites no shared point reaches are invalid).
    """
    order = torch.argsort(index_w)
    sorted_w = index_w[order]
    pos = torch.searchsorted(sorted_w, index_v).clamp_max(max(len(sorted_w) - 1, 0))
    shared = (sorted_w[pos] == index_v) if len(sorted_w) else torch.zeros_like(index_v, dtype=torch.bool)
    use = shared & (slot >= 0)
    rows_w = order[pos[use]]
    c = teacher_w.shape[1]
    sums = teacher_w.new_zeros(n_sites, c).index_add_(0, slot[use], teacher_w[rows_w])
    counts = teacher_w.new_zeros(n_sites).index_add_(0, slot[use], teacher_w.new_ones(int(use.sum())))
    return sums / counts.clamp_min(1)[:, None], counts > 0


class MSM(Objective):
    """Masked Scene Modeling: bottom-up reconstruction of an EMA teacher's multi-level features of masked voxels,
    across two views (see the module docstring).

    Args:
        encoder: a hierarchical sparse UNet with ``forward(points, decoder_hook)``, ``level_channels`` and
            ``strides`` (:class:`models.sparse_unet.SparseUNet`).
        mask_ratio: share of occupied patches masked per scene (0.4; MSM reports 30-60 % as robust).
        patch_size: patch edge in voxels; a multiple of the coarsest decoder stride makes every level's masked
            voxels exactly the patches' voxels (default: twice the coarsest decoder stride).
        ema: teacher momentum at the first and last step (cosine schedule).
        level_weights: weight of each decoder level's loss, coarsest first (default: all 1).
    """

    name = "msm"
    views = 2
    sample_kinds = ("points",)

    def __init__(self, encoder: nn.Module, mask_ratio: float = 0.4, patch_size: int | None = None,
                 ema: tuple[float, float] | list[float] = (0.996, 1.0),
                 level_weights: list[float] | None = None) -> None:
        super().__init__(encoder)
        for attr in ("level_channels", "strides"):
            if not hasattr(encoder, attr):
                raise ConfigError(f"objective msm: encoder {type(encoder).__name__} is not a hierarchical sparse "
                                  f"UNet (no {attr!r}); use model.name sparse_unet")
        if not 0.0 < float(mask_ratio) < 1.0:
            raise ConfigError(f"objective.mask_ratio: must be in (0, 1), got {mask_ratio}")
        self.strides = tuple(int(s) for s in encoder.strides)
        self.patch_size = int(patch_size or 2 * self.strides[0])
        if self.patch_size < 1:
            raise ConfigError(f"objective.patch_size: must be >= 1, got {patch_size}")
        ema = tuple(float(v) for v in ema)
        if len(ema) != 2 or not all(0.0 <= m <= 1.0 for m in ema):
            raise ConfigError(f"objective.ema: need two momenta in [0, 1], got {list(ema)}")
        chans = tuple(int(c) for c in encoder.level_channels)
        weights = [1.0] * len(chans) if level_weights is None else [float(w) for w in level_weights]
        if len(weights) != len(chans):
            raise ConfigError(f"objective.level_weights: {len(weights)} weights for {len(chans)} decoder levels")
        self.mask_ratio, self.ema = float(mask_ratio), ema
        self.register_buffer("level_weights", torch.tensor(weights), persistent=False)
        self.mask_tokens = nn.ParameterList([nn.Parameter(torch.randn(c) * 0.02) for c in chans])
        self.heads = nn.ModuleList([nn.Linear(c, c) for c in chans])
        convert_batch_norm(encoder)  # whole-batch statistics under DDP; nn.BatchNorm itself otherwise
        self.teacher = make_teacher(encoder)
        self._momentum = ema[0]
        self._dropped = (0, 0)  # masked sites outside the student's grid, and all masked sites, of the last pass

    # ------------------------------------------------------------------------------------------------ parts

    def mask(self, points: dict[str, torch.Tensor], seeds: torch.Tensor, stream: int) -> torch.Tensor:
        """bool[N] masked points of a batched view; each scene's mask comes from its seed and the view."""
        return patch_mask(points["grid_coord"], points["offset"], self.patch_size, self.mask_ratio,
                          [int(s) * 2 + stream for s in seeds.tolist()])

    @torch.no_grad()
    def teacher_point_features(self, points: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per decoder level, LN(teacher features) of the voxel holding each point of the full view, float[N, C_l]."""
        from models.sparse_unet import level_point_features

        was = self.teacher.training
        self.teacher.train(self.training)  # batch statistics while training: the copied running stats lag
        out = self.teacher(points)
        self.teacher.train(was)
        vox = out["voxels"].indices
        feats = []
        for lv, n, s in zip(out["levels"], out["num_sites"], self.strides):
            f = full_precision(level_point_features(vox, out["point2voxel"], lv, n, s))
            feats.append(F.layer_norm(f, f.shape[-1:]))
        return feats

    def student_predictions(self, points: dict[str, torch.Tensor], masked: torch.Tensor
                            ) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
        """Student pass on the visible points with mask tokens inserted at every decoder level.

        Returns, per level, the head's predictions float[K_l, C_l] at the masked sites and ``slot`` int64[N] (the
        masked site of each point of the full view, -1 if none), and the share of masked sites dropped for lying
        outside the student's grid.
        """
        from models.sparse_unet import sparse_tensor

        visible = subset_points(points, ~masked)
        sites_all = [level_sites(points, s) for s in self.strides]
        slots: list[torch.Tensor] = []
        counts: list[int] = []
        dropped = [0, 0]

        def hook(i: int, x: Any) -> Any:
            sites, slot = masked_sites(sites_all[i], masked, x.indices)
            shape = torch.tensor(x.spatial_shape, device=sites.device)
            inside = (sites[:, 1:] < shape).all(1)
            dropped[0] += int((~inside).sum())
            dropped[1] += len(sites)
            if not bool(inside.all()):  # renumber the kept sites; points of dropped ones get no slot
                new_row = torch.cumsum(inside.long(), 0) - 1
                slot = torch.where(slot >= 0, torch.where(inside[slot.clamp_min(0)], new_row[slot.clamp_min(0)],
                                                          slot.new_full((), -1)), slot)
                sites = sites[inside]
            slots.append(slot)
            counts.append(len(sites))
            token = self.mask_tokens[i].to(x.features.dtype).expand(len(sites), -1)
            return sparse_tensor(torch.cat([x.features, token], 0),
                                 torch.cat([x.indices, sites.to(x.indices.dtype)], 0), x.spatial_shape, x.batch_size)

        out = self.encoder(visible, decoder_hook=hook)
        self._dropped = (dropped[0], dropped[1])
        preds = []
        for i, (lv, n) in enumerate(zip(out["levels"], out["num_sites"])):
            preds.append(self.heads[i](full_precision(lv.features[n:n + counts[i]])))
        return preds, slots, dropped[0] / max(1, dropped[1])

    # ---------------------------------------------------------------------------------------------- contract

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        va, vb = batch["view_a"], batch["view_b"]
        seeds = batch.get("seed")
        if seeds is None:  # direct use outside the loop
            seeds = torch.randint(0, 2**62, (len(va["offset"]),))
        teacher = {"a": self.teacher_point_features(vb), "b": self.teacher_point_features(va)}
        levels = len(self.strides)
        # Per direction and level: summed squared error over this process's target sites, and the element count.
        err = [[va["feat"].new_zeros(()) for _ in range(levels)] for _ in range(2)]
        count = [[0.0] * levels for _ in range(2)]
        stats = {"masked": 0.0, "points": 0.0, "dropped": 0.0, "sites": 0.0, "targets": 0.0}
        for stream, (name, v, w) in enumerate((("a", va, vb), ("b", vb, va))):
            masked = self.mask(v, seeds, stream)
            preds, slots, _ = self.student_predictions(v, masked)
            stats["masked"] += float(masked.sum())
            stats["points"] += float(masked.numel())
            stats["dropped"] += self._dropped[0]
            stats["sites"] += self._dropped[1]
            for i, (pred, slot) in enumerate(zip(preds, slots)):
                target, valid = cross_view_targets(slot, len(pred), v["index"], w["index"], teacher[name][i])
                # every prediction takes part (x 0 when it has no target): the same graph on every process
                err[stream][i] = ((pred - target).pow(2) * valid[:, None].to(pred.dtype)).sum()
                count[stream][i] = float(valid.sum()) * pred.shape[1]
                stats["targets"] += float(valid.sum())
        ref = err[0][0]
        numbers = [c for row in count for c in row] + [stats[k] for k in ("masked", "points", "dropped", "sites",
                                                                            "targets")]
        local = torch.cat([torch.stack([e.to(ref.dtype) for row in err for e in row]), ref.new_tensor(numbers)])
        total = all_reduce_sum_with_grad(local)
        sums, counts = total[:2 * levels].view(2, levels), total[2 * levels:4 * levels].detach().view(2, levels)
        g_masked, g_points, g_dropped, g_sites, g_targets = total[4 * levels:].detach().unbind()
        used = (counts > 0).to(sums.dtype)  # a direction without any target site at a level carries no loss
        per_level = ((sums / counts.clamp_min(1.0)) * used).sum(0) / used.sum(0).clamp_min(1.0)
        w = self.level_weights.to(per_level.device)
        # + 0 x the mask tokens: a batch without any target (no masked site in the overlap) still has a graph
        loss = (per_level * w).sum() / w.sum() + 0.0 * sum(t.sum() for t in self.mask_tokens)
        out = {"loss": loss, "momentum": torch.tensor(self._momentum)}
        for i, v in enumerate(per_level.detach()):
            out[f"loss_l{i}"] = v
        out.update({"masked_frac": g_masked / g_points.clamp_min(1.0),
                    "dropped_frac": g_dropped / g_sites.clamp_min(1.0), "target_sites": g_targets})
        return out

    def on_step_end(self, step: int, total_steps: int) -> None:
        self._momentum = cosine_momentum_at(step, total_steps, *self.ema)
        ema_update(self.teacher, self.encoder, self._momentum)

    @torch.no_grad()
    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.export_encoder().embed(_points(batch))

    def export_encoder(self) -> nn.Module:
        return self.teacher


def _points(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    if "grid_coord" in batch:
        return batch
    if "view_a" in batch:
        return batch["view_a"]
    raise KeyError(f"batch has no point dictionary; keys: {sorted(batch)}")

