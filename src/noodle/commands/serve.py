"""``noodle serve``: the monitoring HTTP API and live dashboard.

Binds 127.0.0.1 unless told otherwise, because the API shows what this
machine is doing; expose it on purpose with ``--host 0.0.0.0``. Ctrl-C, SIGINT or SIGTERM
stop it and save the history (even when it was started with ``&``, which leaves SIGINT
ignored); ``kill -USR1 <pid>`` writes every thread's stack to its stderr.
"""

from __future__ import annotations

import argparse

NAME = "serve"
HELP = "serve the monitoring API and live dashboard (http://127.0.0.1:8080/ by default)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = any free port)")
    p.add_argument("--interval", type=float, default=None,
                   help="sampler interval in seconds (default NOODLE_SYNTAX_FIXER_MONITORING_INTERVAL, >= 1)")
    p.add_argument("--history", default=None, metavar="FILE",
                   help="load this history file first and save to it on exit")


def main(args: argparse.Namespace) -> int:
    import faulthandler
    import signal
    from pathlib import Path

    from noodle.monitor.core import Monitor
    from noodle.monitor.history import History
    from noodle.monitor.server import MonitorServer

    if hasattr(signal, "SIGUSR1"):
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        except (RuntimeError, ValueError, OSError):  # no usable stderr (a daemon): no dumps, still serve
            pass
    # SIGINT and SIGTERM stop the server and save the history, whatever this process inherited: a
    # server started with `&` from a script inherits SIGINT *ignored* (POSIX), and asyncio then
    # leaves it ignored, so Ctrl-C and `kill -INT` did nothing (CI's hang). SIGTERM takes the same path.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    monitor = Monitor(interval=args.interval)
    if args.history and Path(args.history).exists():
        monitor.history = History.load(args.history)
    server = MonitorServer(monitor, args.host, args.port)
    monitor.start()
    print(f"noodle monitor: dashboard at {server.url}/  (API under {server.url}/api/, Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        monitor.stop()
        if args.history:
            monitor.history.save(args.history)
            print(f"history saved to {args.history}")
    return 0
