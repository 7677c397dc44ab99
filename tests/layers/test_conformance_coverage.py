"""Every public layer must be run through `run_layer_conformance` by a test."""

import ast
import pathlib

import mmfusion_keras.layers

TESTS = pathlib.Path(__file__).resolve().parents[1]


def _classes_under_conformance():
    found = set()
    for path in TESTS.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "run_layer_conformance"
                and node.args
            ):
                first = node.args[0]
                if isinstance(first, ast.Name):
                    found.add(first.id)
                elif isinstance(first, ast.Attribute):
                    found.add(first.attr)
                else:  # e.g. a parametrized `cls`
                    found.add("<dynamic>")
    return found


def _parametrized_classes():
    """Classes passed through `@pytest.mark.parametrize("cls", [...])`."""
    found = set()
    for path in TESTS.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "parametrize"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == "cls"
                and isinstance(node.args[1], ast.List)
            ):
                found.update(e.id for e in node.args[1].elts if isinstance(e, ast.Name))
    return found


def test_every_public_layer_is_in_the_conformance_check():
    covered = _classes_under_conformance() | _parametrized_classes()
    public = set(mmfusion_keras.layers.__all__)
    missing = sorted(public - covered)
    assert not missing, (
        f"Public layers without a run_layer_conformance test: {missing}. "
        "Add a conformance test for each (see tests/layers/test_naive_fusion.py)."
    )


def test_exports_are_layers():
    import keras

    for name in mmfusion_keras.layers.__all__:
        cls = getattr(mmfusion_keras.layers, name)
        assert issubclass(cls, keras.layers.Layer), name
        assert cls.__doc__ and "Args:" in cls.__doc__ and "Example:" in cls.__doc__, (
            f"{name} needs a docstring with Args and Example"
        )
