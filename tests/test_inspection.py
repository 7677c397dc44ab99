import numpy as np
from keras import ops

from mmfusion_keras.inspection import inspect_fusion
from mmfusion_keras.models import build_fusion_classifier
from mmfusion_keras.testing import assert_raises_with_message


def test_inspect_fusion_reads_without_writing():
    model = build_fusion_classifier(
        {"a": 4, "b": 3},
        2,
        "mbaf",
        fusion_kwargs={"memory_slots": 5, "seed": 0},
        encoder_units=(4,),
    )
    x = {"a": np.ones((2, 4), "float32"), "b": np.zeros((2, 3), "float32")}
    memory = ops.convert_to_numpy(model.get_layer("fusion").memories[0])
    weights = [w.copy() for w in model.get_weights()]
    report = inspect_fusion(model, x)
    assert report["layer"] == "fusion"
    assert report["read_weights"].shape == (2, 5)
    np.testing.assert_allclose(report["read_weights"].sum(-1), 1.0, atol=1e-5)
    assert report["memory"].shape == (5, 8)
    np.testing.assert_array_equal(report["memory"], memory)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    # The report's output is what the fusion layer gives inside the model.
    probe = model.get_layer("fusion").output
    import keras

    fused = keras.Model(model.inputs, probe).predict(x, verbose=0)
    np.testing.assert_allclose(report["output"], fused, atol=1e-5)


def test_inspect_fusion_errors():
    model = build_fusion_classifier({"a": 4, "b": 3}, 2, "concat")
    assert_raises_with_message(
        lambda: inspect_fusion(model, {"a": np.ones((1, 4)), "b": np.ones((1, 3))}),
        r"has no memory fusion layer\. Expected a layer with `inspect\(\)`",
    )
