"""Statistics of a score over seeds, shared by the sweep summary and the comparison by variant."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Stats:
    n: int
    median: float
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for a single run
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        a = np.asarray(values, dtype=float)
        std = float(np.std(a, ddof=1)) if len(a) > 1 else math.nan
        return cls(len(a), float(np.median(a)), float(np.mean(a)), std, float(a.min()), float(a.max()))
