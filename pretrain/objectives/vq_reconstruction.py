"""Vector-quantised spectral reconstruction (EEGFormer, Chen et al. 2024; VQ-VAE, van den Oord et al. 2017).

The encoder turns every channel's time segments into tokens, the codebook quantises them and a shallow decoder
reconstructs each segment's log-magnitude spectrum ``s`` from the quantised tokens alone:

    loss = mean_{b, c, n, f} (D(z_q)_{b,c,n,f} - s_{b,c,n,f})^2  +  beta * mean_{b, c, n} ||z - sg(e_k)||^2

with ``z`` the unit-norm code-space projection of a token, ``e_k`` its nearest code and ``z_q = z + sg(e_k - z)``
(straight-through gradient). The codebook follows the EMA of its assigned tokens and restarts dead codes
(:class:`models.eegformer.VectorQuantizer`), which replaces the codebook term ``||sg(z) - e||^2`` of the
original VQ-VAE loss. Logged scalars: ``recon``, ``commitment``, ``codebook_usage`` (fraction of codes used by
the batch), ``perplexity`` (``exp`` of the entropy of the batch's code histogram; 1 = collapse onto one code) and
``dead_codes`` (codes restarted at this step).

>>> import models
>>> obj = VQReconstruction(models.create("eegformer_xs"))
>>> out = obj({"signal": torch.randn(4, 3, 512)})
>>> sorted(out)
['codebook_usage', 'commitment', 'dead_codes', 'loss', 'perplexity', 'recon']
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.eegformer import SpectralDecoder, codebook_perplexity
from pretrain.config import ConfigError
from pretrain.objectives.base import Objective, batch_input


class VQReconstruction(Objective):
    """Reconstruct token spectra from vector-quantised tokens (the EEGFormer objective).

    Args:
        encoder: an encoder with ``channel_tokens``, ``spectra`` and a ``quantizer``
            (:class:`models.eegformer.EEGFormer`).
        beta: weight of the commitment loss (0.25, as in VQ-VAE).
        decoder_dim, decoder_depth, decoder_heads: the shallow :class:`models.eegformer.SpectralDecoder`.
    """

    name = "vq_reconstruction"
    views = 0
    sample_kinds = ("signal",)

    def __init__(self, encoder: nn.Module, beta: float = 0.25, decoder_dim: int | None = None,
                 decoder_depth: int = 1, decoder_heads: int = 4) -> None:
        super().__init__(encoder)
        for attr in ("channel_tokens", "spectra", "quantizer"):
            if not hasattr(encoder, attr):
                raise ConfigError(f"objective vq_reconstruction: encoder {type(encoder).__name__} has no {attr!r} "
                                  f"(use an eegformer_* encoder)")
        if beta < 0:
            raise ConfigError(f"objective.beta: must be >= 0, got {beta}")
        dim = int(decoder_dim or encoder.embed_dim)
        if decoder_depth < 0 or decoder_heads < 1 or dim % decoder_heads:
            raise ConfigError(f"objective.decoder_*: width {dim} must be divisible by heads {decoder_heads}; "
                              f"depth {decoder_depth} >= 0")
        self.beta = float(beta)
        q = encoder.quantizer
        self.decoder = SpectralDecoder(q.code_dim, encoder.n_freqs, dim=dim, depth=int(decoder_depth),
                                       num_heads=int(decoder_heads))

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch_input(batch)
        q = self.encoder.quantizer
        h = self.encoder.channel_tokens(x)  # [B, C, N, D]
        z_q, codes, commitment, z = q(h)
        target = self.encoder.spectra(x).flatten(0, 1).float()  # [B * C, N, F]
        recon = self.decoder(z_q.flatten(0, 1).to(h.dtype)).float()
        recon_loss = F.mse_loss(recon, target)
        loss = recon_loss + self.beta * commitment
        dead = 0
        if self.training:
            dead = q.update(z, codes)
        usage, perplexity = codebook_perplexity(codes, q.codebook_size)
        return {"loss": loss, "recon": recon_loss.detach(), "commitment": commitment.detach(),
                "codebook_usage": torch.tensor(usage), "perplexity": torch.tensor(perplexity),
                "dead_codes": torch.tensor(float(dead))}
