#!/usr/bin/env python3
"""The prometheus sink's scrape cost: vigild (from a build tree) with only
the prometheus sink, N series published through vigil-pub, then

  * memory per series: vigild's RSS with the N series less its RSS before
    them, over N;
  * render time: the wall time of GET /metrics (median and max of 5),
    rendering and transfer; the sink renders 4096 series per turn of its
    loop, so a scrape holds back its reading of the bus for about 4096
    times the time per series at most.

  tools/bench/prometheus.py [BUILD_DIR [SERIES]]   (default build-release, 100000)

Loopback only; the folder it makes is removed at the end.
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, accept=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def main():
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(src, "build-release"))
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    d = tempfile.mkdtemp(prefix="vigil-prom-bench.")
    port = free_port()
    cfg = os.path.join(d, "vigil.yaml")
    with open(cfg, "w") as f:
        f.write(f"""host: bench
plugin_dir: {build}/plugins
state_dir: {d}/state
bus:
  publish: ipc://{d}/pub
  subscribe: ipc://{d}/sub
self:
  interval: 1h
sinks:
  - plugin: prometheus
    match: bench.
    listen: 127.0.0.1:{port}
    max_series: {n + 1000}
    expire: 1h
""")
    vd = subprocess.Popen([f"{build}/vigild", "-c", cfg], stderr=open(os.path.join(d, "log"), "w"))
    try:
        for _ in range(100):
            try:
                get(port)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)
        before = rss_kib(vd.pid)
        # Series as a cgroups source makes them: one label of ~40 bytes each.
        lines = "".join(
            f'{{"labels":{{"cgroup":"/kubepods/burstable/pod{i:08d}/c{i % 7}"}},"values":{{"v":{i}}}}}\n'
            for i in range(n)
        ).encode()
        subprocess.run([f"{build}/vigil-pub", "-c", cfg, "-t", "bench.series"], input=lines, check=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            body = get(port)
            if body.count(b"\nvigil_bench_series_v{") >= n:
                break
            time.sleep(0.5)
        else:
            sys.exit(f"only {body.count(b'vigil_bench_series_v{')} of {n} series arrived")
        with_series = rss_kib(vd.pid)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            body = get(port)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        om = get(port, "application/openmetrics-text; version=1.0.0")
        om_time = time.perf_counter() - t
        peak = 0
        with open(f"/proc/{vd.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
        print(f"series                 {n}")
        print(f"exposition             {len(body) / 1e6:.1f} MB text, {len(om) / 1e6:.1f} MB OpenMetrics")
        print(f"memory per series      {(with_series - before) * 1024 / n:.0f} bytes "
              f"(RSS {before / 1024:.1f} -> {with_series / 1024:.1f} MiB; peak {peak / 1024:.1f} MiB while scraping)")
        print(f"GET /metrics           median {statistics.median(times) * 1e3:.0f} ms, max {max(times) * 1e3:.0f} ms "
              f"(OpenMetrics {om_time * 1e3:.0f} ms)")
        per = statistics.median(times) / n
        print(f"per series             {per * 1e9:.0f} ns (a slice of 4096: {per * 4096 * 1e3:.1f} ms)")
    finally:
        vd.terminate()
        vd.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
