"""Golden outputs of GROVER's own code (tencent-ailab/grover), for tests/golden/grover_* (parity test:
tests/models/test_convert_grover.py).

Given their checkout (``--reference PATH``, the folder holding ``grover/`` and ``task/``; not shipped here), this:

1. builds their pretraining arguments with their own parser (``add_pretrain_args`` + ``modify_pretrain_args``) at a
   small non-default size (hidden 12, 3 heads, depth 3, 2 blocks, PReLU), their ``GROVEREmbedding`` and
   ``GroverTask`` (atom / bond vocabulary heads and the 85 motif heads), seeds torch and moves every 1-d parameter
   (biases, LayerNorm weights and biases, PReLU slopes) by N(0, 0.3): at their initial values the LayerNorm biases
   are zero and the padding row they feed stays zero, so its effect would go untested;
2. writes the checkpoint with their ``grover.util.utils.save_checkpoint`` (``{'args', 'state_dict',
   'data_scaler', 'features_scaler'}``, a ``GroverTask`` state dict) -> ``grover_reference.pt``;
3. featurises a fixed batch of SMILES with their ``mol2graph`` and records, in eval mode, the four branch
   embeddings of their ``GROVEREmbedding`` (``embedding_output_type = "both"``) per atom and per directed bond
   (with the bond's atoms, to match our bond order), their raw atom / bond features, and their context keys;
4. draws contextual-property targets (15 % of atoms and bonds per molecule, their ``ceil``) with class labels from a
   seeded generator and motif labels, runs their ``GroverTask`` and their ``get_loss_func`` and records every term
   (per branch, by calling it with the other branches set to ``None``), as is and with the padding row left out
   of the two consistency terms -> ``grover.npz``;
5. a second, encoder-only checkpoint (their ``GROVEREmbedding``, keys ``encoders.*``) with ``activation ReLU`` (no
   slopes stored) at hidden 6, 2 heads, depth 2, 1 block -> ``grover_reference_relu.pt``, with its four branches
   on the same batch (``relu_*`` in ``grover.npz``).

Patched in memory, never in their files: ``descriptastorus`` (imported by ``task_labels`` for the motif labels this
script does not use) is replaced by an empty module when it is not installed; ``args.cuda = False`` (their
``GTransEncoder`` moves batches to CUDA when true). Nothing else: their code runs unchanged on torch 2 / RDKit 2026.

    python benchmarks/parity/grover_golden.py --reference /tmp/grover_ref
"""

from __future__ import annotations

import argparse
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]

SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",       # aspirin: ester, acid, aromatic ring
    "C[N+](C)(C)CC(=O)[O-]",       # betaine: formal charges +1 / -1, a degree-4 atom
    "C1CC1N",                      # a 3-ring
    "F/C=C/Cl",                    # bond stereo
    "c1ccc2[nH]ccc2c1",            # indole: aromatic N-H, fused 5/6 rings
    "C",                           # no bonds
    "CC(C)(C)C#N",                 # triple bond
    "NS(=O)(=O)c1ccc(Br)cc1",      # sulfonamide, halogen
    "C1CCCCCCC1",                  # an 8-ring
    "[O-][N+](=O)c1ccccc1",        # nitro
    "OC[C@H](N)C(=O)O",            # chirality
]
HIDDEN, HEADS, DEPTH, BLOCKS = 12, 3, 3, 2
ATOM_VOCAB, BOND_VOCAB = 17, 13


def import_reference(root: Path):
    root = root.expanduser().resolve()
    if not (root / "grover" / "model" / "models.py").is_file():
        sys.exit(f"{root}: not a tencent-ailab/grover checkout (grover/model/models.py missing)")
    try:
        import descriptastorus  # noqa: F401
    except ImportError:  # only their fgtasklabel generator uses it
        pkg = types.ModuleType("descriptastorus")
        sub = types.ModuleType("descriptastorus.descriptors")
        sub.rdDescriptors = types.ModuleType("descriptastorus.descriptors.rdDescriptors")
        sub.rdNormalizedDescriptors = types.ModuleType("descriptastorus.descriptors.rdNormalizedDescriptors")
        pkg.descriptors = sub
        sys.modules.update({"descriptastorus": pkg, "descriptastorus.descriptors": sub,
                            "descriptastorus.descriptors.rdDescriptors": sub.rdDescriptors,
                            "descriptastorus.descriptors.rdNormalizedDescriptors": sub.rdNormalizedDescriptors})
    sys.path.insert(0, str(root))
    from grover.data import mol2graph
    from grover.data.task_labels import atom_to_vocab, bond_to_vocab
    from grover.model.models import GROVEREmbedding, GroverTask
    from grover.util.parsing import add_pretrain_args, modify_pretrain_args
    from grover.util.utils import save_checkpoint
    return types.SimpleNamespace(mol2graph=mol2graph, atom_to_vocab=atom_to_vocab, bond_to_vocab=bond_to_vocab,
                                 GROVEREmbedding=GROVEREmbedding, GroverTask=GroverTask,
                                 add_pretrain_args=add_pretrain_args, modify_pretrain_args=modify_pretrain_args,
                                 save_checkpoint=save_checkpoint)


def their_args(ref, hidden=HIDDEN, heads=HEADS, depth=DEPTH, blocks=BLOCKS, activation="PReLU"):
    parser = argparse.ArgumentParser()
    ref.add_pretrain_args(parser)
    args = parser.parse_args(["--hidden_size", str(hidden), "--num_attn_head", str(heads), "--depth", str(depth),
                              "--num_mt_block", str(blocks), "--dropout", "0.1", "--activation", activation,
                              "--embedding_output_type", "both", "--backbone", "gtrans"])
    ref.modify_pretrain_args(args)
    args.cuda = False
    return args


def perturb(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for prm in model.parameters():
            if prm.dim() == 1 and prm.requires_grad:
                prm.add_(0.3 * torch.randn_like(prm))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, type=Path, help="the tencent-ailab/grover checkout")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--out-dir", type=Path, default=REPO / "tests" / "golden")
    a = p.parse_args()
    ref = import_reference(a.reference)
    from rdkit import RDLogger
    RDLogger.DisableLog("rdApp.*")  # their GetImplicitValence() prints a deprecation line per atom on RDKit 2026
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)

    args = their_args(ref)
    embedding = ref.GROVEREmbedding(args)
    task = ref.GroverTask(args, embedding, ATOM_VOCAB, BOND_VOCAB, 85)
    perturb(task)
    task.eval()
    a.out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = a.out_dir / "grover_reference.pt"
    ref.save_checkpoint(str(ckpt), task, None, None, args)

    graph = ref.mol2graph(SMILES, {}, args)
    f_atoms, f_bonds, a2b, b2a, b2revb, a_scope, b_scope, a2a = graph.get_components()
    with torch.no_grad():
        emb = embedding(graph.get_components())
    # directed bond k (k >= 1) runs b2a[k] -> b2a[b2revb[k]]; atom indices lose the padding row
    src = (b2a[1:] - 1).numpy()
    dst = (b2a[b2revb[1:]] - 1).numpy()

    # contextual-property targets: ceil(15 %) per molecule, labels 2.. (their 0 = not a target, 1 = other)
    from rdkit import Chem
    gen = np.random.default_rng(a.seed)
    atom_label, bond_label, atom_keys, bond_keys = [0], [0], [], []
    for smi in SMILES:
        mol = Chem.MolFromSmiles(smi)
        n, m = mol.GetNumAtoms(), mol.GetNumBonds()
        lab = np.zeros(n, np.int64)
        lab[gen.permutation(n)[:math.ceil(0.15 * n)]] = gen.integers(1, ATOM_VOCAB, math.ceil(0.15 * n))
        atom_label += lab.tolist()
        lab = np.zeros(m, np.int64)
        lab[gen.permutation(m)[:math.ceil(0.15 * m)]] = gen.integers(1, BOND_VOCAB, math.ceil(0.15 * m))
        bond_label += lab.tolist()  # in their bond order: pairs (a1 < a2) in index order
        atom_keys += [ref.atom_to_vocab(mol, atom) for atom in mol.GetAtoms()]
        for a1 in range(n):
            for a2 in range(a1 + 1, n):
                bond = mol.GetBondBetweenAtoms(a1, a2)
                if bond is not None:
                    bond_keys.append(ref.bond_to_vocab(mol, bond))
    motif = (gen.random((len(SMILES), 85)) < 0.2).astype(np.float32)
    targets = {"av_task": torch.tensor(atom_label), "bv_task": torch.tensor(bond_label),
               "fg_task": torch.from_numpy(motif)}
    loss_func = ref.GroverTask.get_loss_func(args)
    with torch.no_grad():
        preds = task(graph.get_components())
        names = ("overall", "av", "bv", "fg", "av_dist", "bv_dist", "fg_dist")
        terms = {f"loss_{k}": float(v) for k, v in zip(names, loss_func(preds, targets))}
        # without the padding row (their row 0 of every per-atom / per-bond prediction)
        real = {"av_task": tuple(t[1:] for t in preds["av_task"]), "bv_task": tuple(t[1:] for t in preds["bv_task"]),
                "fg_task": preds["fg_task"]}
        real_t = {"av_task": targets["av_task"][1:], "bv_task": targets["bv_task"][1:], "fg_task": targets["fg_task"]}
        terms.update({f"loss_real_{k}": float(v) for k, v in zip(names, loss_func(real, real_t))})
        # one branch at a time: (av or bv term, that branch's motif term)
        for i, branch in enumerate(("atom_from_atom", "atom_from_bond", "bond_from_atom", "bond_from_bond")):
            task_name, j = ("av_task", i) if i < 2 else ("bv_task", i - 2)
            one = {"av_task": (None, None), "bv_task": (None, None),
                   "fg_task": {b: preds["fg_task"][b] for b in preds["fg_task"]}}
            one[task_name] = tuple(preds[task_name][k] if k == j else None for k in range(2))
            _, av, bv, fg, *_ = loss_func(one, targets)
            terms[f"loss_vocab_{branch}"] = float(av if i < 2 else bv)
            terms[f"loss_motif_{branch}"] = float(fg)

    out = {"smiles": np.array(SMILES), "hidden": HIDDEN, "heads": HEADS, "depth": DEPTH, "blocks": BLOCKS,
           "atom_vocab": ATOM_VOCAB, "bond_vocab": BOND_VOCAB,
           "f_atoms": f_atoms[1:].numpy(),
           "f_bonds": f_bonds[1:, -14:].numpy(), "bond_src": src, "bond_dst": dst,
           "atom_label": np.array(atom_label[1:]), "bond_label": np.array(bond_label[1:]), "motif": motif,
           "atom_keys": np.array(atom_keys), "bond_keys": np.array(bond_keys),
           **{k: np.float64(v) for k, v in terms.items()}}
    for b, rows in (("atom_from_atom", emb["atom_from_atom"]), ("atom_from_bond", emb["atom_from_bond"]),
                    ("bond_from_atom", emb["bond_from_atom"]), ("bond_from_bond", emb["bond_from_bond"])):
        out[b] = rows[1:].numpy()
        out[f"{b}_padding"] = rows[0].numpy()
    relu_args = their_args(ref, hidden=6, heads=2, depth=2, blocks=1, activation="ReLU")
    relu = ref.GROVEREmbedding(relu_args)
    perturb(relu)
    relu.eval()
    ref.save_checkpoint(str(a.out_dir / "grover_reference_relu.pt"), relu, None, None, relu_args)
    with torch.no_grad():
        emb = relu(ref.mol2graph(SMILES, {}, relu_args).get_components())
    for b in ("atom_from_atom", "atom_from_bond", "bond_from_atom", "bond_from_bond"):
        out[f"relu_{b}"] = emb[b][1:].numpy()
    np.savez_compressed(a.out_dir / "grover.npz", **out)
    print(f"wrote {ckpt} ({ckpt.stat().st_size / 1e3:.0f} kB) and {a.out_dir / 'grover.npz'}; "
          + ", ".join(f"{k} {v:.6f}" for k, v in terms.items()))


if __name__ == "__main__":
    main()
