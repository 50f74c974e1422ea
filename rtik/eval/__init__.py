"""Evaluation: how well a method recovers rotations from held-out clips (``rtik eval``; imports
:mod:`rtik.solve` and below).

- :mod:`~rtik.eval.metrics`: the error measures of the design notes (:class:`Errors`, :func:`clip_errors`);
- :mod:`~rtik.eval.conditions`: input corruptions (noise, occlusion, outliers), shared with training;
- :mod:`~rtik.eval.baselines`: the classical baselines (analytic IK, with the prior, with One Euro);
- :mod:`~rtik.eval.evaluation`: splits, loading clips, running methods (:func:`evaluate`);
- :mod:`~rtik.eval.report`: the table, JSON and per-joint PNG.
"""

from rtik.eval import baselines, conditions, evaluation, metrics, report
from rtik.eval.conditions import CONDITIONS, apply_condition
from rtik.eval.evaluation import METHODS, Split, evaluate, load_clips
from rtik.eval.metrics import Errors, clip_errors

__all__ = [
    "CONDITIONS",
    "METHODS",
    "Errors",
    "Split",
    "apply_condition",
    "baselines",
    "clip_errors",
    "conditions",
    "evaluate",
    "evaluation",
    "load_clips",
    "metrics",
    "report",
]
