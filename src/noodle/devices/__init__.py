"""TEMPORARY stub."""
def devices():  # noqa: D103
    return []
class GPUAccelerator:  # noqa: D101
    pass
