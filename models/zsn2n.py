"""The small noise-predicting network of Zero-Shot Noise2Noise (ZS-N2N).

Mansour and Heckel, "Zero-Shot Noise2Noise: Efficient Image Denoising without any Data", CVPR 2023.

Two 3 x 3 convolutions of ``channels`` (paper: 48) with LeakyReLU(0.2) and a 1 x 1 convolution predict the noise
``n(x)``; the denoised image is ``x - n(x)``. 21.3k parameters with 48 channels.

Units: :meth:`ZSN2NNet.denoise` takes and returns the data's units (HU by default; ``hu_range`` is then given in
the data's units, e.g. the soft-tissue window mapped into [0, 1] for min-max normalised CT, see modalities/ct/units.py);
``forward`` works on ``(x - hu_range[0]) / (hu_range[1] - hu_range[0])``, unclipped. The default range is the soft-tissue window [-160, 240] HU, not the 12-bit range of
:class:`models.bilateral.BilateralDenoiser`: the paper's network and optimiser settings are tuned for noise of about
0.1 on [0, 1] images, and low-dose CT noise (15-40 HU) is 0.04-0.1 of this window but only 0.004-0.01 of 4096 HU.
On CT_small at a simulated I0 of 5e4, 150 steps raise PSNR by 2.6 dB with the window and by 0.2 dB with the
12-bit range (``tests/pretrain/objectives/test_zs_n2n.py``; white noise of 20 HU, 300 steps: 2.0 vs 0.2 dB). The
filter (range kernel learned in the same units) does not depend on the scale this way.

>>> net = ZSN2NNet()
>>> net.denoise(torch.zeros(1, 16, 16)).shape
torch.Size([1, 16, 16])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ZSN2NNet"]


class ZSN2NNet(nn.Module):
    """Args: channels (paper: 48), hu_range (the HU interval mapped to [0, 1], values outside are not clipped).

    Shapes: ``forward``: float[B, 1, H, W] -> float[B, 1, H, W] (the denoised image ``x - n(x)``).
    """

    def __init__(self, channels: int = 48, hu_range: tuple[float, float] | list[float] = (-160.0, 240.0)) -> None:
        super().__init__()
        self.hu_low, self.hu_width = float(hu_range[0]), float(hu_range[1]) - float(hu_range[0])
        if self.hu_width <= 0:
            raise ValueError(f"hu_range must be increasing, got {list(hu_range)}")
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 1, 1),
        )

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted noise n(x), float[B, 1, H, W]."""
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.net(x)

    def normalise(self, hu: torch.Tensor) -> torch.Tensor:
        return (hu - self.hu_low) / self.hu_width

    def to_hu(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.hu_width + self.hu_low

    @torch.no_grad()
    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` float[1, H, W] or float[B, 1, H, W] in HU -> the same shape in HU."""
        x = torch.as_tensor(x, dtype=torch.float32)
        xb = x if x.ndim == 4 else x.unsqueeze(0)
        out = self.to_hu(self(self.normalise(xb)))
        return out if x.ndim == 4 else out[0]

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """float[B, 2]: mean and std of the predicted noise in HU (the network has no other embedding)."""
        n = self.noise(self.normalise(torch.as_tensor(x, dtype=torch.float32))) * self.hu_width
        return torch.stack([n.flatten(1).mean(1), n.flatten(1).std(1)], 1)
