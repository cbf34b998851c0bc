"""The model zoo: ``create_model(name, **options)`` and ``list_models()``."""

from . import u2net  # noqa: F401  (registers the U2-Net family)
from .registry import create_model, list_models, register_model
from .u2net import TASKS, InferenceModel, U2NetMD

__all__ = ["TASKS", "InferenceModel", "U2NetMD", "create_model", "list_models", "register_model"]
