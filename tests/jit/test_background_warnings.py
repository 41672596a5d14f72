"""A background compile never changes the warnings state the program's own threads see.

``warnings.catch_warnings`` swaps module-wide state and is not thread-safe; Numba enters it while
compiling, and noodle compiles on background threads. Before the fix, a user's
``with warnings.catch_warnings(record=True)`` block lost warnings (or kept a temporary filter for
good) whenever a background compile overlapped it.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
import warnings

import numpy as np

import noodle as nd
from noodle.jit.manager import default_manager


def test_a_background_compile_leaves_the_callers_warnings_state_alone():
    c = 1.0 + (uuid.uuid4().int % 10_000) / 1e5     # a program Numba has not compiled in this process
    f = nd.jit(lambda a: np.tanh(a * c) + a * a - c, hot_threshold=1, backend="numba")
    x = np.linspace(-2.0, 2.0, 1000)
    seen_other_state = 0
    polls = 0
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        filters, show, impl = warnings.filters, warnings.showwarning, warnings._showwarnmsg_impl
        np.testing.assert_array_equal(f(x), np.tanh(x * c) + x * x - c)    # queues the compile
        while default_manager()._queue.unfinished_tasks:
            polls += 1
            if (warnings.filters is not filters or warnings.showwarning is not show
                    or warnings._showwarnmsg_impl is not impl):
                seen_other_state += 1
            warnings.warn(f"poll {polls}", UserWarning, stacklevel=1)
            time.sleep(0.0002)
    assert f.state(x).status == "compiled", f.state(x).reason
    assert polls > 0 and seen_other_state == 0, f"{seen_other_state} of {polls} polls saw another warnings state"
    assert [str(w.message) for w in record] == [f"poll {i}" for i in range(1, polls + 1)]   # none lost
    np.testing.assert_array_equal(f(x), np.tanh(x * c) + x * x - c)


def test_numbas_modules_get_the_thread_local_warnings_whichever_was_imported_first():
    code = (
        "import sys\n"
        "{first}\n{second}\n"
        "import numba, noodle._numba_warnings as nw\n"
        "from numba.core.errors import WarningsFixer, NumbaWarning\n"
        "import warnings\n"
        "for name in nw.PATCHED:\n"
        "    assert sys.modules[name].warnings is nw.LOCAL_WARNINGS, name\n"
        "before = warnings.filters\n"
        "with warnings.catch_warnings(record=True) as got:\n"
        "    warnings.simplefilter('always')\n"
        "    fixer = WarningsFixer(NumbaWarning)\n"
        "    with fixer.catch_warnings():\n"
        "        warnings.warn('raised while compiling', UserWarning)\n"
        "assert [str(w.message) for w in got] == ['raised while compiling'], got\n"
        "assert warnings.filters is before\n"
        "@numba.njit\n"
        "def f(a):\n"
        "    return a.sum()\n"
        "import numpy as np\n"
        "assert f(np.arange(5.0)) == 10.0\n"
    )
    for first, second in (("import numba", "import noodle"), ("import noodle", "import numba")):
        done = subprocess.run([sys.executable, "-c", code.format(first=first, second=second)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (first, done.stderr[-3000:])
