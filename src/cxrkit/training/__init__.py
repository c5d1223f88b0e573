"""cxrkit.training (see DESIGN.md layers)."""
