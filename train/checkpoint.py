"""Training checkpoints (``runs/NAME/last.pt``, written by :func:`train.fit.main`) read back as a model.

A checkpoint is a ``torch.save`` dict: ``model`` (state dict), ``opt``, ``step``, ``elapsed``, ``log``,
``config`` (:meth:`ModelConfig.to_dict`), ``skeleton`` (:meth:`Skeleton.to_dict`) and ``meta`` (the model pack
metadata so far). Its own module so that both :mod:`train.fit` and :mod:`train.export` use it without
importing each other.
"""

from __future__ import annotations

import torch

from rtik.geometry.skeleton import Skeleton
from train.model import IKModel, ModelConfig


def load_checkpoint(path) -> tuple[IKModel, dict]:
    """``(model, pack metadata)`` from a checkpoint written by :func:`train.fit.main`; the model in eval mode."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = IKModel(Skeleton.from_dict(ck["skeleton"]), ModelConfig(**ck["config"]))
    model.load_state_dict(ck["model"])
    return model.eval(), ck["meta"]
