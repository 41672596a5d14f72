"""Code generation targets. One module per target, each importing its toolchain lazily.

The contract between the JIT front end (trace, passes, fusion) and every
backend is :mod:`noodle.backends.spec`: a fused region arrives as a
:class:`~noodle.backends.spec.KernelSpec` (elementwise chain, optionally
reduced) or a :class:`~noodle.backends.spec.MatmulSpec` (a product with a fused
elementwise epilogue). A new backend implements the same interface and never
touches the others.
"""

from noodle.backends.registry import available_backends, backend_names, get_backend  # noqa: E402

__all__ = ["available_backends", "backend_names", "get_backend"]
