"""Training recipes of `mmfusion train/compare --recipe` (mmfusion_keras.tasks)."""

import re

import keras
import pytest

from mmfusion_keras.tasks import build_recipe_optimizer
from mmfusion_keras.tasks import get_recipe
from mmfusion_keras.tasks import get_task
from mmfusion_keras.tasks import recipe_names


def _dense_widths(model):
    return [
        layer.units
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Dense) and "head" in layer.name
    ]


def test_paper_recipe_gives_the_memory_module_its_learning_rate():
    recipe = get_recipe("paper")
    task = get_task("digits-views")
    model = task.build_model(
        "dual_memory",
        fusion_kwargs={"memory_slots": 4, "output_dim": 16},
        head_units=recipe["head_units"],
    )
    assert _dense_widths(model) == [1024, 512]
    optimizer = build_recipe_optimizer(recipe, model)
    # Keras numbers optimizer names once a name is taken in the process
    # ("sgd_1"): compare the names without that suffix.
    rates = sorted(
        (re.sub(r"_\d+$", "", o.name), round(float(o.learning_rate), 6))
        for o in optimizer.optimizers
    )
    assert rates == [("memory_sgd", 0.001), ("sgd", 0.01)]
    # The naive twin (no memory layer): plain SGD at the network's rate.
    twin = task.build_model("concat", head_units=recipe["head_units"])
    plain = build_recipe_optimizer(recipe, twin)
    assert isinstance(plain, keras.optimizers.SGD)
    assert round(float(plain.learning_rate), 6) == 0.01


def test_adam_recipe_keeps_the_task_head():
    recipe = get_recipe("adam")
    model = get_task("digits-views").build_model("concat")
    assert _dense_widths(model) == [64]
    optimizer = build_recipe_optimizer(recipe, model)
    assert isinstance(optimizer, keras.optimizers.Adam)


def test_unknown_recipe_and_fixed_head_messages():
    assert recipe_names() == ["adam", "paper"]
    with pytest.raises(
        ValueError,
        match=r"Unknown training recipe 'sgd'. Expected one of \['adam', 'paper'\]",
    ):
        get_recipe("sgd")
    task = get_task("avdigits")
    with pytest.raises(
        ValueError,
        match=r"avdigits task has a fixed one-layer head.*Received: head_units=\[1024, 512\]",
    ):
        task.build_model("concat", head_units=[1024, 512])
