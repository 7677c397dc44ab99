import pytest

from mmfusion_keras.layers import ConcatenateFusion
from mmfusion_keras.layers.registry import fusion_names
from mmfusion_keras.layers.registry import get_fusion_layer
from mmfusion_keras.testing import assert_raises_with_message


@pytest.mark.parametrize("name", fusion_names())
def test_every_name_resolves(name):
    layer = get_fusion_layer(name, **({} if name in ("concat", "tensor") else {}))
    assert layer.__class__.__module__.startswith("mmfusion_keras.layers")


def test_instance_and_class():
    layer = ConcatenateFusion()
    assert get_fusion_layer(layer) is layer
    assert isinstance(get_fusion_layer(ConcatenateFusion), ConcatenateFusion)


def test_unknown_name():
    assert_raises_with_message(
        lambda: get_fusion_layer("nope"), r"Unknown fusion 'nope'. Expected one of"
    )
