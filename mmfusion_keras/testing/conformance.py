"""The conformance check every public mmfusion_keras layer must pass.

`run_layer_conformance` plays the role of Keras's private `run_layer_test`
(which this library does not import) plus KerasHub's save/reload check:

1. `get_config` / `from_config` round trip, and a JSON round trip through
   `keras.saving.serialize_keras_object`;
2. trainable / non-trainable weight and seed-generator counts after build;
3. symbolic output shape and dtype, `compute_output_shape`, eager output
   shape and dtype;
4. one `model.fit` step, finite loss: compiled (`jit_compile="auto"`) for
   the first configuration of each layer class in the process (always on
   JAX), eager for the others (see `compile_fit`);
5. a finite, non-zero gradient for every trainable weight (computed with the
   active backend's autodiff);
6. `.keras` save -> load: same class, same outputs (atol 1e-6), same
   non-trainable state;
7. a `mixed_float16` pass: output dtype matches `compute_output_spec`,
   float weights stay float32, and with the float32 layer's weights the
   outputs are finite and close to the float32 outputs (inference mode;
   tolerance relative to the output scale);
8. the layer's clear-error cases: each raises `ValueError` whose message
   matches a regular expression.

Everything here runs on TensorFlow, JAX and PyTorch.
"""

import json
import os
import re
import tempfile

import keras
import numpy as np
from keras import ops


def random_inputs(input_shapes, batch_size=None, seed=0, dtype="float32"):
    """Random normal NumPy inputs for a list of shapes (batch dim first).

    A `None` batch dimension is replaced by `batch_size` (default 4).
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for shape in input_shapes:
        batch = batch_size or 4
        shape = tuple(batch if d is None else d for d in shape)
        arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _unwrap(inputs):
    return inputs if len(inputs) > 1 else inputs[0]


def infer(model, inputs):
    """Runs `model` in inference mode and returns NumPy outputs, quickly.

    On JAX an eager call of a functional model dispatches (and compiles)
    every operation on its own, which costs seconds for a small transformer
    the first time (12.7 s of CPU for a tiny MulT, against 3.4 s for one
    compiled `predict_on_batch`); there the whole forward pass is compiled
    once. TensorFlow and PyTorch run the call eagerly, which is cheaper
    than tracing for one call. The outputs are the same as
    `model(inputs, training=False)`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> infer(model, np.zeros((4, 3), "float32")).shape
    (4, 2)
    """
    if keras.config.backend() == "jax":
        return keras.tree.map_structure(np.asarray, model.predict_on_batch(inputs))
    outputs = model(inputs, training=False)
    return keras.tree.map_structure(ops.convert_to_numpy, outputs)


def assert_raises_with_message(fn, pattern, error=ValueError):
    """Asserts `fn()` raises `error` whose message matches regex `pattern`."""
    try:
        fn()
    except error as e:
        message = str(e)
        if not re.search(pattern, message, flags=re.DOTALL):
            raise AssertionError(
                f"Expected a {error.__name__} whose message matches "
                f"{pattern!r}. Got: {message!r}"
            ) from e
        return message
    raise AssertionError(f"Expected a {error.__name__} matching {pattern!r}.")


def fusion_input_error_cases(make_layer, layer_name):
    """The bad-input cases every `BaseFusion` layer must reject clearly.

    Args:
        make_layer: a callable returning a fresh layer.
        layer_name: the class name the messages must mention.

    Returns:
        A list of `(description, make_call, pattern)` for
        `run_layer_conformance(error_cases=...)`: one modality, a single
        tensor, wrong rank, mismatched batch sizes and an integer dtype.
    """
    x = np.arange(6, dtype="float32").reshape(2, 3)
    return [
        (
            "one modality",
            lambda: make_layer()([x]),
            rf"{layer_name}.*at least 2 modality tensors.*Received 1 modalities",
        ),
        (
            "single tensor",
            lambda: make_layer()(x),
            r"Received a single tensor of shape \(2, 3\)",
        ),
        (
            "wrong rank",
            lambda: make_layer()([x, np.ones((2, 3, 1), "float32")]),
            r"rank 2 \(batch, features\).*modality 1 with rank 3",
        ),
        (
            "mismatched batch",
            lambda: make_layer()([x, np.ones((3, 3), "float32")]),
            r"same batch size.*\[2, 3\]",
        ),
        (
            "integer dtype",
            lambda: make_layer()([x, np.ones((2, 3), "int32")]),
            r"floating-point.*modality 1 with dtype int32",
        ),
    ]


def trainable_gradients(model, inputs, output_weights=None, training=True):
    """Gradients of a random projection of `model(inputs)` w.r.t. its weights.

    The loss is `sum(output * output_weights)` (random weights by default),
    so every output feature contributes. Returns a list of NumPy arrays in
    the order of `model.trainable_variables`.
    """
    backend = keras.config.backend()
    inputs = [ops.convert_to_tensor(x) for x in _as_list(inputs)]
    if output_weights is None:
        probe = model(_unwrap(inputs), training=False)
        rng = np.random.default_rng(123)
        output_weights = rng.standard_normal(tuple(probe.shape)).astype("float32")
    target = ops.convert_to_tensor(output_weights)

    def loss_of(outputs):
        return ops.sum(ops.cast(outputs, "float32") * target)

    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(model(_unwrap(inputs), training=training))
        grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
    elif backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def f(tv):
            outputs, _ = model.stateless_call(
                tv, non_trainable, _unwrap(inputs), training=training
            )
            return loss_of(outputs)

        # One XLA compile of the whole gradient instead of one per primitive
        # (op-by-op `jax.grad` compiles every op and shape it meets).
        grads = jax.jit(jax.grad(f))(trainable)
    elif backend == "torch":
        for v in model.trainable_variables:
            v.value.grad = None
        loss = loss_of(model(_unwrap(inputs), training=training))
        loss.backward()
        grads = [v.value.grad for v in model.trainable_variables]
    else:  # pragma: no cover
        raise ValueError(f"Unsupported backend: {backend}")
    return [None if g is None else ops.convert_to_numpy(g) for g in grads]


def _symbolic_inputs(input_shapes, dtype="float32"):
    return [keras.Input(shape=tuple(s[1:]), dtype=dtype) for s in input_shapes]


def run_layer_conformance(
    layer_cls,
    init_kwargs,
    input_shapes,
    expected_output_shape,
    expected_num_trainable_weights,
    expected_num_non_trainable_weights,
    expected_num_seed_generators=0,
    error_cases=(),
    batch_size=4,
    run_fit=True,
    run_gradients=True,
    run_mixed_precision=True,
    run_saving=True,
    save_atol=1e-6,
    mixed_precision_tolerance=2e-2,
    make_target=None,
    compile_fit=None,
):
    """Runs the conformance check on one layer configuration.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of constructor arguments.
        input_shapes: list of input shapes with `None` batch, e.g.
            `[(None, 3), (None, 5)]`; a single shape for one-input layers.
        expected_output_shape: symbolic output shape (batch `None`); a list
            of shapes for layers that return a list of tensors (their
            outputs are then flattened and concatenated for the fit,
            gradient and save steps).
        expected_num_trainable_weights: count after build.
        expected_num_non_trainable_weights: count after build (seed
            generator states excluded).
        expected_num_seed_generators: count of `keras.random.SeedGenerator`.
        error_cases: iterable of `(description, make_call, pattern)`:
            `make_call()` must raise `ValueError` matching `pattern`.
        batch_size: eager batch size.
        run_fit / run_gradients / run_mixed_precision / run_saving: switches.
        save_atol: tolerance of the save/load output comparison.
        mixed_precision_tolerance: `tol` of the `mixed_float16` comparison:
            `|y16 - y32| <= tol * (max|y32| + |y32|)` element-wise, with
            `y32` the float32 output (float16 keeps about 3 significant
            digits; deep layers accumulate more error).
        make_target: optional `fn(outputs) -> targets` for the fit step.
        compile_fit: whether the fit step is compiled (`jit_compile="auto"`)
            or eager. None (default): compiled for the first configuration
            of each layer class checked in the process, and on JAX always
            (there eager execution compiles every op and costs more than one
            compile of the train step); eager for later configurations on
            TensorFlow and PyTorch, where the compile of the train step is
            most of the check's time.
    """
    single_input = not isinstance(input_shapes[0], (list, tuple))
    shapes = [tuple(input_shapes)] if single_input else [tuple(s) for s in input_shapes]
    unwrap = (lambda xs: xs[0]) if single_input else (lambda xs: xs)

    # 1. Config round trips.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    revived = layer_cls.from_config(config)
    assert revived.get_config() == config, (
        f"{layer_cls.__name__}: from_config(get_config()) changed the config:\n"
        f"{config}\n!=\n{revived.get_config()}"
    )
    serialized = json.dumps(keras.saving.serialize_keras_object(layer))
    revived = keras.saving.deserialize_keras_object(json.loads(serialized))
    assert type(revived) is layer_cls, type(revived)
    assert revived.get_config() == config, f"{layer_cls.__name__}: JSON round trip"

    # 2-3. Symbolic call, weight counts, shapes.
    layer = layer_cls(**init_kwargs)
    symbolic = _symbolic_inputs(shapes)
    sym_out = layer(unwrap(symbolic))
    multi_output = isinstance(sym_out, (list, tuple))
    expected_shapes = (
        [tuple(s) for s in expected_output_shape]
        if multi_output
        else [tuple(expected_output_shape)]
    )
    sym_outs = list(sym_out) if multi_output else [sym_out]
    computed = layer.compute_output_shape(unwrap(shapes))
    computed = list(computed) if multi_output else [computed]
    assert len(sym_outs) == len(expected_shapes) == len(computed)
    for out, expected, comp in zip(sym_outs, expected_shapes, computed):
        assert tuple(out.shape) == expected, (
            f"{layer_cls.__name__}: symbolic output shape {tuple(out.shape)}"
            f" != expected {expected}"
        )
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        assert tuple(comp) == expected, (
            f"{layer_cls.__name__}: compute_output_shape {comp}"
        )
    n_trainable = len(layer.trainable_weights)
    seed_states = {id(sg.state) for sg in _seed_generators(layer)}
    n_non_trainable = sum(
        1 for w in layer.non_trainable_weights if id(w) not in seed_states
    )
    assert n_trainable == expected_num_trainable_weights, (
        f"{layer_cls.__name__}: {n_trainable} trainable weights, expected "
        f"{expected_num_trainable_weights}: "
        f"{[w.path for w in layer.trainable_weights]}"
    )
    assert n_non_trainable == expected_num_non_trainable_weights, (
        f"{layer_cls.__name__}: {n_non_trainable} non-trainable weights, "
        f"expected {expected_num_non_trainable_weights}: "
        f"{[w.path for w in layer.non_trainable_weights]}"
    )
    assert len(_seed_generators(layer)) == expected_num_seed_generators

    # Eager call.
    data = random_inputs(shapes, batch_size=batch_size)
    eager_layer = layer_cls(**init_kwargs)
    eager_outs = eager_layer(unwrap(data))
    eager_outs = list(eager_outs) if multi_output else [eager_outs]
    for eager_out, expected in zip(eager_outs, expected_shapes):
        expected_eager = (batch_size,) + tuple(expected[1:])
        assert tuple(eager_out.shape) == expected_eager, (
            f"{layer_cls.__name__}: eager output shape "
            f"{tuple(eager_out.shape)} != {expected_eager}"
        )
        assert keras.backend.standardize_dtype(eager_out.dtype) == "float32"
        assert np.all(np.isfinite(ops.convert_to_numpy(eager_out)))

    if multi_output:
        sym_out = keras.layers.Concatenate(name="conformance_concat")(
            [keras.layers.Flatten()(out) for out in sym_outs]
        )

    model = keras.Model(symbolic, sym_out)

    # 4. One fit step: the layer under a small trainable head, so that even
    # weightless layers are trained through.
    if run_fit:
        head = keras.layers.Dense(1, name="conformance_head")(
            keras.layers.Flatten()(sym_out) if len(sym_out.shape) > 2 else sym_out
        )
        fit_model = keras.Model(symbolic, head)
        target = (
            make_target(ops.convert_to_numpy(fit_model(unwrap(data))))
            if make_target is not None
            else np.random.default_rng(1)
            .standard_normal((batch_size, 1))
            .astype("float32")
        )
        compiled = _compile_fit(layer_cls, compile_fit)
        fit_model.compile(
            optimizer="adam",
            loss="mse",
            jit_compile="auto" if compiled else False,
            run_eagerly=not compiled,
        )
        history = fit_model.fit(
            unwrap(data), target, batch_size=batch_size, epochs=1, verbose=0
        )
        assert np.isfinite(history.history["loss"][-1])

    # 5. Gradients reach every trainable weight.
    if run_gradients and model.trainable_variables:
        grad_model = keras.Model(symbolic, sym_out)
        grads = trainable_gradients(grad_model, data)
        for var, grad in zip(grad_model.trainable_variables, grads):
            assert grad is not None, f"No gradient for {var.path}"
            assert np.all(np.isfinite(grad)), f"Non-finite gradient for {var.path}"
            assert np.any(grad != 0), f"Zero gradient for {var.path}"

    # 6. .keras save -> load.
    if run_saving:
        # Direct calls, not `predict`: the same outputs without compiling a
        # predict function for each model (the dominant cost on JAX and
        # TensorFlow); the compiled path is exercised by the fit step.
        before = ops.convert_to_numpy(model(unwrap(data), training=False))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            restored = keras.saving.load_model(path)
        restored_layers = [
            layer_ for layer_ in restored.layers if isinstance(layer_, layer_cls)
        ]
        assert len(restored_layers) == 1 and type(restored_layers[0]) is layer_cls
        after = ops.convert_to_numpy(restored(unwrap(data), training=False))
        np.testing.assert_allclose(after, before, atol=save_atol, rtol=0)

        # Seed-generator states (dropout counters) are not model state.
        def state(m):
            seeds = {id(sg.state) for sg in _seed_generators(m)}
            return [v for v in m.non_trainable_variables if id(v) not in seeds]

        for a, b in zip(state(model), state(restored)):
            np.testing.assert_allclose(
                ops.convert_to_numpy(b), ops.convert_to_numpy(a), atol=0, rtol=0
            )

    # 7. mixed_float16: dtypes, then finite outputs close to float32 with
    # the same weights (forward pass only: on JAX CPU a float16 dot_general
    # with float32 accumulation cannot be differentiated, see NOTES.md).
    if run_mixed_precision:
        mp_layer = layer_cls(**{**init_kwargs, "dtype": "mixed_float16"})
        mp_outs = mp_layer(unwrap(data))
        specs = mp_layer.compute_output_spec(
            unwrap([keras.KerasTensor(x.shape, dtype="float32") for x in data])
        )
        if not multi_output:
            mp_outs, specs = [mp_outs], [specs]
        for mp_out, spec in zip(mp_outs, specs):
            assert keras.backend.standardize_dtype(mp_out.dtype) == (
                keras.backend.standardize_dtype(spec.dtype)
            ), f"mixed_float16 output {mp_out.dtype} != spec {spec.dtype}"
            assert keras.backend.standardize_dtype(mp_out.dtype) == "float16"
        for w in mp_layer.weights:
            dtype = keras.backend.standardize_dtype(w.dtype)
            if "float" in dtype:
                assert dtype == "float32", f"{w.path} has dtype {dtype}"
        assert len(mp_layer.weights) == len(eager_layer.weights)
        for mp_w, w in zip(mp_layer.weights, eager_layer.weights):
            mp_w.assign(w)
        mp_outs = mp_layer(unwrap(data))
        mp_outs = list(mp_outs) if multi_output else [mp_outs]
        for i, (mp_out, ref_out) in enumerate(zip(mp_outs, eager_outs)):
            low = ops.convert_to_numpy(ops.cast(mp_out, "float32"))
            ref = ops.convert_to_numpy(ref_out)
            assert np.all(np.isfinite(low)), (
                f"{layer_cls.__name__}: mixed_float16 output {i} is not finite "
                f"({int(np.sum(~np.isfinite(low)))} of {low.size} values)"
            )
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
            error = np.abs(low - ref)
            bound = mixed_precision_tolerance * (scale + np.abs(ref))
            assert np.all(error <= bound), (
                f"{layer_cls.__name__}: mixed_float16 output {i} differs from "
                f"float32 by up to {float(error.max()):.3g} (output scale "
                f"{scale:.3g}, tolerance {mixed_precision_tolerance})"
            )

    # 8. Clear errors.
    for description, make_call, pattern in error_cases:
        try:
            assert_raises_with_message(make_call, pattern)
        except AssertionError as e:
            raise AssertionError(f"{layer_cls.__name__} / {description}: {e}") from e


_COMPILED_FIT_DONE = set()


def _compile_fit(layer_cls, compile_fit):
    """Whether the conformance fit step of `layer_cls` runs compiled."""
    if compile_fit is not None:
        compiled = bool(compile_fit)
    else:
        compiled = (
            keras.config.backend() == "jax" or layer_cls not in _COMPILED_FIT_DONE
        )
    if compiled:
        _COMPILED_FIT_DONE.add(layer_cls)
    return compiled


def _seed_generators(layer):
    found = []
    seen = set()

    def visit(obj):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for value in list(vars(obj).values()):
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if (
                    isinstance(item, keras.random.SeedGenerator)
                    and id(item) not in seen
                ):
                    seen.add(id(item))
                    found.append(item)
                elif isinstance(item, keras.layers.Layer):
                    visit(item)

    visit(layer)
    return found
