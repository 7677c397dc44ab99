"""Tasks the CLI can train and evaluate on: data + the matching model."""

import dataclasses


@dataclasses.dataclass
class Task:
    """A named task: its splits, classes and a model builder.

    Attributes:
        name: task name used by the CLI.
        class_names: list of class names (index = label).
        load: `load(split, seed) -> (inputs dict, labels)`.
        build_model: `build_model(fusion, fusion_kwargs, seed) -> keras.Model`.
        description: one line for `--help` and model cards.
        preprocessing: dict recorded in model cards.
    """

    name: str
    class_names: list
    load: callable
    build_model: callable
    description: str
    preprocessing: dict


def _digits_views():
    from mmfusion_keras.datasets.digits_views import load_digits_views

    def build_model(fusion, fusion_kwargs=None, seed=0):
        from mmfusion_keras.models import build_fusion_classifier

        kwargs = dict(fusion_kwargs or {})
        if fusion == "mbaf":
            kwargs.setdefault("seed", seed)
        return build_fusion_classifier(
            {"left": 32, "right": 32},
            num_classes=10,
            fusion=fusion,
            fusion_kwargs=kwargs,
            encoder_units=(64,),
            head_units=(64,),
            dropout=0.2,
            name=f"digits_views_{fusion}",
        )

    return Task(
        name="digits-views",
        class_names=[str(d) for d in range(10)],
        load=load_digits_views,
        build_model=build_model,
        description="left/right halves of scikit-learn's 8x8 digits (bundled)",
        preprocessing={
            "views": ["left 8x4 columns", "right 8x4 columns"],
            "scale": "pixel / 16",
        },
    )


_TASKS = {"digits-views": _digits_views}


def task_names():
    return sorted(_TASKS)


def get_task(name):
    """Returns the `Task` called `name`; `ValueError` listing the known ones."""
    if name not in _TASKS:
        raise ValueError(f"Unknown task {name!r}. Expected one of {task_names()}.")
    return _TASKS[name]()
