"""The static layout of a RANet: every block's widths, resolutions and where the carried state is cut.

The modules in ``model.py`` are built from this plan, and the exporter uses it to name the tensors that
cross a stage boundary, so that both agree by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import RANetConfig


@dataclass(frozen=True)
class BlockPlan:
    """One block of one sub-network.

    Attributes:
        subnet: sub-network index (0 = coarsest).
        index: block position, 0-based; a fusion block pairs with the same position one sub-network down.
        in_channels: channels of the block input (state 0).
        growth: channels each layer adds.
        layers: number of dense or fusion layers.
        fusion: whether the layers read the coarser sub-network's states.
        down: whether the last layer halves the resolution.
        transition: whether a 1x1 compression follows.
        exit: whether an exit head reads the block output.
        in_res: input resolution (square).
        out_channels: channels of the block output (after conv_last and transition).
    """

    subnet: int
    index: int
    in_channels: int
    growth: int
    layers: int
    fusion: bool
    down: bool
    transition: bool
    exit: bool
    in_res: int
    out_channels: int

    @property
    def out_res(self) -> int:
        return self.in_res // 2 if self.down else self.in_res

    @property
    def dense_channels(self) -> int:
        """Channels of the final dense state (before conv_last and transition)."""
        return self.in_channels + self.layers * self.growth

    def state_channels(self, k: int) -> int:
        return self.in_channels + k * self.growth

    def state_res(self, k: int) -> int:
        return self.out_res if k == self.layers else self.in_res


@dataclass(frozen=True)
class StateSlice:
    """Where one dense state lives inside the carried tensors: ``chains[chain][:, :channels]``."""

    chain: int
    channels: int


def blocks_per_subnet(cfg: RANetConfig) -> list[int]:
    return [cfg.blocks + cfg.block_step * i for i in range(cfg.num_subnets)]


def layers_per_position(cfg: RANetConfig) -> list[int]:
    n = blocks_per_subnet(cfg)[-1]
    if cfg.step_mode == "even":
        return [cfg.step] * n
    return [cfg.step * (j + 1) for j in range(n)]


def base_resolution(cfg: RANetConfig, subnet: int) -> int:
    return cfg.image_size // 2 ** (max(cfg.scale_list) - cfg.scale_list[subnet])


def base_channels(cfg: RANetConfig, subnet: int) -> int:
    return cfg.channels * cfg.gr_factor[subnet]


def build_plan(cfg: RANetConfig) -> list[list[BlockPlan]]:
    """Every block of every sub-network, following the paper's assembly rules."""
    n = blocks_per_subnet(cfg)
    layers = layers_per_position(cfg)
    lowest = base_resolution(cfg, 0)
    plan: list[list[BlockPlan]] = []
    for i in range(cfg.num_subnets):
        level = cfg.scale_list[i]
        growth = cfg.growth * cfg.gr_factor[i]
        transitions = {math.floor(m * n[i] / level) for m in range(1, level)}
        ends = [0] + n[:i]
        downs = set(ends[-(level - 1):]) if level > 1 else set()
        channels, res = base_channels(cfg, i), base_resolution(cfg, i)
        blocks = []
        for j in range(n[i]):
            fusion = i > 0 and j < n[i - 1]
            down = fusion and (j + 1) in downs
            transition = (j + 1) in transitions
            dense = channels + layers[j] * growth
            out = dense + math.floor(cfg.compress * dense) if fusion else dense
            if transition:
                out = math.floor(cfg.reduction * out)
            block = BlockPlan(i, j, channels, growth, layers[j], fusion, down, transition,
                              exit=j >= n[i] - cfg.block_step, in_res=res, out_channels=out)
            blocks.append(block)
            channels, res = out, block.out_res
        for b in blocks:
            if b.exit and b.out_res != lowest:
                raise ValueError(f"{cfg.name}: exit of sub-network {i} block {b.index} sees {b.out_res}x{b.out_res},"
                                 f" not the lowest resolution {lowest}")
        plan.append(blocks)
    return plan


def state_layout(blocks: list[BlockPlan]) -> tuple[list[list[StateSlice]], list[tuple[int, int]]]:
    """How a sub-network's dense states pack into as few tensors ("chains") as possible.

    Dense layers only append channels, so consecutive states are channel prefixes of one another until a
    transition or a downsampling layer breaks the run. Each run is carried as its widest member.

    Returns:
        For each block, for each state k = 0..L, the slice that holds it; and the (channels, resolution) of each
        chain tensor.
    """
    slices: list[list[StateSlice]] = []
    chains: list[tuple[int, int]] = []
    previous: BlockPlan | None = None
    for b in blocks:
        if previous is None or previous.transition:
            chains.append((b.in_channels, b.in_res))
        per_state = []
        for k in range(b.layers + 1):
            if k == b.layers and b.down:
                chains.append((b.state_channels(k), b.out_res))
            c = b.state_channels(k)
            per_state.append(StateSlice(len(chains) - 1, c))
            chains[-1] = (max(chains[-1][0], c), chains[-1][1])
        slices.append(per_state)
        previous = b
    return slices, chains
