"""cxrkit.serving (see DESIGN.md layers)."""
