"""cxrkit.training (see docs/ARCHITECTURE.md)."""
