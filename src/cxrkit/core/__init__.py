"""Shared vocabulary of cxrkit: tasks, label spaces, errors and settings."""

from cxrkit.core.errors import (
    BundleError,
    ConfigError,
    CxrkitError,
    DataFormatError,
    ImageDecodeError,
    LeakageError,
    UnknownNameError,
    WeightsUnavailableError,
)
from cxrkit.core.task import LabelSpace, TaskType

__all__ = [
    "BundleError",
    "ConfigError",
    "CxrkitError",
    "DataFormatError",
    "ImageDecodeError",
    "LabelSpace",
    "LeakageError",
    "TaskType",
    "UnknownNameError",
    "WeightsUnavailableError",
]
