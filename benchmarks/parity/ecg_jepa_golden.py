"""Golden outputs of the ECG-JEPA authors' code (kweimann/ECG-JEPA), for tests/golden/ecg_jepa*
(tests: tests/models/test_convert_ecg_jepa.py).

Given the authors' checkout (``--reference PATH``, the folder holding their ``pretrain.py``; not shipped here), this

1. simulates a few 10 s 12-lead ECGs at 500 Hz with our ECGSYN simulator (``modalities.ecg.simulate``) and writes
   them as a PTB-XL-shaped ``.npy`` dump (records x 5000 x 12, float16, their ``scripts/dump_data`` layout), so no
   data of theirs is copied;
2. runs their ``pretrain.py`` unchanged on that dump, twice, at two non-default small sizes (8 leads at 250 Hz,
   4 s windows, patch 10, width 24, depth 2, 3 heads, MLP ratio 2, predictor 12 wide):
   run ``a`` with ``qkv_bias`` on, LayerNorm/linear biases off and 2 registers; run ``b`` with biases on, no
   register and LayerScale (``layer_scale_eps`` 0.1). Each runs 30 steps at lr 1e-2 so that no weight stays at its
   initial value, and writes ``chkpt_30.pt`` as their code does (``{'model', 'optimizer', 'config', 'step'}``).
   Run ``b``'s file is then shrunk with their ``scripts/minify_pretrained_checkpoint.py`` (``{'model', 'config'}``,
   target encoder only: the form of their published checkpoints);
3. with their modules, on 3 windows of the dump preprocessed as their ``PreprocessECG`` + ``TransformECG`` do
   (PTB-XL mean/std from their ``pretrain.py``, clip +-5, resample to 250 Hz, their lead order, a crop):
   - the linear-evaluation feature of each checkpoint: their ``VisionTransformer(config, keep_registers=False)``
     loaded with the target-encoder weights as ``finetune.py`` extracts them, mean over tokens;
   - a JEPA step of run ``a`` for masks drawn once by their ``MaskCollator`` (saved): the target encoder's tokens,
     the context encoder's tokens, the predictor output, their L1 loss and the gradients of every trained weight.
     The step runs their ``JEPA.forward`` with a momentum schedule of constant 1.0, so that its EMA update
     (``1.0 * target + 0.0 * encoder``) leaves the checkpoint's target encoder exactly as it is.

Writes ``tests/golden/ecg_jepa_a.pt`` (their full checkpoint, ~0.2 MB), ``tests/golden/ecg_jepa_b.min.pt`` and
``tests/golden/ecg_jepa.npz``.

Their code runs in child processes (``sys.path`` then starts at their checkout: their packages ``models``,
``configs``, ``data`` shadow ours). Patched in memory only, never in their files:
- ``h5py`` is replaced by an empty module: only their CODE-15 reader uses it, and it is not installed here;
- multiprocessing is set to ``fork``: their ``load_data_dump`` passes a transform defined in ``pretrain.py``'s
  ``__main__`` to a process pool;
- torch and NumPy are seeded before their code runs (they seed nothing), so the files are reproducible;
- attention uses their explicit softmax path (``use_sdp_kernel=False``), as their code chooses on a CPU.

    python benchmarks/parity/ecg_jepa_golden.py --reference ~/src/ECG-JEPA
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
LEADS_8 = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]

COMMON = dict(
    sampling_frequency=250, channels=LEADS_8, channel_size=1000, patch_size=10, min_block_size=5,
    min_keep_ratio=0.15, max_keep_ratio=0.25, datasets={"ptb-xl": 1.0},
    dim=24, depth=2, num_heads=3, pred_dim=12, pred_depth=1, pred_num_heads=2, mlp_ratio=2.0,
    dropout=0.0, attn_dropout=0.0, norm_eps=1e-6,
    steps=30, batch_size=8, encoder_momentum=0.9, final_encoder_momentum=0.99, learning_rate=1e-2,
    final_learning_rate=1e-3, learning_rate_warmup_steps=5, weight_decay=1e-2, final_weight_decay=1e-1,
    opt_betas=[0.9, 0.99], opt_eps=1e-6, gradient_clip=0.0, gradient_accumulation_steps=1, checkpoint_interval=30,
)
RUNS = {
    "a": dict(COMMON, qkv_bias=True, bias=False, num_registers=2, layer_scale_eps=0.0),
    "b": dict(COMMON, qkv_bias=False, bias=True, num_registers=0, layer_scale_eps=0.1),
}

_PATCHES = """
import multiprocessing, sys, types
import numpy as np, torch
sys.modules['h5py'] = types.ModuleType('h5py')
multiprocessing.set_start_method('fork', force=True)
torch.manual_seed({seed}); np.random.seed({seed})
torch.set_num_threads(1)
sys.path.insert(0, {ref!r})
"""

_PRETRAIN = _PATCHES + """
import runpy
sys.argv = ['pretrain.py', '--data', 'ptb-xl=' + {dump!r}, '--out', {out!r}, '--config', {config!r}]
runpy.run_path({ref!r} + '/pretrain.py', run_name='__main__')
"""

_MINIFY = _PATCHES + """
import runpy
sys.argv = ['minify_pretrained_checkpoint.py', '--checkpoint', {chkpt!r}]
runpy.run_path({ref!r} + '/scripts/minify_pretrained_checkpoint.py', run_name='__main__')
"""

_OUTPUTS = _PATCHES + """
import itertools
import configs
from data import transforms
from data.masks import MaskCollator
from models import JEPA, VisionTransformer

ptbxl_mean = np.array([[-0.002, -0.002, 0.000, 0.002, -0.001, -0.001, 0.000, -0.001, -0.002, -0.001, -0.001, -0.001]],
                      dtype=np.float16)  # their pretrain.py's PTB_XL.mean / std, cast as their loader does
ptbxl_std = np.array([[0.191, 0.166, 0.173, 0.142, 0.149, 0.147, 0.235, 0.338, 0.335, 0.299, 0.294, 0.242]],
                     dtype=np.float16)
ptbxl_leads = ['I', 'II', 'III', 'AVR', 'AVL', 'AVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6']

full = torch.load({chkpt_a!r}, map_location='cpu', weights_only=True)
minified = torch.load({chkpt_b!r}, map_location='cpu', weights_only=True)
config_a = configs.pretrain.Config(**full['config'])
config_b = configs.pretrain.Config(**minified['config'])

dump = np.load({dump!r})
windows = []
for i, start in zip((0, 3, 5), (0, 700, 1500)):
    x = dump[i].copy()
    transforms.interpolate_NaNs_(x)
    x = transforms.resample(x, int(config_a.sampling_frequency / 500 * x.shape[0]))
    transforms.normalize_(x, mean_std=(ptbxl_mean, ptbxl_std))
    x.clip(-5, 5, out=x)
    x = x[:, [ptbxl_leads.index(c.upper()) for c in config_a.channels]]
    windows.append(x[start:start + config_a.channel_size].T.astype(np.float16))
x16 = np.stack(windows)
x = torch.from_numpy(x16).float()
golden = {{'x': x16}}


def target_encoder(chkpt, config):  # as finetune.py extracts it, without the classifier
    enc = VisionTransformer(config, keep_registers=False, use_sdp_kernel=False)
    state = {{k.removeprefix('target_encoder.'): v for k, v in chkpt['model'].items()
             if k.startswith('target_encoder.')}}
    enc.load_state_dict(state, strict=True)
    return enc.eval()


with torch.no_grad():
    for name, chkpt, config in (('a', full, config_a), ('b', minified, config_b)):
        tokens = target_encoder(chkpt, config)(x)
        if name == 'b':  # run a's tokens are step/target_tokens below (the same module on the same input)
            golden[name + '/tokens'] = tokens.numpy()
        golden[name + '/feature'] = tokens.mean(dim=1).numpy()

np.random.seed(12345)
collate = MaskCollator(patch_size=config_a.patch_size, min_block_size=config_a.min_block_size,
                       min_keep_ratio=config_a.min_keep_ratio, max_keep_ratio=config_a.max_keep_ratio)
_, mask_encoder, mask_predictor = collate(list(x))
golden['mask_encoder'] = mask_encoder.numpy()
golden['mask_predictor'] = mask_predictor.numpy()

jepa = JEPA(config_a, momentum_schedule=itertools.repeat(1.0), use_sdp_kernel=False)
jepa.load_state_dict(full['model'], strict=True)
captured = {{}}
for module_name in ('target_encoder', 'encoder', 'predictor'):
    getattr(jepa, module_name).register_forward_hook(
        lambda mod, inp, out, module_name=module_name: captured.__setitem__(module_name, out.detach().clone()))
loss = jepa(x, mask_encoder, mask_predictor)
loss.backward()
golden['step/target_tokens'] = captured['target_encoder'].numpy()
golden['step/context_tokens'] = captured['encoder'].numpy()
golden['step/prediction'] = captured['predictor'].numpy()
golden['step/loss'] = np.float64(loss.item())
for k, p in jepa.named_parameters():
    if p.grad is not None:
        golden['grad/' + k] = p.grad.numpy()
np.savez_compressed({npz!r}, **golden)
print('loss', loss.item(), 'features a', golden['a/feature'].shape, 'b', golden['b/feature'].shape)
"""


def write_dump(path: Path, n: int, seed: int) -> None:
    """``n`` simulated 10 s 12-lead records at 500 Hz in mV, PTB-XL lead order, float16 [n, 5000, 12]."""
    from modalities.ecg.simulate import simulate_subject, subject_parameters

    data = np.stack([simulate_subject(subject_parameters(seed, i), 10.0, 500) for i in range(n)])
    np.save(path, data.astype(np.float16))


def run_reference(code: str, cwd: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    subprocess.run([sys.executable, "-c", code], cwd=str(cwd), env=env, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, type=Path, help="the authors' ECG-JEPA checkout")
    p.add_argument("--records", type=int, default=8)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--out", type=Path, default=GOLDEN)
    args = p.parse_args()
    ref = str(args.reference.expanduser().resolve())
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="ecg_jepa_golden.") as tmp:
        tmp = Path(tmp)
        dump = tmp / "ptb-xl.npy"
        write_dump(dump, args.records, args.seed)
        chkpts = {}
        for name, cfg in RUNS.items():
            config = tmp / f"run_{name}.yaml"
            config.write_text(yaml.safe_dump(cfg, sort_keys=False))  # their loader: yaml.safe_load
            out = tmp / f"run_{name}"
            run_reference(_PRETRAIN.format(seed=args.seed, ref=ref, dump=str(dump), out=str(out), config=str(config)),
                          cwd=Path(ref))  # their logging.ini is read from the working directory
            chkpts[name] = out / "chkpt_30.pt"
        run_reference(_MINIFY.format(seed=args.seed, ref=ref, chkpt=str(chkpts["b"])), cwd=tmp)  # writes to cwd
        chkpt_a, chkpt_b = args.out / "ecg_jepa_a.pt", args.out / "ecg_jepa_b.min.pt"
        chkpt_a.write_bytes(chkpts["a"].read_bytes())
        chkpt_b.write_bytes((tmp / "chkpt_30.min.pt").read_bytes())
        npz = args.out / "ecg_jepa.npz"
        run_reference(_OUTPUTS.format(seed=args.seed, ref=ref, chkpt_a=str(chkpt_a), chkpt_b=str(chkpt_b),
                                      dump=str(dump), npz=str(npz)), cwd=tmp)
    for f in (chkpt_a, chkpt_b, npz):
        print(f"wrote {f} ({f.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
