#!/usr/bin/python3
"""A real HTTP(S) receiver for the webhook sink's tests, and the checks run
on what it received.

  http_peer.py serve --log FILE --port-file FILE [--port N] [--status N]
               [--status-file FILE] [--retry-after V] [--reply TEXT]
               [--tls-cert PEM --tls-key PEM]
      Binds 127.0.0.1 (port 0 = any; the port is written to --port-file once
      listening) and answers every POST with --status, or with what
      --status-file says when that file exists: "STATUS [RETRY_AFTER]", read
      per request, so a test can switch it. 429 and 503 carry Retry-After: V
      when given; V = +N sends the HTTP date N seconds ahead. Each request
      is appended to --log as one JSON line: t (time.time()), peer port,
      path, headers, body (text), status. Runs until SIGTERM.

  http_peer.py check LOG --source S --count N [--allow-dups]
               [--expect-labels JSON]
      Every request body is a JSON array of objects; among the requests
      answered 2xx, events of source S carry seq 1..N, each exactly once
      (at least once with --allow-dups), and each has the labels given.
      Prints a summary; exit 0 when all holds, 1 (saying what is wrong) if not.

  http_peer.py alerts LOG
      Prints each element of each 2xx-answered body as one JSON line (sorted
      keys), with "_startsAt_ok"/"_endsAt_ok" set when those parse as
      RFC 3339 times.
"""
import argparse
import datetime
import email.utils
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(a):
    lock = threading.Lock()
    log = open(a.log, "a", encoding="utf-8")

    def status_now():
        if a.status_file:
            try:
                with open(a.status_file) as f:
                    words = f.read().split()
                return int(words[0]), words[1] if len(words) > 1 else a.retry_after
            except (OSError, ValueError, IndexError):
                pass
        return a.status, a.retry_after

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sink expects

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(n)
            status, retry_after = status_now()
            rec = {
                "t": time.time(),
                "peer_port": self.client_address[1],
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items()},
                "status": status,
                "utf8": True,
            }
            try:
                rec["body"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                rec["body"] = raw.decode("utf-8", "replace")
                rec["utf8"] = False
            with lock:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            reply = (a.reply if status >= 300 else "").encode()
            self.send_response(status)
            if retry_after and status in (429, 503):
                if retry_after.startswith("+"):
                    when = time.time() + float(retry_after[1:])
                    retry_after = email.utils.formatdate(when, usegmt=True)
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, fmt, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, a.port_file)  # the reader never sees half a number
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv.serve_forever()


def records(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def check(a):
    want = json.loads(a.expect_labels) if a.expect_labels else {}
    seen = {}
    problems = []
    requests = events = 0
    for r in records(a.log):
        requests += 1
        if not r["utf8"]:
            problems.append("a request body is not UTF-8")
            continue
        try:
            body = json.loads(r["body"])
        except ValueError as e:
            problems.append("a request body is not JSON: %s" % e)
            continue
        if not isinstance(body, list):
            problems.append("a request body is not a JSON array")
            continue
        if not 200 <= r["status"] < 300:
            continue
        for ev in body:
            events += 1
            if ev.get("source") != a.source:
                continue
            seen[ev["seq"]] = seen.get(ev["seq"], 0) + 1
            for k, v in want.items():
                got = ev.get("labels", {}).get(k)
                if got != v:
                    problems.append("seq %s: labels.%s is %r, not %r" % (ev["seq"], k, got, v))
    missing = [s for s in range(1, a.count + 1) if s not in seen]
    dups = [s for s, c in seen.items() if c > 1]
    extra = [s for s in seen if not 1 <= s <= a.count]
    if missing:
        problems.append("%d seqs missing, e.g. %s" % (len(missing), missing[:10]))
    if dups and not a.allow_dups:
        problems.append("%d seqs delivered twice or more, e.g. %s" % (len(dups), dups[:10]))
    if extra:
        problems.append("unexpected seqs %s" % extra[:10])
    print("requests=%d events=%d distinct=%d dups=%d" % (requests, events, len(seen), len(dups)))
    for p in problems[:20]:
        print("problem: " + p)
    return 1 if problems else 0


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def rfc3339_ok(s):
    if not isinstance(s, str) or not RFC3339.match(s):
        return False
    # Python wants at most 6 fractional digits.
    s = re.sub(r"\.(\d{6})\d*", r".\1", s).replace("Z", "+00:00")
    try:
        datetime.datetime.fromisoformat(s)
        return True
    except ValueError:
        return False


def alerts(a):
    for r in records(a.log):
        if not 200 <= r["status"] < 300:
            continue
        for al in json.loads(r["body"]):
            for k in ("startsAt", "endsAt"):
                if k in al:
                    al["_%s_ok" % k] = rfc3339_ok(al[k])
            print(json.dumps(al, sort_keys=True, ensure_ascii=False))
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--log", required=True)
    s.add_argument("--port-file", required=True)
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--status", type=int, default=200)
    s.add_argument("--status-file")
    s.add_argument("--retry-after")
    s.add_argument("--reply", default="request refused by the test peer")
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    c = sub.add_parser("check")
    c.add_argument("log")
    c.add_argument("--source", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--allow-dups", action="store_true")
    c.add_argument("--expect-labels")
    al = sub.add_parser("alerts")
    al.add_argument("log")
    a = p.parse_args()
    if a.cmd == "serve":
        return serve(a)
    return check(a) if a.cmd == "check" else alerts(a)


if __name__ == "__main__":
    sys.exit(main())
