"""RANet (Yang et al., CVPR 2020) for CIFAR, written from the paper's description.

Sub-network 0 runs on the coarsest features; each finer sub-network fuses the dense states of the one below it.
Every module here is small; the whole network is assembled from ``plan.build_plan``.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import RANetConfig
from .plan import BlockPlan, base_channels, build_plan, state_layout


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


_RESIZE = {"matmul": False}


def resize_by_matmul(enabled: bool) -> None:
    """A training-speed switch: ``resize`` as two products with interpolation matrices instead of ``F.interpolate``.

    The values are the same up to rounding; the backward pass is then two matrix products, where interpolate's
    backward scatters with atomic adds. Export and evaluation keep ``F.interpolate`` (the switch is off by default).
    """
    _RESIZE["matmul"] = enabled


@functools.cache
def _interpolation_matrix(n_in: int, n_out: int, device: torch.device) -> Tensor:
    """[n_out, n_in]: row o mixes the two inputs around o * (n_in - 1) / (n_out - 1) (aligned corners)."""
    m = torch.zeros(n_out, n_in)
    for o in range(n_out):
        src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        w = src - i0
        m[o, i0] += 1 - w
        m[o, i1] += w
    return m.to(device)


def resize(x: Tensor, res: int) -> Tensor:
    """Bilinear resize with aligned corners to ``res`` x ``res``; a no-op when already that size."""
    if x.shape[-1] == res and x.shape[-2] == res:
        return x
    if _RESIZE["matmul"]:
        rows = _interpolation_matrix(x.shape[-2], res, x.device)
        cols = _interpolation_matrix(x.shape[-1], res, x.device)
        out = rows @ x @ cols.T
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    return F.interpolate(x, size=(res, res), mode="bilinear", align_corners=True)


class Bottleneck(nn.Module):
    """1x1 conv to min(cin, bn_factor * cout) channels, then 3x3 conv to cout; each with BN and ReLU."""

    def __init__(self, cin: int, cout: int, bn_factor: int, stride: int = 1) -> None:
        super().__init__()
        inner = min(cin, bn_factor * cout)
        self.reduce = conv_bn_relu(cin, inner, 1)
        self.conv = conv_bn_relu(inner, cout, 3, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.reduce(x))


class DenseLayer(nn.Module):
    """Appends ``growth`` new channels to its input."""

    def __init__(self, cin: int, growth: int, bn_factor: int) -> None:
        super().__init__()
        self.unit = Bottleneck(cin, growth, bn_factor)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.unit(x)], dim=1)


class FusionLayer(nn.Module):
    """Appends ``growth`` channels: a few from the coarser state (upsampled), the rest from its own state."""

    def __init__(self, cin: int, cin_low: int, growth: int, compress: float, bn_own: int, bn_low: int,
                 down: bool, out_res: int) -> None:
        super().__init__()
        n_up = math.floor(compress * growth)
        self.own = Bottleneck(cin, growth - n_up, bn_own, stride=2 if down else 1)
        self.up = Bottleneck(cin_low, n_up, bn_low)
        self.out_res = out_res

    def forward(self, x: Tensor, low: Tensor) -> Tensor:
        return torch.cat([resize(x, self.out_res), resize(self.up(low), self.out_res), self.own(x)], dim=1)


class Block(nn.Module):
    """A normal or fusion block; returns its output and its L+1 dense states."""

    def __init__(self, b: BlockPlan, cfg: RANetConfig, low: BlockPlan | None) -> None:
        super().__init__()
        self.plan = b
        layers: list[nn.Module] = []
        for k in range(b.layers):
            cin = b.state_channels(k)
            if b.fusion:
                assert low is not None
                down = b.down and k == b.layers - 1
                layers.append(FusionLayer(cin, low.state_channels(k), b.growth, cfg.compress,
                                          cfg.bn_factor[b.subnet], cfg.bn_factor[b.subnet - 1], down,
                                          b.out_res if down else b.in_res))
            else:
                layers.append(DenseLayer(cin, b.growth, cfg.bn_factor[b.subnet]))
        self.layers = nn.ModuleList(layers)
        self.conv_last = None
        if b.fusion:
            assert low is not None
            self.conv_last = conv_bn_relu(low.dense_channels, math.floor(cfg.compress * b.dense_channels), 1)
        width = b.dense_channels + (math.floor(cfg.compress * b.dense_channels) if b.fusion else 0)
        self.transition = conv_bn_relu(width, b.out_channels, 1) if b.transition else None

    def forward(self, x: Tensor, low: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        states = [x]
        for k, layer in enumerate(self.layers):
            x = layer(x, low[k]) if low is not None else layer(x)
            states.append(x)
        if self.conv_last is not None:
            assert low is not None
            x = torch.cat([x, resize(self.conv_last(low[-1]), self.plan.out_res)], dim=1)
        if self.transition is not None:
            x = self.transition(x)
        return x, states


class ExitHead(nn.Module):
    """Two stride-2 3x3 convs, global average pooling and a linear classifier."""

    def __init__(self, cin: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(cin, width, 3, 2), conv_bn_relu(width, width, 3, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.linear = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.features(x))


class FirstLayer(nn.Module):
    """Base features for every sub-network, computed from the finest resolution down."""

    def __init__(self, cfg: RANetConfig) -> None:
        super().__init__()
        k = cfg.num_subnets
        convs = [conv_bn_relu(3, base_channels(cfg, k - 1), 3)]
        for i in range(k - 2, -1, -1):
            stride = 2 if cfg.scale_list[i] != cfg.scale_list[i + 1] else 1
            convs.append(conv_bn_relu(base_channels(cfg, i + 1), base_channels(cfg, i), 3, stride))
        self.convs = nn.ModuleList(convs)  # convs[m] produces base feature k-1-m

    def forward(self, x: Tensor, lowest: int = 0) -> list[Tensor]:
        """Base features lowest..K-1 (index i of the result is sub-network lowest + i)."""
        k = len(self.convs)
        features = []
        for m in range(k - lowest):
            x = self.convs[m](x)
            features.append(x)
        return features[::-1]


class SubNetwork(nn.Module):
    def __init__(self, blocks: list[BlockPlan], cfg: RANetConfig, lower: list[BlockPlan] | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(b, cfg, lower[b.index] if b.fusion and lower is not None else None) for b in blocks
        )
        self.heads = nn.ModuleList(
            ExitHead(b.out_channels, cfg.head_channels, cfg.num_classes) for b in blocks if b.exit
        )
        self.slices, self.chains = state_layout(blocks)

    def forward(self, x: Tensor, low: list[list[Tensor]] | None = None) -> tuple[list[Tensor], list[list[Tensor]]]:
        """Returns the logits of this sub-network's exits and the dense states of every block."""
        logits, states = [], []
        head = 0
        for block in self.blocks:
            paired = low[block.plan.index] if block.plan.fusion and low is not None else None
            x, s = block(x, paired)
            states.append(s)
            if block.plan.exit:
                logits.append(self.heads[head](x))
                head += 1
        return logits, states

    def pack(self, states: list[list[Tensor]]) -> list[Tensor]:
        """The few tensors ("chains") whose channel prefixes are all the dense states."""
        out: list[Tensor | None] = [None] * len(self.chains)
        for block_slices, block_states in zip(self.slices, states):
            for sl, t in zip(block_slices, block_states):
                if sl.channels == self.chains[sl.chain][0]:
                    out[sl.chain] = t
        assert all(t is not None for t in out)
        return out  # type: ignore[return-value]

    def unpack(self, chains: list[Tensor]) -> list[list[Tensor]]:
        return [[chains[sl.chain][:, : sl.channels] for sl in block] for block in self.slices]


class RANet(nn.Module):
    """The monolithic network: normalised float images in, one logits tensor per exit out."""

    def __init__(self, cfg: RANetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.plan = build_plan(cfg)
        self.first = FirstLayer(cfg)
        self.subnets = nn.ModuleList(
            SubNetwork(blocks, cfg, self.plan[i - 1] if i > 0 else None) for i, blocks in enumerate(self.plan)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        bases = self.first(x)
        logits: list[Tensor] = []
        states = None
        for i, subnet in enumerate(self.subnets):
            out, states = subnet(bases[i], states)
            logits.extend(out)
        return logits

    def run_stage(self, stage: int, x: Tensor, carried: list[Tensor] | None) -> tuple[list[Tensor], list[Tensor]]:
        """Sub-network ``stage`` alone, as the split deployment runs it.

        Args:
            stage: sub-network index.
            x: normalised images; the stage recomputes its own base feature from them.
            carried: the previous stage's packed states (None for stage 0).

        Returns:
            This stage's exit logits and its packed states.
        """
        base = self.first(x, lowest=stage)[0]
        low = self.subnets[stage - 1].unpack(carried) if stage > 0 and carried is not None else None
        logits, states = self.subnets[stage](base, low)
        return logits, self.subnets[stage].pack(states)


def normalise(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 NCHW pixels to normalised float32."""
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1) * 255.0
    return (images.float() - m) / s
