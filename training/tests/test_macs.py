import pytest

from ranet import paper
from ranet.config import get_preset
from ranet.macs import count_params, exit_macs, stage_macs
from ranet.model import RANet


@pytest.fixture(scope="module")
def paper_model() -> RANet:
    return RANet(get_preset("cifar10-paper").model).eval()


def test_paper_config_cumulative_macs_match_the_paper(paper_model):
    macs = exit_macs(paper_model)
    assert len(macs) == 8
    for got, want in zip(macs, paper.ANYTIME_MMACS):
        assert got / 1e6 == pytest.approx(want, rel=0.02)


def test_paper_config_has_3_26m_parameters(paper_model):
    assert count_params(paper_model) / 1e6 == pytest.approx(3.262, rel=0.02)


def test_paper_config_carried_states_are_the_documented_tensors(paper_model):
    # Sub-network 0's dense states are all prefixes of one 256x8x8 tensor; sub-network 1 needs
    # 136x16x16 + 148x8x8 + 188x8x8.
    assert paper_model.subnets[0].chains == [(256, 8)]
    assert paper_model.subnets[1].chains == [(136, 16), (148, 8), (188, 8)]
    first_block = paper_model.subnets[0].slices[0]
    assert [s.channels for s in first_block] == [64, 88, 112, 136, 160]


def test_stages_cost_more_than_the_monolith_only_by_recomputed_base_features(paper_model):
    # Split stages recompute their base feature from the image; everything else is shared.
    stages = stage_macs(paper_model)
    assert stages[0] == exit_macs(paper_model)[1]
    assert sum(stages) > exit_macs(paper_model)[-1]
    assert sum(stages) - exit_macs(paper_model)[-1] < 10e6


def test_macs_counter_counts_a_known_layer():
    import torch
    from torch import nn

    from ranet.macs import _count

    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU())
    total, _ = _count(conv, lambda: conv(torch.zeros(4, 3, 10, 10)))
    assert total == 3 * 8 * 9 * 100 + 8 * 100
