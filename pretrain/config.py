"""Run configuration: the modality's YAML recipe (and a named recipe over it, ``--recipe NAME``), then a user YAML,
then ``--set key=value`` overrides, validated into typed sections and written fully resolved to ``<run>/config.yaml``.

Sections, each typed where it is declared: ``data`` (the modality's :class:`~modalities.options.DataOptions`
dataclass, passed to its dataset builder), ``model`` (encoder name and the keyword arguments of its constructor,
``models.options``), ``objective`` (objective name and its constructor's keyword arguments, checked by
``pretrain.objectives.create``), ``optim`` and ``train`` (the dataclasses below). A misspelt option or a value of the
wrong type ends in one line naming it before any data is read.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

import models
import modalities
from modalities.options import DataOptions, OptionError, check_options


class ConfigError(OptionError):
    """A bad option or hyper-parameter. The message is one line naming the option and what is wrong."""


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay of the learning rate; weight decay follows a cosine ramp.

    ``schedule: one_cycle`` is PyTorch's ``OneCycleLR`` (the schedule of reference code such as Filter2Noise's): a
    cosine warm-up from ``lr * warmup_start`` to ``lr`` over ``warmup_steps``, a cosine anneal to ``min_lr`` at the
    last step, and, with ``beta1_cycle: [low, high]``, Adam's beta1 going from ``high`` to ``low`` at the peak and
    back. ``decay_all`` decays biases and norm weights too (a plain ``AdamW(model.parameters())``).
    """

    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_steps: int = 100
    weight_decay: float = 0.01
    weight_decay_end: float = 0.1
    betas: tuple[float, ...] = (0.9, 0.99)
    eps: float = 1e-6
    clip_grad: float = 0.0  # max global gradient norm; 0 disables clipping
    accumulate: int = 1  # micro-batches per optimiser step
    schedule: str = "cosine"  # cosine | one_cycle
    warmup_start: float = 0.04  # one_cycle: the first step's lr as a fraction of lr (OneCycleLR: 1 / 25)
    beta1_cycle: Any = None  # one_cycle: [beta1 at the peak, beta1 at both ends] (OneCycleLR: [0.85, 0.95])
    decay_all: bool = False  # weight-decay biases, norms and positions as well

    def validate(self) -> None:
        _positive("optim.lr", self.lr)
        _non_negative("optim.min_lr", self.min_lr)
        _non_negative("optim.warmup_steps", self.warmup_steps)
        _non_negative("optim.weight_decay", self.weight_decay)
        _non_negative("optim.weight_decay_end", self.weight_decay_end)
        _non_negative("optim.clip_grad", self.clip_grad)
        _positive("optim.eps", self.eps)
        if self.accumulate < 1:
            raise ConfigError(f"optim.accumulate: must be >= 1, got {self.accumulate}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas: need two values in [0, 1), got {list(self.betas)}")
        if self.schedule not in ("cosine", "one_cycle"):
            raise ConfigError(f"optim.schedule: must be cosine or one_cycle, got {self.schedule!r}")
        if not 0.0 < self.warmup_start <= 1.0:
            raise ConfigError(f"optim.warmup_start: must be in (0, 1], got {self.warmup_start}")
        if self.beta1_cycle is not None:
            cycle = list(self.beta1_cycle) if isinstance(self.beta1_cycle, (list, tuple)) else []
            if self.schedule != "one_cycle" or len(cycle) != 2 or not all(0.0 <= b < 1.0 for b in cycle):
                raise ConfigError(f"optim.beta1_cycle: needs schedule one_cycle and two values in [0, 1), got "
                                  f"{self.beta1_cycle!r}")


@dataclass
class TrainConfig:
    """Schedule, batching, devices and bookkeeping of one run."""

    max_steps: int = 300
    batch_size: int = 32  # global batch of one micro-step, split across all processes
    micro_batch: Any = "auto"  # samples per forward/backward on each process: auto (fitted to memory) or an int
    memory_budget_gb: float = 0.0  # peak memory one process's step may add; 0 = from the device (pretrain/micro.py)
    num_workers: int = 0
    seed: int = 0
    accelerator: str = "auto"  # cpu | cuda | auto
    devices: Any = 1  # int or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp | ...
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed
    threads: int = 0  # intra-op CPU threads per process; 0 = cores / local processes
    log_every: int = 10
    rankme_every: int = 50
    rankme_samples: int = 256
    ckpt_every: int = 100
    evaluate: bool = True  # run the probes and write report.md after training

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "log_every", "rankme_every", "ckpt_every", "num_nodes"):
            _positive(f"train.{name}", getattr(self, name))
        for name in ("num_workers", "threads", "rankme_samples"):
            _non_negative(f"train.{name}", getattr(self, name))
        if self.precision not in ("32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "64-true"):
            raise ConfigError(f"train.precision: unknown precision {self.precision!r}; use 32-true, bf16-mixed or 16-mixed")
        _non_negative("train.memory_budget_gb", self.memory_budget_gb)
        if not (self.micro_batch == "auto" or (isinstance(self.micro_batch, int) and not isinstance(self.micro_batch, bool)
                                               and self.micro_batch >= 1)):
            raise ConfigError(f"train.micro_batch: must be a positive integer or 'auto', got {self.micro_batch!r}")
        if not (self.devices == "auto" or (isinstance(self.devices, int) and self.devices >= 1)):
            raise ConfigError(f"train.devices: must be a positive integer or 'auto', got {self.devices!r}")


@dataclass
class RunConfig:
    modality: str
    data: DataOptions = field(default_factory=DataOptions)
    model: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:  # a plain mapping of data options (Python callers) becomes the typed section
        if not isinstance(self.data, DataOptions):
            try:
                self.data = data_options(self.modality, self.data)
            except OptionError as e:
                raise ConfigError(str(e)) from None

    def validate(self) -> None:
        if not self.model.get("name"):
            raise ConfigError("model.name: missing")
        if not self.objective.get("name"):
            raise ConfigError("objective.name: missing")
        self.optim.validate()
        self.train.validate()
        if self.train.batch_size < 2:
            raise ConfigError(f"train.batch_size: must be >= 2, got {self.train.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["data"] = self.data.to_dict()
        d["optim"] = dataclasses.asdict(self.optim)
        d["optim"]["betas"] = list(self.optim.betas)
        d["train"] = dataclasses.asdict(self.train)
        return d


_SECTIONS = {"optim": OptimConfig, "train": TrainConfig}
_FREE_SECTIONS = ("data", "model", "objective")


def _positive(name: str, v: Any) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
        raise ConfigError(f"{name}: must be > 0, got {v!r}")


def _non_negative(name: str, v: Any) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise ConfigError(f"{name}: must be >= 0, got {v!r}")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``5e-3`` (no dot) as a string; configs mean a number, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$|^[-+]?[0-9][0-9_]*\.[0-9_]*$|^[-+]?\.[0-9_]+$"
               r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = _yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Recursive dict merge; ``override`` wins. Changing ``model.name``/``objective.name`` drops the
    base section's other options, since they belong to the previous choice."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            if "name" in v and v["name"] != out[k].get("name") and k in ("model", "objective"):
                out[k] = dict(v)
            else:
                out[k] = merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = v
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], 0.0003); the value is read as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. optim.lr=3e-4")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {item}: KEY must be SECTION.NAME, e.g. optim.lr or model.name")
    try:
        value = _yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(tree: dict[str, Any], items: list[str]) -> dict[str, Any]:
    tree = dict(tree)
    for item in items:
        parts, value = parse_override(item)
        if parts[0] not in _SECTIONS and parts[0] not in _FREE_SECTIONS:
            raise ConfigError(f"--set {item}: unknown section {parts[0]!r}; sections: data, model, objective, optim, train")
        nested: Any = value
        for p in reversed(parts):
            nested = {p: nested}
        if parts[1] == "name" and parts[0] in ("model", "objective") and len(parts) == 2:
            tree[parts[0]] = {"name": value}
        else:
            tree = merge(tree, nested)
    return tree


def _build_section(cls: type, values: Mapping[str, Any], section: str) -> Any:
    """``cls`` (a dataclass) from ``values``, each checked against its field's type hint."""
    hints = typing.get_type_hints(cls)
    return cls(**check_options(values, {f.name: hints[f.name] for f in dataclasses.fields(cls)}, section))


def data_options(modality: str, values: Mapping[str, Any]) -> DataOptions:
    """The ``data`` section of ``modality``, typed by the modality's options dataclass."""
    if modality not in modalities.names():
        raise ConfigError(f"modality: unknown modality {modality!r}; known: {', '.join(modalities.names())}")
    return modalities.get(modality).options.of(values)


def check_model(section: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model`` section checked against the encoder's constructor (``models.options``)."""
    name = section.get("name")
    if name not in models.list_models():
        raise ConfigError(f"model.name: unknown encoder {name!r}; known: {', '.join(models.list_models())}")
    rest = {k: v for k, v in section.items() if k != "name"}
    return {"name": name, **check_options(rest, models.options(name), "model", owner=name)}


def build_config(tree: Mapping[str, Any]) -> RunConfig:
    """Validate a merged config tree into a :class:`RunConfig`."""
    known = set(_SECTIONS) | set(_FREE_SECTIONS) | {"modality"}
    for k in tree:
        if k not in known:
            raise ConfigError(f"{k}: unknown config section; sections: {', '.join(sorted(known))}")
    for s in (*_SECTIONS, *_FREE_SECTIONS):
        if s in tree and tree[s] is not None and not isinstance(tree[s], Mapping):
            raise ConfigError(f"{s}: must be a mapping of options, got {tree[s]!r}")
    if not (tree.get("model") or {}).get("name"):
        raise ConfigError("model.name: missing")
    modality = str(tree.get("modality", ""))
    try:
        cfg = RunConfig(
            modality=modality,
            data=tree.get("data") or {},  # typed by RunConfig
            model=check_model(tree.get("model") or {}),
            objective=dict(tree.get("objective") or {}),
            optim=_build_section(OptimConfig, tree.get("optim") or {}, "optim"),
            train=_build_section(TrainConfig, tree.get("train") or {}, "train"),
        )
    except ConfigError:
        raise
    except OptionError as e:
        raise ConfigError(str(e)) from None
    cfg.validate()
    return cfg


def named_recipes(recipe: str | Path) -> list[str]:
    """The modality's named recipes: ``recipes/<name>.yaml`` beside its recipe, each a set of options that go
    together (``--recipe NAME``), merged over the recipe."""
    folder = Path(recipe).parent / "recipes"
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _named_recipe(recipe: str | Path, name: str) -> dict[str, Any]:
    known = named_recipes(recipe)
    if name not in known:
        raise ConfigError(f"--recipe {name}: not a named recipe of {Path(recipe).parent.name} "
                          f"(named recipes: {', '.join(known) or 'none'})")
    tree = load_yaml(Path(recipe).parent / "recipes" / f"{name}.yaml")
    bad = [k for k in tree if k not in (*_SECTIONS, *_FREE_SECTIONS)]
    if bad:
        raise ConfigError(f"{Path(recipe).parent / 'recipes' / (name + '.yaml')}: {bad[0]!r} is not a section "
                          "(sections: data, model, objective, optim, train)")
    return tree


def resolve(recipe: str | Path, user_config: str | Path | None = None, overrides: list[str] | None = None,
            extra: Mapping[str, Any] | None = None, demo: bool = False, named: str | None = None,
            layers: Sequence[Mapping[str, Any]] = ()) -> RunConfig:
    """Recipe (plus its ``demo`` section when ``demo``, then the named recipe ``recipes/<named>.yaml``) -> ``layers``
    (e.g. fine-tuning's: the pretrained encoder's preprocessing, the recipe's ``finetune`` section, the task) -> user
    YAML -> ``--set`` overrides -> ``extra`` (the CLI's own flags), validated. A named recipe is a way of running the
    modality that changes several options together (CT ``per_image``: the paper's zero-shot recipe for one slice;
    ECG ``jepa_short``: a 300-step run that beats its random encoder)."""
    tree = load_yaml(recipe)
    tree.pop("finetune", None)  # the fine-tuning defaults (pretrain.finetune), not part of a pretraining run
    demo_tree = tree.pop("demo", None) or {}
    if demo:
        tree = merge(tree, demo_tree)
    if named is not None:
        tree = merge(tree, _named_recipe(recipe, named))
    for layer in layers:
        tree = merge(tree, layer)
    if user_config:
        tree = merge(tree, load_yaml(user_config))
    tree = apply_overrides(tree, list(overrides or []))
    if extra:
        tree = merge(tree, extra)
    return build_config(tree)


def resolve_run(recipe: str | Path, modality: str, resume_dir: str | Path | None = None,
                user_config: str | Path | None = None, overrides: list[str] | None = None,
                extra: Mapping[str, Any] | None = None, demo: bool = False, named: str | None = None
                ) -> RunConfig:
    """The config of a run of ``modality``: a fresh one from its recipe (:func:`resolve`), or, with ``resume_dir``,
    the run's own ``config.yaml`` with the same ``--set`` overrides and flags on top (``user_config``, ``demo`` and
    ``named`` belong to the fresh run and are refused on a resume). Validated once, never changed after."""
    if resume_dir is None:
        cfg = resolve(recipe, user_config, overrides, extra, demo=demo, named=named)
        if cfg.modality != modality:
            raise ConfigError(f"{recipe}: a recipe of {cfg.modality!r}, not {modality!r}")
        return cfg
    run_dir = Path(resume_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.yaml there (not a run folder)")
    for flag, given in (("--config", user_config), ("--recipe", named)):
        if given:
            raise ConfigError(f"--resume {run_dir}: {flag} applies to a new run (the run's config.yaml is used)")
    tree = load_yaml(path)
    if tree.get("modality") != modality:
        raise ConfigError(f"--resume {run_dir}: that run is {tree.get('modality')!r}, not {modality!r}")
    tree = apply_overrides(tree, list(overrides or []))
    return build_config(merge(tree, extra or {}))


def save(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def load_run_config(path: str | Path) -> RunConfig:
    return build_config(load_yaml(path))
