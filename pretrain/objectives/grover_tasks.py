"""GROVER's self-supervised tasks (Rong et al., NeurIPS 2020): contextual property prediction on atoms and bonds,
and graph-level motif prediction, on the four output branches of :class:`models.grover.GTransEncoder`.

**Contextual properties.** In every molecule ``ceil(0.15 n_atoms)`` atoms and ``ceil(0.15 n_bonds)`` bonds are
drawn as targets. Their input features are *masked* (replaced by a learned mask vector, or zeros) before the
encoder sees them; the reference draws targets but leaves their inputs visible, so the key of a target atom can be
read off its own features. Each target's class is its vocabulary key (centre symbol and the counts of its
neighbours' symbol-bond pairs; 0 = a key the vocabulary does not hold, kept as a class like the reference's
"other"). Atoms are classified from each atom branch with a linear head; a bond from each bond branch with
``W e_{2b} + W_rev e_{2b+1}`` over its two directions (the reference's two-FC bond head):

    L_av = CE(W_aa h^aa_T, y_T) + CE(W_ab h^ab_T, y_T),   L_bv = CE(bond_ba, y_B) + CE(bond_bb, y_B)

**Motifs.** Each branch is averaged over its molecule's atoms (or directed bonds) and a linear head predicts the 85
binarised RDKit ``fr_*`` descriptors: ``L_fg = sum over the 4 branches of BCE(W_b mean(h^b), motif)``.

**Branch consistency** (the reference's ``dist_coff`` terms): ``L_dist = c (MSE(log p^aa, log p^ab) + MSE(log p^ba,
log p^bb)) + MSE(sigma(f^aa), sigma(f^ab)) + MSE(sigma(f^ba), sigma(f^bb))`` over all atoms / bonds / molecules,
with ``c = 0.1``. The loss is ``L_av + L_bv + L_fg + L_dist``, the reference's ``overall_loss`` (every term equal
to its code's to 3e-7 on the golden batch of tests/models/test_convert_grover.py), except that its two vocabulary
MSEs also average over its padding atom / bond row: here only real atoms and bonds count (0.50142 -> 0.50144 and
1.6840 -> 1.6823 there, total 15.96340 -> 15.96324).

The vocabulary (sizes, and the keys for later use) comes from the training dataset through :meth:`bind_dataset`
(heads of fixed widths ``atom_vocab_size`` / ``bond_vocab_size`` when given, at least the vocabulary's sizes, so
that one head fits any corpus) and is written as ``vocab.json`` beside the exported encoder by
:meth:`export_files`.

**Processes.** Every mean (over target atoms, target bonds, molecules x motifs, atoms x keys, bonds x keys) is a sum
over this process's items divided by the count over all processes, both summed across processes with gradients
(:func:`pretrain.distributed.all_reduce_sum_with_grad`): molecules differ in size, so the processes of a
multi-process run hold different numbers of atoms and bonds, and a mean of per-process means would weight them
wrongly. Every process then returns the global loss (and global scalars). Dropout masks and hop counts come from the
molecules' seeds and the step's seed (:class:`models.grover.SampleNoise`), so a run on W processes takes exactly the
steps of one process on the same batches.

Batches are torch_geometric ``Batch`` objects with ``x``, ``edge_index`` (bond ``b`` at columns ``2b``, ``2b + 1``),
``edge_attr``, ``batch``, ``atom_key`` int64[N], ``bond_key`` int64[2B], ``motif`` float[G, 85] and, in the loop,
per-molecule ``seed`` (targets are a function of the seed, so they do not depend on the process count).
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.grover import BRANCHES, segment_mean
from pretrain.config import ConfigError
from pretrain.distributed import all_reduce_sum_with_grad, full_precision
from pretrain.objectives.base import Objective

VOCAB_FILE = "vocab.json"
_ATOM_SALT, _BOND_SALT = 0x5A7E, 0xB0D5


class BondVocabHead(nn.Module):
    """Bond key logits from the two directions of each bond: ``W e[2b] + W_rev e[2b + 1]``.

    Shapes: float[2B, hidden] -> float[B, vocab].
    """

    def __init__(self, hidden: int, vocab: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, vocab)
        self.linear_rev = nn.Linear(hidden, vocab)

    def forward(self, e: Tensor) -> Tensor:
        return self.linear(e[0::2]) + self.linear_rev(e[1::2])


def vocabulary_sizes(vocab: Any) -> tuple[int, int]:
    """(atom keys, bond keys) of a :class:`modalities.molecules.Vocabulary`, index 0 (``<unk>``) included."""
    return int(vocab.n_atom), int(vocab.n_bond)


def find_vocabulary(dataset: Any) -> Any | None:
    """The ``vocab`` of a dataset, looking through wrappers (``.dataset`` of a Subset, ``.base`` of the loop's)."""
    seen = 0
    while dataset is not None and seen < 8:
        vocab = getattr(dataset, "vocab", None)
        if vocab is not None and hasattr(vocab, "n_atom"):
            return vocab
        dataset = getattr(dataset, "dataset", None) or getattr(dataset, "base", None)
        seen += 1
    return None


def choose_targets(counts: Tensor, ratio: float, seeds: list[int] | None, salt: int) -> Tensor:
    """bool[sum(counts)]: ``ceil(ratio * n_g)`` items drawn without replacement in each group ``g`` of consecutive
    items (atoms or bonds of a molecule), from ``seed_g`` when given, else from torch's generator."""
    picks = []
    offset = 0
    gen = torch.Generator() if seeds is not None else None
    for g, n in enumerate(counts.tolist()):
        k = math.ceil(ratio * n)
        if k:
            if gen is not None:
                gen.manual_seed((int(seeds[g]) ^ salt) & 0x7FFF_FFFF_FFFF_FFFF)
            picks.append(offset + torch.randperm(n, generator=gen)[:k])
        offset += n
    chosen = torch.zeros(offset, dtype=torch.bool)
    if picks:
        chosen[torch.cat(picks)] = True
    return chosen


class GroverTasks(Objective):
    """Contextual property (atoms, bonds) and motif prediction on GROVER's four branches, with masked targets.

    Args:
        encoder: a :class:`models.grover.GTransEncoder` (``encode``, ``hidden``, ``atom_dim``, ``bond_dim``).
        atom_vocab_size, bond_vocab_size: widths of the atom / bond key heads (``<unk>`` = 0 included), at least
            the vocabulary's sizes; 0 = exactly the training dataset's ``vocab`` (:meth:`bind_dataset`).
        motif_size: graph-level labels (85 RDKit ``fr_*`` descriptors).
        mask_rate: fraction of atoms and of bonds per molecule drawn as targets (0.15).
        mask_token: ``"learned"`` (a trained vector replaces the target's features), ``"zero"``, or ``"none"``
            (the reference's behaviour: targets stay visible; for ablations only).
        dist_coff: weight of the atom/bond vocabulary consistency terms (reference 0.1).

    >>> from models.grover import GTransEncoder
    >>> obj = GroverTasks(GTransEncoder(hidden=16), atom_vocab_size=10, bond_vocab_size=6)
    >>> sorted(obj.motif_heads)
    ['atom_from_atom', 'atom_from_bond', 'bond_from_atom', 'bond_from_bond']
    """

    name = "grover"
    views = 0
    sample_kinds = ("graph",)

    def __init__(self, encoder: nn.Module, atom_vocab_size: int = 0, bond_vocab_size: int = 0, motif_size: int = 85,
                 mask_rate: float = 0.15, mask_token: str = "learned", dist_coff: float = 0.1) -> None:
        super().__init__(encoder)
        for attr in ("encode", "hidden", "atom_dim", "bond_dim"):
            if not hasattr(encoder, attr):
                raise ConfigError(f"objective grover: encoder {type(encoder).__name__} is not a GROVER encoder "
                                  f"(no {attr!r}); use model.name grover_tiny / grover_base / grover_large")
        for opt, value in (("atom_vocab_size", atom_vocab_size), ("bond_vocab_size", bond_vocab_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value == 1:
                raise ConfigError(f"objective.{opt}: must be 0 (from the data's vocabulary) or an integer >= 2, "
                                  f"got {value!r}")
        if isinstance(motif_size, bool) or not isinstance(motif_size, int) or motif_size < 1:
            raise ConfigError(f"objective.motif_size: must be a positive integer, got {motif_size!r}")
        if not isinstance(mask_rate, (int, float)) or not 0.0 < mask_rate <= 1.0:
            raise ConfigError(f"objective.mask_rate: must be in (0, 1], got {mask_rate!r}")
        if mask_token not in ("learned", "zero", "none"):
            raise ConfigError(f"objective.mask_token: 'learned', 'zero' or 'none', got {mask_token!r}")
        if not isinstance(dist_coff, (int, float)) or dist_coff < 0:
            raise ConfigError(f"objective.dist_coff: must be a number >= 0, got {dist_coff!r}")
        self.mask_rate, self.mask_mode, self.dist_coff = float(mask_rate), mask_token, float(dist_coff)
        try:  # GTransEncoder draws dropout and hop counts per molecule when given seeds
            self._keyed_noise = "seeds" in inspect.signature(encoder.encode).parameters
        except (TypeError, ValueError):
            self._keyed_noise = False
        self.motif_size = motif_size
        hidden = encoder.hidden
        if mask_token == "learned":
            self.atom_mask_token = nn.Parameter(torch.zeros(encoder.atom_dim))
            self.bond_mask_token = nn.Parameter(torch.zeros(encoder.bond_dim))
        else:
            self.register_buffer("atom_mask_token", torch.zeros(encoder.atom_dim), persistent=False)
            self.register_buffer("bond_mask_token", torch.zeros(encoder.bond_dim), persistent=False)
        self.motif_heads = nn.ModuleDict({b: nn.Linear(hidden, motif_size) for b in BRANCHES})
        self.vocabulary: Any = None
        self.atom_vocab_size, self.bond_vocab_size = 0, 0
        if atom_vocab_size and bond_vocab_size:
            self._build_vocab_heads(atom_vocab_size, bond_vocab_size)
        elif atom_vocab_size or bond_vocab_size:
            raise ConfigError("objective.atom_vocab_size / bond_vocab_size: give both, or neither (then the "
                              "dataset's vocabulary decides)")

    def _build_vocab_heads(self, atoms: int, bonds: int) -> None:
        hidden = self.encoder.hidden
        self.atom_vocab_size, self.bond_vocab_size = atoms, bonds
        self.atom_vocab_from_atom = nn.Linear(hidden, atoms)
        self.atom_vocab_from_bond = nn.Linear(hidden, atoms)
        self.bond_vocab_from_atom = BondVocabHead(hidden, bonds)
        self.bond_vocab_from_bond = BondVocabHead(hidden, bonds)
        device = self.motif_heads["atom_from_atom"].weight.device
        for head in (self.atom_vocab_from_atom, self.atom_vocab_from_bond, self.bond_vocab_from_atom,
                     self.bond_vocab_from_bond):
            head.to(device)

    # ------------------------------------------------------------------------------------------- loop hooks

    def bind_dataset(self, dataset: Any) -> None:
        """Size the vocabulary heads from ``dataset.vocab`` (and keep it for :meth:`export_files`)."""
        vocab = find_vocabulary(dataset)
        if vocab is None:
            if not self.atom_vocab_size:
                raise ConfigError("objective grover: the training data has no vocabulary (dataset.vocab); "
                                  "set objective.atom_vocab_size and objective.bond_vocab_size")
            return
        self.bind_vocabulary(vocab)

    def bind_vocabulary(self, vocab: Any) -> None:
        atoms, bonds = vocabulary_sizes(vocab)
        if self.atom_vocab_size:
            for opt, mine, theirs in (("atom_vocab_size", self.atom_vocab_size, atoms),
                                      ("bond_vocab_size", self.bond_vocab_size, bonds)):
                if mine < theirs:
                    raise ConfigError(f"objective.{opt}: {mine} is narrower than the data's vocabulary ({theirs} "
                                      f"keys); raise it or leave it at 0")
        else:
            self._build_vocab_heads(atoms, bonds)
        self.vocabulary = vocab

    def export_files(self, directory: str | Path) -> None:
        """Write the vocabulary as ``vocab.json`` beside the exported encoder (temp file, then rename)."""
        if self.vocabulary is None:
            return
        text = self.vocabulary.to_json()
        if not isinstance(text, str):
            text = json.dumps(text, indent=1, sort_keys=True)
        path = Path(directory) / VOCAB_FILE
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # ------------------------------------------------------------------------------------------------ tasks

    def targets(self, batch: Any) -> tuple[Tensor, Tensor]:
        """bool[N] target atoms and bool[B] target bonds (undirected) of a batch."""
        g = int(batch.num_graphs)
        device = batch.x.device
        seeds = getattr(batch, "seed", None)
        if seeds is not None:
            seeds = seeds.tolist() if torch.is_tensor(seeds) else list(seeds)
        atoms = torch.bincount(batch.batch, minlength=g).cpu()
        bonds = torch.bincount(batch.batch[batch.edge_index[0, 0::2]], minlength=g).cpu()
        atom_t = choose_targets(atoms, self.mask_rate, seeds, _ATOM_SALT)
        bond_t = choose_targets(bonds, self.mask_rate, seeds, _BOND_SALT)
        return atom_t.to(device), bond_t.to(device)

    def masked_inputs(self, batch: Any, atom_t: Tensor, bond_t: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` and ``edge_attr`` with the targets' rows replaced by the mask vectors (both bond directions)."""
        x, e = batch.x, batch.edge_attr
        if self.mask_mode == "none":
            return x, e
        x = torch.where(atom_t[:, None], self.atom_mask_token.to(x.dtype), x)
        e = torch.where(bond_t.repeat_interleave(2)[:, None], self.bond_mask_token.to(e.dtype), e)
        return x, e

    def forward(self, batch: Any) -> dict[str, Tensor]:
        if not self.atom_vocab_size:
            raise ConfigError("objective grover: no vocabulary bound; set objective.atom_vocab_size / "
                              "bond_vocab_size or train through the loop (bind_dataset)")
        g = int(batch.num_graphs)
        atom_t, bond_t = self.targets(batch)
        x, e = self.masked_inputs(batch, atom_t, bond_t)
        seeds = getattr(batch, "seed", None)
        step_seed = getattr(batch, "step_seed", None)
        noise = {}
        if self._keyed_noise and seeds is not None:
            noise = {"seeds": torch.as_tensor(seeds),
                     "depth_seed": int(step_seed) if step_seed is not None else None}
        out = self.encoder.encode(x, batch.edge_index, e, batch.batch, g, **noise)
        atom_key = batch.atom_key
        bond_key = batch.bond_key[0::2]
        motif = batch.motif.reshape(g, -1).float()
        if motif.shape[1] != self.motif_size:
            raise ValueError(f"motif: {motif.shape[1]} labels per molecule, objective.motif_size is {self.motif_size}")

        av = [self.atom_vocab_from_atom(out["atom_from_atom"]), self.atom_vocab_from_bond(out["atom_from_bond"])]
        bv = [self.bond_vocab_from_atom(out["bond_from_atom"]), self.bond_vocab_from_bond(out["bond_from_bond"])]
        bond_batch = batch.batch[batch.edge_index[0]]
        fg = {}
        for b in BRANCHES:
            index = batch.batch if b.startswith("atom") else bond_batch
            fg[b] = self.motif_heads[b](segment_mean(out[b], index, g))

        # Sums over this process's items; the counts they are divided by are global (see the module docstring).
        sums = [_ce_sum(logits, atom_key, atom_t) for logits in av]  # 0, 1
        sums += [_ce_sum(logits, bond_key, bond_t) for logits in bv]  # 2, 3
        fp = full_precision  # float32 at least (bf16 logits), float64 kept
        sums += [F.binary_cross_entropy_with_logits(fp(fg[b]), motif.to(fp(fg[b]).dtype), reduction="sum")
                 for b in BRANCHES]  # 4-7
        sums.append(_se_sum(F.log_softmax(fp(av[0]), -1), F.log_softmax(fp(av[1]), -1)))  # 8
        sums.append(_se_sum(F.log_softmax(fp(bv[0]), -1), F.log_softmax(fp(bv[1]), -1)))  # 9
        sums.append(_se_sum(torch.sigmoid(fp(fg["atom_from_atom"])), torch.sigmoid(fp(fg["atom_from_bond"]))))
        sums.append(_se_sum(torch.sigmoid(fp(fg["bond_from_atom"])), torch.sigmoid(fp(fg["bond_from_bond"]))))
        with torch.no_grad():
            correct = [_correct(av[0], atom_key, atom_t), _correct(bv[1], bond_key, bond_t),
                       ((fg["atom_from_atom"] > 0).float() == motif).float().sum()]
        ref = sums[0]
        counts = [atom_t.sum(), bond_t.sum(), motif.numel(), av[0].numel(), bv[0].numel()]
        local = torch.stack([*(t.to(ref.dtype) for t in sums), *(ref.new_tensor(float(c)) for c in counts),
                             *(c.to(device=ref.device, dtype=ref.dtype) for c in correct)])
        total = all_reduce_sum_with_grad(local)
        n_atom, n_bond, n_motif, n_av, n_bv = (total[12 + i].detach().clamp_min(1.0) for i in range(5))
        av_losses = [total[0] / n_atom, total[1] / n_atom]
        bv_losses = [total[2] / n_bond, total[3] / n_bond]
        motif_loss = (total[4] + total[5] + total[6] + total[7]) / n_motif
        av_dist, bv_dist = total[8] / n_av, total[9] / n_bv
        fg_dist = (total[10] + total[11]) / n_motif
        loss = sum(av_losses) + sum(bv_losses) + motif_loss + self.dist_coff * (av_dist + bv_dist) + fg_dist

        t = total.detach()
        return {"loss": loss,
                "av_atom_loss": av_losses[0].detach(), "av_bond_loss": av_losses[1].detach(),
                "bv_atom_loss": bv_losses[0].detach(), "bv_bond_loss": bv_losses[1].detach(),
                "motif_loss": motif_loss.detach(),
                **{f"motif_{b}_loss": (total[4 + i] / n_motif).detach() for i, b in enumerate(BRANCHES)},
                "dist_loss": (self.dist_coff * (av_dist + bv_dist) + fg_dist).detach(),
                "av_dist": av_dist.detach(), "bv_dist": bv_dist.detach(), "fg_dist": fg_dist.detach(),
                "av_acc": t[17] / n_atom, "bv_acc": t[18] / n_bond, "motif_acc": t[19] / n_motif,
                "atom_targets": t[12], "bond_targets": t[13]}

    @torch.no_grad()
    def embed(self, batch: Any) -> Tensor:
        return self.export_encoder().embed(batch)


def _ce_sum(logits: Tensor, labels: Tensor, chosen: Tensor) -> Tensor:
    """Summed cross-entropy of the chosen rows (0, still attached to the graph, when none is chosen)."""
    return F.cross_entropy(full_precision(logits[chosen]), labels[chosen], reduction="sum")


def _se_sum(a: Tensor, b: Tensor) -> Tensor:
    """Summed squared error (0, attached, for empty inputs)."""
    return (a - b).pow(2).sum()


def _correct(logits: Tensor, labels: Tensor, chosen: Tensor) -> Tensor:
    return (logits[chosen].argmax(-1) == labels[chosen]).sum()
