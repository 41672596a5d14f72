"""TEMPORARY stub."""
class Matrix:  # noqa: D101
    pass
