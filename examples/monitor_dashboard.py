"""Live dashboard: sample this process while it runs noodle ops, serve the API and dashboard.

    python examples/monitor_dashboard.py --seconds 60        # then open http://127.0.0.1:8080/
    python examples/monitor_dashboard.py --seconds 15 --port 0 --screenshot docs/dashboard.png \
        --chromium /usr/bin/chromium                          # how docs/dashboard.png was made

``noodle serve`` does the same for an otherwise idle process; ``noodle run --dashboard
script.py`` for a script.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time

import numpy as np

import noodle as nd
from noodle.monitor import AlertRule, Monitor, serve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--screenshot", default=None, help="save a PNG of the dashboard at the end")
    p.add_argument("--chromium", default="chromium", help="headless Chromium binary for --screenshot")
    args = p.parse_args()

    monitor = Monitor(interval=1.0)
    # a demo rule that fires once the process has done 2000 ops in one tick
    monitor.alerts.add_rule(AlertRule("busy_ops", "d_ops", {"info": 2000}, "many noodle ops per second"))
    monitor.start()
    server = serve(monitor, port=args.port)
    print(f"dashboard: {server.url}/", flush=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 200))
    end = time.time() + args.seconds
    step = 0
    while time.time() < end:
        size = 1000 if step % 20 < 10 else 200_000  # alternate small and large ops
        a = rng.standard_normal(size)
        nd.add(a, a)
        nd.exp(nd.multiply(a, 0.5))
        if step % 5 == 0:
            nd.matmul(x, x)
        step += 1
        time.sleep(0.002)
    if args.screenshot:
        with tempfile.TemporaryDirectory() as profile_dir:
            subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--no-first-run", "--disable-background-networking", "--disable-sync",
                            f"--user-data-dir={profile_dir}", "--virtual-time-budget=5000",
                            "--window-size=1280,860", f"--screenshot={args.screenshot}", server.url + "/"],
                           check=True, capture_output=True, timeout=120)
        print("screenshot:", args.screenshot)
    server.stop()
    monitor.stop()


if __name__ == "__main__":
    main()
