"""Python function -> NIR, by calling it with :class:`Tracer` stand-ins."""

from noodle.trace.tracer import Tracer, is_array, native_byte_order, trace, user_location

__all__ = ["Tracer", "is_array", "native_byte_order", "trace", "user_location"]
