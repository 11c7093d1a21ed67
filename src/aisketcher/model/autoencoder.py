"""The paper's CNN autoencoder over the 128x128 binarized raster X_r (paper Fig. 1c).

Encoder: 6 convolutions with 2x2 kernels, depths (4, 4, 8, 8, 8, 8), strides alternating 2 and 1,
ReLU, then a fully connected layer with tanh giving z_r. Decoder: the mirror image, a fully connected
layer then 6 (de)convolutions whose input depths are (8, 8, 8, 8, 4, 4), down to one channel.
Sketch-pix2seq uses the same encoder in place of the RNN encoder.

Two choices the paper leaves open decide whether this network learns at all (docs/measurements.md,
Training). Initialisation: at PyTorch's default (or Glorot's) the ReLU stack shrinks the
input-dependent part of its features at every layer, so z_r starts the same for every raster and
saturates; He initialisation with zero biases keeps it. Output: behind a sigmoid, the squared error
saturates at a near-blank image whose pixels no longer get a gradient; the decoder's linear output,
squared error taken on it, does not. Only He and linear (the default here) learn an
input-dependent z_r.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aisketcher.model.fused.conv import run_layers

# Activations and kernels are kept channels-last: with 1-8 channels, oneDNN's convolutions run
# faster on the CPU that way than in the default layout, with the same values
# (docs/measurements.md).
LAYOUT = torch.channels_last
ENCODER_DEPTHS = (4, 4, 8, 8, 8, 8)
DECODER_DEPTHS = (8, 8, 8, 8, 4, 4)
STRIDES = (2, 1, 2, 1, 2, 1)


def he_init_(module: nn.Module) -> None:
    """He (Kaiming) normal weights for ReLU and zero biases in every layer of `module`."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)


def _conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    """A 2x2 convolution; stride 1 keeps the size by padding right and bottom (TF's "SAME")."""
    conv = nn.Conv2d(c_in, c_out, 2, stride=stride)
    return [conv] if stride == 2 else [nn.ZeroPad2d((0, 1, 0, 1)), conv]


class RasterEncoder(nn.Module):
    """X_r (B, 1, S, S) -> (B, out_size) in (-1, 1)."""

    def __init__(self, out_size: int, raster_size: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for depth, stride in zip(ENCODER_DEPTHS, STRIDES, strict=True):
            layers += [*_conv(channels, depth, stride), nn.ReLU()]
            channels = depth
        self.convs = nn.Sequential(*layers)
        self.side = raster_size // 2 ** STRIDES.count(2)
        self.fc = nn.Linear(channels * self.side**2, out_size)
        self.convs.to(memory_format=LAYOUT)
        he_init_(self)

    def forward(self, raster: torch.Tensor) -> torch.Tensor:
        features = run_layers(self.convs, raster.contiguous(memory_format=LAYOUT))
        return torch.tanh(self.fc(features.flatten(1)))


class RasterDecoder(nn.Module):
    """z_r (B, z) -> the linear output (B, 1, S, S) of the last layer."""

    def __init__(self, z_size: int, raster_size: int = 128) -> None:
        super().__init__()
        self.side = raster_size // 2 ** STRIDES.count(2)
        self.fc = nn.Linear(z_size, DECODER_DEPTHS[0] * self.side**2)
        layers: list[nn.Module] = []
        outs = (*DECODER_DEPTHS[1:], 1)
        for i, (c_in, c_out, stride) in enumerate(
            zip(DECODER_DEPTHS, outs, STRIDES[::-1], strict=True)
        ):
            if stride == 2:
                layers.append(nn.ConvTranspose2d(c_in, c_out, 2, stride=2))
            else:
                layers.extend(_conv(c_in, c_out, 1))
            if i < len(outs) - 1:
                layers.append(nn.ReLU())
        self.deconvs = nn.Sequential(*layers).to(memory_format=LAYOUT)
        he_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(z)).view(-1, DECODER_DEPTHS[0], self.side, self.side)
        return run_layers(self.deconvs, h.contiguous(memory_format=LAYOUT))


OUTPUTS = ("linear", "sigmoid")


class RasterAutoencoder(nn.Module):
    def __init__(self, z_size: int = 128, raster_size: int = 128, output: str = "linear") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.encoder = RasterEncoder(z_size, raster_size)
        self.decoder = RasterDecoder(z_size, raster_size)
        self.output = output

    def reset_parameters(self) -> None:
        he_init_(self)

    def forward(self, raster: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns z_r and the reconstruction X_r' (the linear output, or its sigmoid); an image
        of it is X_r' clamped to [0, 1]."""
        z = self.encoder(raster)
        out = self.decoder(z)
        return z, out if self.output == "linear" else torch.sigmoid(out)


def reconstruction_error(raster: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Summed squared error between X_r and X_r' per image, averaged over the batch (one fused
    pass each way, a third of subtract, square and sum: docs/measurements.md)."""
    return F.mse_loss(recon, raster, reduction="sum") / recon.shape[0]
