"""Evaluation splits: seeded stratified hold-out and leave-one-group-out folds."""

import numpy as np


def stratified_split(labels, fractions=(0.8, 0.1, 0.1), seed=0):
    """Splits example indices into train / validation / test, per class.

    Each split keeps the class proportions of `labels` (scikit-learn's
    stratified `train_test_split`, applied twice). The same `seed` always
    gives the same split.

    Args:
        labels: 1-D array of class labels (any hashable values).
        fractions: `(train, validation, test)` fractions, positive, summing
            to 1. Defaults to 8:1:1.
        seed: integer seed of the shuffling.

    Returns:
        A dict `{"train": idx, "validation": idx, "test": idx}` of sorted
        int64 index arrays that together cover every example exactly once.

    Example:

    >>> split = stratified_split([0] * 10 + [1] * 10, seed=0)
    >>> [len(split[k]) for k in ("train", "validation", "test")]
    [16, 2, 2]
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(
            "stratified_split expected 1-D `labels`. Received: labels with "
            f"shape {labels.shape}"
        )
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            "stratified_split expected `fractions` = (train, validation, test), "
            f"three positive numbers summing to 1. Received: fractions={fractions}"
        )
    indices = np.arange(len(labels))
    train_frac, val_frac, test_frac = fractions
    try:
        train_idx, rest_idx = train_test_split(
            indices,
            train_size=train_frac,
            stratify=labels,
            random_state=seed,
        )
        val_idx, test_idx = train_test_split(
            rest_idx,
            test_size=test_frac / (val_frac + test_frac),
            stratify=labels[rest_idx],
            random_state=seed,
        )
    except ValueError as e:
        values, counts = np.unique(labels, return_counts=True)
        raise ValueError(
            "stratified_split could not keep the class proportions in every "
            f"split of {len(labels)} examples with fractions={fractions}: each "
            "class needs enough examples for every split. Class counts: "
            f"{dict(zip(values.tolist(), counts.tolist()))}. ({e})"
        ) from e
    return {
        "train": np.sort(train_idx),
        "validation": np.sort(val_idx),
        "test": np.sort(test_idx),
    }


def leave_one_group_out(groups, order=None):
    """Folds that each hold out one group (session, subject group, ...).

    Args:
        groups: 1-D array giving each example's group.
        order: optional sequence of the groups to hold out, in fold order.
            Defaults to the sorted distinct values of `groups`.

    Returns:
        A list with one dict per held-out group:
        `{"held_out": group, "train": idx, "test": idx}` (sorted int64
        index arrays).

    Example:

    >>> folds = leave_one_group_out([1, 1, 2, 3])
    >>> [(f["held_out"], f["test"].tolist()) for f in folds]
    [(1, [0, 1]), (2, [2]), (3, [3])]
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) == 0:
        raise ValueError(
            "leave_one_group_out expected a non-empty 1-D array of groups. "
            f"Received: groups with shape {groups.shape}"
        )
    present = np.unique(groups)
    if order is None:
        order = present.tolist()
    if len(present) < 2:
        raise ValueError(
            "leave_one_group_out needs at least two groups. Received: "
            f"groups={present.tolist()}"
        )
    folds = []
    for group in order:
        test = np.flatnonzero(groups == group)
        if len(test) == 0:
            raise ValueError(
                f"leave_one_group_out: group {group!r} has no examples. "
                f"Groups present: {present.tolist()}"
            )
        train = np.flatnonzero(groups != group)
        folds.append({"held_out": group, "train": train, "test": test})
    return folds
