"""Eager array ops and the Matrix type, placed per call by the placement engine."""
