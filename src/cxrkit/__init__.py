"""cxrkit: a workbench for deep learning on chest X-rays."""

__version__ = "0.1.0"
