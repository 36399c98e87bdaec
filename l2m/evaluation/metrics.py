"""Relative-pose accuracy metrics: the "SuperGlue AUC" used by LoFTR, RoMa, glue-factory and GIM.

The formula is the one written down in ../shared/spec/benchmark_protocol.md section 2.2: failures stay in
the denominator with infinite error, the recall polyline starts at (0, 0), errors equal to the threshold
do not count.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def pose_auc(errors: Iterable[float], thresholds: Sequence[float] = (5, 10, 20)) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, divided by it (values in [0, 1])."""
    errors = np.sort(np.asarray(list(errors), dtype=np.float64))
    if errors.size == 0:
        return [0.0 for _ in thresholds]
    errors = np.nan_to_num(errors, nan=np.inf)
    recall = np.arange(1, len(errors) + 1) / len(errors)
    errors = np.concatenate([[0.0], errors])
    recall = np.concatenate([[0.0], recall])
    aucs = []
    for t in thresholds:
        last = int(np.searchsorted(errors, t, side="left"))
        r = np.concatenate([recall[:last], [recall[last - 1]]])
        e = np.concatenate([errors[:last], [t]])
        aucs.append(float(np.trapezoid(r, x=e) / t))
    return aucs


def mean_average_accuracy(errors: Iterable[float], thresholds: Sequence[float] = (5, 10, 20)) -> float:
    """glue-factory's mAA: the mean of pose_auc over the thresholds."""
    return float(np.mean(pose_auc(errors, thresholds)))
