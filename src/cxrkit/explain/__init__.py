"""cxrkit.explain (see DESIGN.md layers)."""
