"""Temperature schedule and temperature-based sampling of MFAS (Alg. 1).

The surrogate's predicted accuracies `a_i` become sampling probabilities
`P_i = a_i ** (1 / T) / sum_j a_j ** (1 / T)` (EPNAS, as in the public MFAS
code): at a high temperature sampling is nearly uniform, as `T -> 0` it
concentrates on the best predicted descriptions. `T` decays from `T_max`
to `T_min` over the search steps (line 27 of Algorithm 1).
"""

import math
import numbers

import numpy as np


def _positive(value, name, fn):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"{fn} expected `{name}` to be a positive finite number. "
            f"Received: {name}={value!r}"
        )


def temperature_at(step, num_steps, t_max=10.0, t_min=0.2):
    """The sampling temperature at a search step (0-based).

    Exponential decay from `T_max` at step 0 to `T_min` at the last step
    `num_steps - 1`: `T_s = T_max * (T_min / T_max) ** (s / (num_steps -
    1))`, i.e. `T_max * exp(-s * log(T_max / T_min) / (num_steps - 1))`.
    Steps past the end stay at `T_min`.

    The step index counts every (search iteration, level) pair:
    `s = e * L + l` for iteration `e` in `0..E_search-1` and level `l` in
    `0..L-1`. (The public MFAS code computes it as `e * E_search + l`,
    which repeats or skips steps whenever `E_search != L`.)

    Args:
        step: the 0-based step index.
        num_steps: total steps `E_search * L` (at least 1).
        t_max: starting temperature.
        t_min: final temperature (`0 < t_min <= t_max`).

    Returns:
        The temperature, a float.

    Example:

    >>> [round(temperature_at(s, 3, 10.0, 0.1), 3) for s in range(4)]
    [10.0, 1.0, 0.1, 0.1]

    Reference:
        Perez-Rua et al., "MFAS", CVPR 2019, Algorithm 1 line 27 and
        Fig. 5 (right); Perez-Rua et al., "Efficient progressive neural
        architecture search" (EPNAS), BMVC 2018.
    """
    fn = "temperature_at"
    _positive(t_max, "t_max", fn)
    _positive(t_min, "t_min", fn)
    if t_min > t_max:
        raise ValueError(
            f"{fn} expected t_min <= t_max. Received: t_min={t_min!r}, t_max={t_max!r}"
        )
    for name, value, low in (("step", step, 0), ("num_steps", num_steps, 1)):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or value < low
        ):
            raise ValueError(
                f"{fn} expected `{name}` to be an integer >= {low}. "
                f"Received: {name}={value!r}"
            )
    if num_steps == 1:
        return float(t_max) if step == 0 else float(t_min)
    fraction = min(step, num_steps - 1) / (num_steps - 1)
    return float(t_max * (t_min / t_max) ** fraction)


def gaussian_temperature_at(step, t_max=10.0, t_min=0.2, decay=4.0):
    """The public MFAS code's temperature form, with the step index corrected.

    `T_s = (T_max - T_min) * exp(-(s + 1) ** 2 / decay ** 2) + T_min`: a
    Gaussian-shaped decay that starts just below `T_max` (at `s = 0` it is
    already `(T_max - T_min) exp(-1 / decay^2) + T_min`), approaches
    `T_min` without reaching it, and whose speed is set by `decay` (in
    steps) instead of by the number of steps. The public code evaluates it
    at `e * E_search + l`; pass the corrected index `s = e * L + l` here
    (as `FusionArchitectureSearch(temperature_schedule="gaussian")` does),
    so every (iteration, level) step gets its own temperature.

    Args:
        step: the 0-based step index `e * L + l`.
        t_max, t_min: temperature range (`0 < t_min <= t_max`).
        decay: the decay constant, in steps (positive).

    Returns:
        The temperature, a float.

    Example:

    >>> round(gaussian_temperature_at(0, 10.0, 0.2, 4.0), 3)
    9.406
    >>> round(gaussian_temperature_at(11, 10.0, 0.2, 4.0), 3)
    0.201
    """
    fn = "gaussian_temperature_at"
    _positive(t_max, "t_max", fn)
    _positive(t_min, "t_min", fn)
    _positive(decay, "decay", fn)
    if t_min > t_max:
        raise ValueError(
            f"{fn} expected t_min <= t_max. Received: t_min={t_min!r}, t_max={t_max!r}"
        )
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(
            f"{fn} expected `step` to be an integer >= 0. Received: step={step!r}"
        )
    return float((t_max - t_min) * math.exp(-((step + 1.0) ** 2) / decay**2) + t_min)


def sampling_probabilities(scores, temperature):
    """`P_i` proportional to `score_i ** (1 / T)` (computed in log space).

    Args:
        scores: predicted accuracies (positive; values are clipped to at
            least 1e-6 so that a zero score keeps a tiny probability).
        temperature: `T > 0`.

    Returns:
        float64 NumPy array of probabilities summing to 1.

    Example:

    >>> sampling_probabilities([0.2, 0.8], 1.0).round(3).tolist()
    [0.2, 0.8]
    >>> sampling_probabilities([0.2, 0.8], 0.5).round(3).tolist()
    [0.059, 0.941]
    """
    _positive(temperature, "temperature", "sampling_probabilities")
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.size == 0 or not np.all(np.isfinite(scores)):
        raise ValueError(
            "sampling_probabilities expected a non-empty list of finite "
            f"scores. Received: {scores.tolist()!r}"
        )
    logits = np.log(np.clip(scores, 1e-6, None)) / temperature
    logits -= logits.max()
    p = np.exp(logits)
    return p / p.sum()


def sample_k(rng, candidates, scores, k, temperature):
    """`sampleK` of Algorithm 1: `k` distinct candidates, without replacement.

    Args:
        rng: a `numpy.random.Generator`.
        candidates: list of descriptions.
        scores: their predicted accuracies.
        k: how many to draw (all of them if fewer candidates).
        temperature: sampling temperature.

    Returns:
        The chosen candidates, in draw order.
    """
    if len(candidates) != len(scores):
        raise ValueError(
            "sample_k expected one score per candidate. Received "
            f"{len(candidates)} candidates and {len(scores)} scores."
        )
    p = sampling_probabilities(scores, temperature)
    k = min(int(k), len(candidates))
    index = rng.choice(len(candidates), size=k, replace=False, p=p)
    return [candidates[int(i)] for i in index]
