"""noodle.store: the math-object store (SQLite by default, PostgreSQL by URL) with cached queries.

Example::

    import numpy as np, noodle as nd
    store = nd.store.MathStore("sqlite:///objects.db")
    store.put("weights", np.eye(3), {"layer": 1})
    store.get("weights").array
    store.query("SELECT name FROM noodle_objects WHERE name LIKE ?", ("w%",))
"""

from noodle.store.mathstore import MathObject, MathStore, tables_read, tables_written

__all__ = ["MathObject", "MathStore", "tables_read", "tables_written"]
