"""cxrkit.search (see DESIGN.md layers)."""
