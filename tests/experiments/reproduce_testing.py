"""Helpers shared by the `mmfusion reproduce` test files."""

import keras
import pytest

from mmfusion_keras import cli
from mmfusion_keras.experiments import reproduce


# The recipes' quick runs train or compile several models: seconds on
# PyTorch (eager), minutes of XLA compile (JAX) or graph tracing
# (TensorFlow). They run in the default suite on PyTorch and with
# `-m slow` on the other backends.
def slow_unless_torch(test):
    return test if keras.config.backend() == "torch" else pytest.mark.slow(test)


def quiet(_):
    pass


def run_quick(name, root, output, overrides=(), resume=False, log=quiet):
    """`reproduce.run_recipe(name, ..., quick=True)` as the tests call it."""
    return reproduce.run_recipe(
        name,
        root,
        str(output),
        quick=True,
        overrides=list(overrides),
        resume=resume,
        command=f"test {name}",
        log=log,
    )


def quick_runner(name, overrides=()):
    """The recipe's runner object with its `--quick` parameters."""
    recipe = reproduce.load_recipe(name)
    params = reproduce.resolve_params(recipe, True, overrides)
    return reproduce._runner(name)(recipe, params)


def cli_error(capsys, argv):
    """Runs the CLI expecting exit 2 and returns its one-line error."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err
