"""Model and training configurations, one frozen dataclass each, looked up by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

CIFAR10_MEAN = (0.4914, 0.4824, 0.4467)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


@dataclass(frozen=True)
class RANetConfig:
    """Hyperparameters of a CIFAR RANet (names follow the official code's arguments).

    Attributes:
        name: registry name of this configuration.
        num_classes: classifier outputs.
        image_size: input height and width.
        channels: base width C0; sub-network i's base features have channels * gr_factor[i] channels.
        growth: growth rate g; sub-network i's dense layers add growth * gr_factor[i] channels.
        scale_list: resolution level of each sub-network, lowest first (1 = coarsest).
        gr_factor: growth multiplier per sub-network.
        bn_factor: bottleneck multiplier per sub-network.
        blocks: B0, the number of blocks of sub-network 0.
        block_step: extra blocks per sub-network (also the number of exits per sub-network).
        step: layers per block (``even``) or its multiplier (``lg``).
        step_mode: ``even`` or ``lg``.
        compress: fraction of a fusion layer's new channels taken from the coarser sub-network.
        reduction: transition compression.
        head_channels: width of the two convolutions of each exit head.
        mean: per-channel normalisation mean, applied to pixels scaled to [0, 1].
        std: per-channel normalisation standard deviation.
    """

    name: str
    num_classes: int = 10
    image_size: int = 32
    channels: int = 16
    growth: int = 6
    scale_list: tuple[int, ...] = (1, 2, 3, 3)
    gr_factor: tuple[int, ...] = (4, 2, 1, 1)
    bn_factor: tuple[int, ...] = (4, 2, 1, 1)
    blocks: int = 2
    block_step: int = 2
    step: int = 4
    step_mode: str = "even"
    compress: float = 0.25
    reduction: float = 0.5
    head_channels: int = 128
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD

    def __post_init__(self) -> None:
        k = len(self.scale_list)
        if not (len(self.gr_factor) == len(self.bn_factor) == k):
            raise ValueError(f"{self.name}: scale_list, gr_factor and bn_factor must have the same length")
        if list(self.scale_list) != sorted(self.scale_list) or self.scale_list[0] != 1:
            raise ValueError(f"{self.name}: scale_list must start at 1 and never decrease, got {self.scale_list}")
        if k > 1 and self.scale_list[1] == 1:
            raise ValueError(f"{self.name}: a repeated lowest level breaks the downsampling rule")
        if self.step_mode not in ("even", "lg"):
            raise ValueError(f"{self.name}: step_mode must be 'even' or 'lg', got {self.step_mode!r}")
        if self.step_mode == "lg" and self.step < 2 or self.step < 1:
            raise ValueError(f"{self.name}: a fusion block needs at least 2 layers")
        for i in range(1, k):
            if int(self.compress * self.growth * self.gr_factor[i]) < 1:
                raise ValueError(f"{self.name}: sub-network {i} gets no channels from the coarser path; raise growth")

    @property
    def num_subnets(self) -> int:
        return len(self.scale_list)

    @property
    def num_exits(self) -> int:
        return self.num_subnets * self.block_step


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained.

    Attributes:
        epochs: passes over the training split.
        batch_size: samples per step.
        lr: peak learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty on all parameters.
        schedule: ``onecycle`` (linear warm-up then cosine to zero) or ``step`` (x0.1 at 50 % and 75 %).
        warmup: fraction of steps spent warming up (``onecycle`` only).
        label_smoothing: cross-entropy label smoothing.
        distill: weight of the distillation term from the last exit into earlier exits (0 = off).
        temperature: distillation temperature.
        ema: decay per step of an exponential moving average of the weights (0 = none); the budgeted trainer
            ships whichever of the average and the raw weights is more accurate on validation.
        seed: seed of weights, batches and augmentation.
    """

    epochs: int = 300
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "step"
    warmup: float = 0.0
    label_smoothing: float = 0.0
    distill: float = 0.0
    temperature: float = 1.0
    ema: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Preset:
    """A model, its epoch-based recipe (``train``) and its recipe for the time-budgeted trainer (``budget``: epochs
    are fitted to the time; None means ``train`` with its epochs fitted)."""

    model: RANetConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    budget: TrainConfig | None = None

    @property
    def budget_recipe(self) -> TrainConfig:
        return self.budget or self.train


PRESETS: dict[str, Preset] = {
    # The paper's CIFAR anytime model (config A, train_cifar.sh) with the paper's recipe (300 epochs, batch 64), and a
    # recipe for minutes on one GPU: large batches, one-cycle, label smoothing, weight averaging. No distillation: on
    # the small config over 3 epochs, distill=0.5 at temperature 2 cost 1.5 to 2.4 points at every exit.
    "cifar10-paper": Preset(
        RANetConfig(name="cifar10-paper"),
        budget=TrainConfig(epochs=0, batch_size=512, lr=0.5, nesterov=True, weight_decay=5e-4, schedule="onecycle",
                           warmup=0.1, label_smoothing=0.1, ema=0.998),
    ),
    # Three sub-networks, narrow heads: sized to train on two CPU cores in about an hour.
    "small": Preset(
        RANetConfig(
            name="small", channels=8, growth=6, scale_list=(1, 2, 3), gr_factor=(4, 2, 1), bn_factor=(2, 2, 1),
            step=2, head_channels=48,
        ),
        TrainConfig(epochs=18, batch_size=128, lr=0.2, nesterov=True, weight_decay=5e-4, schedule="onecycle",
                    warmup=0.15, label_smoothing=0.1),
    ),
    # For tests: three sub-networks, a few thousand parameters per exit.
    "tiny": Preset(
        RANetConfig(
            name="tiny", channels=4, growth=4, scale_list=(1, 2, 3), gr_factor=(2, 1, 1), bn_factor=(1, 1, 1),
            step=2, head_channels=8,
        ),
        TrainConfig(epochs=1, batch_size=64, lr=0.05, schedule="onecycle", warmup=0.1),
        budget=TrainConfig(epochs=0, batch_size=64, lr=0.05, nesterov=True, schedule="onecycle", warmup=0.1,
                           label_smoothing=0.1, distill=0.5, temperature=2.0, ema=0.99),
    ),
}


def get_preset(name: str) -> Preset:
    """Returns the preset called ``name``; raises KeyError naming the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown config {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def to_dict(cfg: object) -> dict:
    """A JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(cfg)  # type: ignore[arg-type]
