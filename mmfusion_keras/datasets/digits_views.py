"""Digits-Views: a tiny two-view task built from scikit-learn's bundled digits.

Each 8x8 handwritten digit of `sklearn.datasets.load_digits()` (1797 images,
10 classes, bundled with scikit-learn, nothing downloaded) is cut into two
views: the left four columns and the right four columns (32 pixels each,
scaled to [0, 1]). Neither half alone identifies every digit as well as
both together, which makes it a quick, honest check that a fusion layer
trains. Splits are stratified and seeded: 70% train, 15% validation, 15%
test.
"""

import numpy as np

SPLITS = ("train", "validation", "test")
VIEWS = ("left", "right")


def load_digits_views(split="train", seed=0):
    """Loads one split of Digits-Views.

    Args:
        split: "train", "validation" or "test".
        seed: seed of the stratified split.

    Returns:
        `(inputs, labels)`: `inputs` is a dict `{"left": (N, 32),
        "right": (N, 32)}` of float32 arrays, `labels` an int array (N,).

    Example:

    >>> from mmfusion_keras.datasets import load_digits_views
    >>> x, y = load_digits_views("test")
    >>> x["left"].shape[1], x["right"].shape[1], sorted(set(y))[:3]
    (32, 32, [0, 1, 2])
    """
    if split not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r} for Digits-Views. Expected one of {SPLITS}."
        )
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")
    labels = digits.target.astype("int64")
    index = np.arange(len(labels))
    train, rest = train_test_split(
        index, test_size=0.3, stratify=labels, random_state=seed
    )
    validation, test = train_test_split(
        rest, test_size=0.5, stratify=labels[rest], random_state=seed
    )
    chosen = {"train": train, "validation": validation, "test": test}[split]
    chosen = np.sort(chosen)
    views = {
        "left": images[chosen, :, :4].reshape(len(chosen), -1),
        "right": images[chosen, :, 4:].reshape(len(chosen), -1),
    }
    return views, labels[chosen]
