"""``python -m pretrain``: list, pretrain, resume, evaluate, finetune, denoise, convert.

Every failure a person can fix (a missing file, a corrupt record, a bad option) ends with one line on stderr
that names the file or option and what is wrong, and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import models
import modalities
from pretrain import config as config_mod
from pretrain import objectives

RUN_DIR_ENV = "MODALITIES_RUN_DIR"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise config_mod.ConfigError(f"{self.prog}: {message}")


def _listing() -> str:
    lines = ["usage: python -m pretrain <modality> [--data DIR] [options] | evaluate RUN_DIR [--reference CLEAN] "
             "[--probe-labels FILE] | finetune RUN_DIR --data PATH --target NAME | denoise RUN_DIR --data IN --out OUT | "
             "convert SOURCE CHECKPOINT --out DIR",
             "", "modalities:"]
    for n in modalities.names():
        try:
            mod = modalities.get(n)
        except modalities.MissingExtra:
            lines.append(f"  {n:14s} (not installed: pip install 'modalities[{modalities.extra(n)}]')")
            continue
        named = config_mod.named_recipes(mod.recipe)
        lines.append(f"  {n:14s} {mod.description}" + (f" (--recipe {' | '.join(named)})" if named else ""))
    lines += ["", "objectives:"]
    for n in objectives.names():
        try:
            cls = objectives.get(n)
        except ImportError:  # serves a modality whose extra is not installed
            continue
        lines.append(f"  {n:14s} {(cls.__doc__ or '').strip().splitlines()[0]}")
    lines += ["", "encoders:"]
    for n in models.list_models():
        lines.append(f"  {n:14s} {models.describe(n)}")
    return "\n".join(lines)


def _train_parser(modality: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m pretrain {modality}", description=f"Pretrain an encoder on {modality} data.")
    p.add_argument("--data", help="folder of records (searched recursively) or a single record; default: embedded data")
    p.add_argument("--objective", help="objective name (default: the recipe's)")
    p.add_argument("--recipe", help="a named recipe that sets several options together, merged over the modality's "
                                    "recipe (python -m pretrain lists them; e.g. ct --recipe per_image)")
    p.add_argument("--config", help="YAML file merged over the recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option, e.g. --set optim.lr=3e-4 --set model.name=vit1d_s")
    p.add_argument("--out", help="run folder (default runs/<modality>/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--devices", help="number of devices (processes) per node, or 'auto'")
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--accelerator", choices=["auto", "cpu", "cuda", "gpu", "mps"])
    p.add_argument("--precision", help="32-true | bf16-mixed | 16-mixed")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-eval", action="store_true", help="skip probes and report.md after training")
    _probe_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _probe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--probe-labels", metavar="FILE",
                   help="probe the encoder on your own labels: a CSV with a record-id and a label column, 'events' "
                        "(the records' annotations) or 'points' (per-point label files); also --set "
                        "data.probe_target=COLUMN")
    p.add_argument("--probe-data", metavar="PATH", help="labelled data for the modality's built-in probes "
                                                         "(default: data shipped in installed packages or simulated)")


def _probe_flags(args: argparse.Namespace) -> dict:
    data: dict = {}
    if getattr(args, "probe_labels", None):
        labels = args.probe_labels
        data["probe_labels"] = str(Path(labels).expanduser().resolve()) if Path(labels).expanduser().exists() else labels
    if getattr(args, "probe_data", None):
        data["probe_data"] = str(Path(args.probe_data).expanduser().resolve())
    return {"data": data} if data else {}


def _flags(args: argparse.Namespace) -> dict:
    train: dict = {}
    if args.max_steps is not None:
        train["max_steps"] = args.max_steps
    if args.batch_size is not None:
        train["batch_size"] = args.batch_size
    if args.devices is not None:
        train["devices"] = "auto" if args.devices == "auto" else _int_option("--devices", args.devices)
    if args.num_nodes is not None:
        train["num_nodes"] = args.num_nodes
    if args.accelerator is not None:
        train["accelerator"] = "cuda" if args.accelerator == "gpu" else args.accelerator
    if args.precision is not None:
        train["precision"] = args.precision
    if args.seed is not None:
        train["seed"] = args.seed
    if args.no_eval:
        train["evaluate"] = False
    return config_mod.merge({"train": train} if train else {}, _probe_flags(args))


def _int_option(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise config_mod.ConfigError(f"{name}: expected an integer or 'auto', got {value!r}") from None


def run_pretrain(modality_name: str, argv: list[str]) -> int:
    from pretrain.loop import train

    args = _train_parser(modality_name).parse_args(argv)
    if modality_name not in modalities.names():
        raise config_mod.ConfigError(f"unknown modality {modality_name!r}; known: {', '.join(modalities.names())}")
    modality = modalities.get(modality_name)
    extra = _flags(args)
    overrides = list(args.overrides)
    if not args.resume:
        if args.data:
            extra = config_mod.merge(extra, {"data": {"path": args.data}})
        if args.objective:
            overrides.insert(0, f"objective.name={args.objective}")
    cfg = config_mod.resolve_run(modality.recipe, modality_name, resume_dir=args.resume, user_config=args.config,
                                 overrides=overrides, extra=extra, demo=not args.data, named=args.recipe)
    run_dir = Path(args.resume or args.out or os.environ.get(RUN_DIR_ENV)
                   or Path("runs") / modality_name / time.strftime("%Y%m%d-%H%M%S"))
    resume = bool(args.resume)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # processes started by the DDP launcher write into the same folder
    result = train(cfg, run_dir, resume=resume, progress=not args.quiet)
    if result.rank != 0:
        return 0
    print(f"run folder: {run_dir}\nencoder:    {result.encoder_dir}  (models.load_pretrained)")
    from pretrain.denoise import write_run_outputs

    written = write_run_outputs(run_dir, progress=not args.quiet)  # denoisers: the denoised --data, in its format
    if written:
        print(f"denoised:   {written}")
    if cfg.train.evaluate:
        from pretrain.evaluate import evaluate_run

        report = evaluate_run(run_dir)
        print(f"report:     {report}")
    return 0


def run_evaluate(argv: list[str]) -> int:
    from pretrain.evaluate import evaluate_run

    p = _Parser(prog="python -m pretrain evaluate", description="RankMe, probes and report.md for a run.")
    p.add_argument("run_dir")
    p.add_argument("--data", help="data to evaluate on (default: the run's)")
    p.add_argument("--reference", metavar="CLEAN",
                   help="denoisers: clean reference file or folder matching --data (the run's data by default); "
                        "PSNR / SSIM of the denoised output and of the noisy input against it")
    _probe_options(p)
    args = p.parse_args(argv)
    report = evaluate_run(Path(args.run_dir), data=args.data, reference=args.reference,
                          probe_labels=_probe_flags(args).get("data", {}).get("probe_labels"),
                          probe_data=_probe_flags(args).get("data", {}).get("probe_data"))
    print(f"report: {report}")
    return 0


def run_denoise(argv: list[str]) -> int:
    from pretrain.denoise import denoise_files

    p = _Parser(prog="python -m pretrain denoise",
                description="Denoise files with a trained denoiser run (CT Filter2Noise / ZS-N2N, SAR MERLIN); the "
                            "output keeps each input's format and geometry.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", help="a file or folder in a format the run's modality reads (default: the run's data)")
    p.add_argument("--out", help="output folder (default RUN_DIR/denoised)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    written = denoise_files(Path(args.run_dir), data=args.data, out=args.out, progress=not args.quiet)
    print(f"denoised: {len(written)} file(s) in {Path(args.out) if args.out else Path(args.run_dir) / 'denoised'}")
    return 0


def run_convert(argv: list[str]) -> int:
    from models.converters import ConversionError, convert, list_sources

    sources = list_sources()
    p = _Parser(prog="python -m pretrain convert",
                description="Convert a reference implementation's checkpoint into an encoder folder that "
                            "load_pretrained, finetune and evaluate use. Sources: "
                            + "; ".join(f"{k}: {v}" for k, v in sources.items()))
    p.add_argument("source", metavar="SOURCE", help=" | ".join(sources))
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--out", required=True, help="encoder folder to write")
    args = p.parse_args(argv)
    try:
        model = convert(args.source, args.checkpoint, args.out)
    except ConversionError as e:
        raise config_mod.ConfigError(str(e)) from None
    n = sum(p.numel() for p in model.parameters())
    print(f"converted: {args.checkpoint} -> {args.out} ({model.config['name']}, {n / 1e6:.2f}M parameters)")
    return 0


def run_finetune(argv: list[str]) -> int:
    from pretrain.finetune import MODES, finetune

    p = _Parser(prog="python -m pretrain finetune",
                description="Fine-tune a pretrained encoder on labels, against the same architecture from scratch.")
    p.add_argument("encoder", metavar="RUN_OR_ENCODER_DIR")
    p.add_argument("--data", required=True, help="labelled data (molecules: a CSV / SDF with property columns / tags)")
    p.add_argument("--target", dest="targets", action="append", default=[],
                   help="label column / property / annotation class to predict (repeat; 'T1+T2' joins labels)")
    p.add_argument("--labels", help="signals: 'events' (the records' annotations) or a per-record label CSV; "
                                    "LiDAR: 'points' (per-point .label files, --task segmentation)")
    p.add_argument("--task", default=None, help="regression | binary | multiclass | multilabel | segmentation "
                                                "(default: multiclass for --labels events, segmentation for "
                                                "--labels points, else regression)")
    p.add_argument("--mode", default="full,scratch", help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--label-fractions", default="1.0", help="comma-separated fractions of the training labels")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", help="output folder (default RUN_DIR/finetune/<timestamp>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        fractions = [float(f) for f in args.label_fractions.split(",") if f.strip()]
    except ValueError:
        raise config_mod.ConfigError(f"--label-fractions: expected numbers, got {args.label_fractions!r}") from None
    if args.seeds < 1:
        raise config_mod.ConfigError(f"--seeds: must be >= 1, got {args.seeds}")
    result = finetune(args.encoder, args.data, args.targets, task=args.task,
                      modes=[m.strip() for m in args.mode.split(",") if m.strip()], label_fractions=fractions,
                      seeds=args.seeds, out_dir=args.out, overrides=args.overrides, progress=not args.quiet,
                      labels=args.labels)
    if result.report is not None:
        print(result.report.read_text())
        print(f"report: {result.report}")
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    from pretrain.loop import TrainingDiverged

    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = _one_line_warning
    try:
        if not argv or argv[0] in ("-h", "--help", "list"):
            print(_listing())
            return 0
        if argv[0] == "evaluate":
            return run_evaluate(argv[1:])
        if argv[0] == "finetune":
            return run_finetune(argv[1:])
        if argv[0] == "denoise":
            return run_denoise(argv[1:])
        if argv[0] == "convert":
            return run_convert(argv[1:])
        if argv[0].startswith("-"):
            raise config_mod.ConfigError(f"{argv[0]}: expected a modality first; known: {', '.join(modalities.names())}")
        return run_pretrain(argv[0], argv[1:])
    except (config_mod.ConfigError, modalities.DataError, modalities.MissingExtra, TrainingDiverged,
            FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        return 130
