import pytest
import torch

from ranet.config import RANetConfig, get_preset
from ranet.model import RANet


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_model_stages_chained_reproduce_the_monolith_exactly(name):
    torch.manual_seed(1)
    model = RANet(get_preset(name).model).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        whole = model(x)
        split, carried = [], None
        for s in range(len(model.subnets)):
            logits, carried = model.run_stage(s, x, carried)
            split += logits
    assert len(whole) == model.cfg.num_exits
    for a, b in zip(whole, split):
        assert torch.equal(a, b)


def test_config_rejects_a_repeated_lowest_level():
    with pytest.raises(ValueError, match="repeated lowest level"):
        RANetConfig(name="bad", scale_list=(1, 1, 2, 3), gr_factor=(4, 4, 2, 1), bn_factor=(4, 4, 2, 1))


def test_config_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="same length"):
        RANetConfig(name="bad", scale_list=(1, 2), gr_factor=(4, 2, 1), bn_factor=(4, 2, 1))


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(KeyError, match="cifar10-paper"):
        get_preset("resnet")


@pytest.mark.parametrize("config", ["tiny", "cifar10-paper"])
def test_resizing_by_matrix_products_gives_the_same_network(config):
    from ranet.model import resize_by_matmul

    torch.manual_seed(0)
    model = RANet(get_preset(config).model).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        resize_by_matmul(True)
        try:
            by_matmul = model(x.contiguous(memory_format=torch.channels_last))
        finally:
            resize_by_matmul(False)
    for a, b in zip(reference, by_matmul):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
