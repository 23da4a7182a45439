"""Labelled probes of frozen encoders and the run report, one concept per module:

- :mod:`~pretrain.evaluate.embedding`: k-NN (cosine) and logistic probes for classes, k-NN mean and ridge regression
  for continuous targets, on a fixed split or cross-validated over contiguous blocks (``ProbeSet.folds``);
- :mod:`~pretrain.evaluate.denoising`: denoisers (CT, SAR) scored against clean references or, without one, by the
  noise level, ENL and the ratio image;
- :mod:`~pretrain.evaluate.segmentation`: per-point linear and k-NN probes, all decoder levels against the last one
  (the MSM protocol);
- :mod:`~pretrain.evaluate.probes`: the encoders compared (the run's and a random one of the same architecture) and
  the one ``{task: probe}`` table that runs a probe set by its task;
- :mod:`~pretrain.evaluate.user`: the user's own data (``--reference`` clean images, ``--probe-labels``);
- :mod:`~pretrain.evaluate.report`: :func:`evaluate_run`, which writes ``report.md`` and ``probes.json``.

The scores themselves (PSNR, SSIM, R^2, balanced accuracy, mIoU) are in :mod:`pretrain.metrics`, the label-free
monitors (RankMe) in :mod:`pretrain.monitors`; both are re-exported here with the probes' public names.
"""

from __future__ import annotations

from pretrain.evaluate.denoising import (denoising_probe, denoising_scores, enl, enl_box_size, ratio_image_stats,
                                         region_std, summarise_denoising)
from pretrain.evaluate.embedding import (KNN_K, KNN_VOTE, KNN_VOTES, blocked_cv_predictions, blocked_cv_scores,
                                         embed_array, knn_accuracy, knn_predict, knn_regression, linear_predict,
                                         linear_probe, ridge_probe, within_group_r)
from pretrain.evaluate.probes import (PROBES, control_encoder, probe_embedding, probe_encoders, random_encoder_like,
                                      run_probes, set_knn_vote)
from pretrain.evaluate.report import evaluate_run
from pretrain.evaluate.segmentation import segmentation_probe
from pretrain.metrics import balanced_accuracy, miou, psnr, r2_score, ssim
from pretrain.monitors import collapsed, embedding_std, rankme

__all__ = ["KNN_K", "KNN_VOTE", "KNN_VOTES", "PROBES", "balanced_accuracy", "blocked_cv_predictions",
           "blocked_cv_scores", "collapsed", "control_encoder", "denoising_probe", "denoising_scores", "embed_array",
           "embedding_std", "enl", "enl_box_size", "evaluate_run", "knn_accuracy", "knn_predict", "knn_regression",
           "linear_predict", "linear_probe", "miou", "probe_embedding", "probe_encoders", "psnr", "r2_score",
           "random_encoder_like", "rankme", "ratio_image_stats", "region_std", "ridge_probe", "run_probes",
           "segmentation_probe", "set_knn_vote", "ssim", "summarise_denoising", "within_group_r"]
