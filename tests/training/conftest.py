"""Training tests use the session fixtures ``learnable`` and ``trained`` of tests/conftest.py."""

from __future__ import annotations

from tests.conftest import make_learnable_folder  # noqa: F401  (imported from here by older tests)
