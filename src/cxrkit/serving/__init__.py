"""cxrkit.serving (see docs/ARCHITECTURE.md)."""
