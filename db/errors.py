"""What the database gateway raises when a caller hands it something it refuses."""

from __future__ import annotations


class DataValidationError(ValueError):
    """A batch was rejected before anything of it was written (or a read's rows were not what
    the caller said they are)."""


class UnsafeQueryError(ValueError):
    """Query parameters were not a mapping of placeholder name to value."""
