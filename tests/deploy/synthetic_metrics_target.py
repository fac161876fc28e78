#!/usr/bin/env python3
"""A stand-in metrics endpoint with the router's or the worker's metric
families (tests/deploy/metric_names.txt), for testing the dashboard and the
Prometheus integration script before, and independently of, the real
binaries. It serves nothing but /metrics and /turn; it is not a model of the
services' behaviour, only of their exposition.

  serve --role worker|router --port-file F
      binds 127.0.0.1:0, writes the port to F, serves until SIGTERM.
      GET /metrics: Prometheus text format, all families present at 0.
      GET /turn?prompt=P&cached=C&commit_s=D (worker) or
          /turn?decision=sticky|placed|failover&ttft_s=T (router): records one turn.
  drive --worker HOST:PORT... --router HOST:PORT --turns N --seed S
        [--usage FILE] [--misreport]
      sends N turns (seeded), spread over the workers, and appends the
      client-side usage line "<prompt> <cached>" per turn to FILE;
      --misreport makes the last line disagree by one cached token.
"""

import argparse
import os
import random
import signal
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LATENCY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Histogram:
    def __init__(self, bounds):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, v):
        i = next((i for i, b in enumerate(self.bounds) if v <= b), len(self.bounds))
        self.counts[i] += 1
        self.sum += v

    def lines(self, name):
        out, cum = [], 0
        for b, c in zip(list(self.bounds) + ["+Inf"], self.counts):
            cum += c
            out.append(f'{name}_bucket{{le="{b}"}} {cum}')
        out += [f"{name}_sum {self.sum!r}", f"{name}_count {cum}"]
        return out


class Target:
    def __init__(self, role):
        self.role = role
        self.lock = threading.Lock()
        self.counters = {}
        self.gauges = {}
        self.hists = {}
        if role == "worker":
            for n in ("hc_worker_prefix_cache_queries_total", "hc_worker_prefix_cache_hits_total"):
                self.counters[(n, "")] = 0
            for r in ("hit", "miss"):
                self.counters[("hc_worker_conversation_lookups_total", f'result="{r}"')] = 0
            for o in ("committed", "discarded"):
                self.counters[("hc_worker_commits_total", f'outcome="{o}"')] = 0
            for g in ("full_attention", "mamba"):
                self.counters[("hc_worker_cow_copies_total", f'group="{g}"')] = 0
                self.counters[("hc_worker_evictions_total", f'group="{g}"')] = 0
            for s, v in (("free", 1000), ("committed", 0), ("active", 0)):
                self.gauges[("hc_worker_kv_blocks", f'state="{s}"')] = v
            for s, v in (("free", 64), ("committed", 0), ("active", 0)):
                self.gauges[("hc_worker_mamba_slots", f'state="{s}"')] = v
            self.gauges[("hc_worker_num_requests_running", "")] = 0
            self.gauges[("hc_worker_num_requests_waiting", "")] = 0
            for r in ("queue_full", "draining"):
                self.counters[("hc_worker_rejected_requests_total", f'reason="{r}"')] = 0
            self.hists["hc_worker_commit_duration_seconds"] = Histogram(LATENCY_BUCKETS)
            self.hists["hc_worker_time_to_first_token_seconds"] = Histogram(TTFT_BUCKETS)
            self.hists["hc_worker_inter_token_latency_seconds"] = Histogram(TTFT_BUCKETS)
        else:
            self.counters[("hc_router_requests_total", 'code="OK"')] = 0
            for d in ("sticky", "placed", "failover"):
                self.counters[("hc_router_routing_decisions_total", f'decision="{d}"')] = 0
            self.gauges[("hc_router_conversations", "")] = 0
            self.counters[("hc_router_conversations_expired_total", "")] = 0
            self.counters[("hc_router_conversations_refused_total", "")] = 0
            self.gauges[("hc_router_workers", 'state="healthy"')] = 2
            self.gauges[("hc_router_workers", 'state="unhealthy"')] = 0
            self.hists["hc_router_time_to_first_token_seconds"] = Histogram(TTFT_BUCKETS)
            self.hists["hc_router_request_duration_seconds"] = Histogram(TTFT_BUCKETS)

    def turn(self, q):
        with self.lock:
            if self.role == "worker":
                prompt, cached = int(q["prompt"]), int(q["cached"])
                self.counters[("hc_worker_prefix_cache_queries_total", "")] += prompt
                self.counters[("hc_worker_prefix_cache_hits_total", "")] += cached
                self.counters[("hc_worker_conversation_lookups_total", f'result="{"hit" if cached else "miss"}"')] += 1
                self.counters[("hc_worker_commits_total", 'outcome="committed"')] += 1
                self.hists["hc_worker_commit_duration_seconds"].observe(float(q["commit_s"]))
                self.hists["hc_worker_time_to_first_token_seconds"].observe(0.001 * (prompt - cached + 1))
                self.hists["hc_worker_inter_token_latency_seconds"].observe(0.01)
                self.gauges[("hc_worker_kv_blocks", 'state="committed"')] = min(1000, prompt // 16)
                self.gauges[("hc_worker_kv_blocks", 'state="free"')] = 1000 - min(1000, prompt // 16)
            else:
                self.counters[("hc_router_requests_total", 'code="OK"')] += 1
                self.counters[("hc_router_routing_decisions_total", f'decision="{q["decision"]}"')] += 1
                self.gauges[("hc_router_conversations", "")] += q["decision"] == "placed"
                self.hists["hc_router_time_to_first_token_seconds"].observe(float(q["ttft_s"]))
                self.hists["hc_router_request_duration_seconds"].observe(float(q["ttft_s"]) * 4)

    def exposition(self):
        with self.lock:
            out = []
            for kind, series in (("counter", self.counters), ("gauge", self.gauges)):
                for name in sorted({n for n, _ in series}):
                    out.append(f"# HELP {name} {name}")
                    out.append(f"# TYPE {name} {kind}")
                    for (n, labels), v in sorted(series.items()):
                        if n == name:
                            out.append(f"{n}{{{labels}}} {v}" if labels else f"{n} {v}")
            for name, h in sorted(self.hists.items()):
                out += [f"# HELP {name} {name}", f"# TYPE {name} histogram"] + h.lines(name)
            return "\n".join(out) + "\n"


def serve(args):
    target = Target(args.role)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            url = urllib.parse.urlparse(self.path)
            if url.path == "/metrics":
                body = target.exposition().encode()
                ctype = "text/plain; version=0.0.4"
            elif url.path == "/turn":
                target.turn(dict(urllib.parse.parse_qsl(url.query)))
                body, ctype = b"ok\n", "text/plain"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()
    return 0


def drive(args):
    rng = random.Random(args.seed)
    history = {}
    lines = []
    for t in range(args.turns):
        conv = rng.randrange(max(1, args.turns // 4))
        w = args.worker[conv % len(args.worker)]
        prev = history.get(conv, 0)
        prompt = prev + rng.randint(8, 200)
        cached = prev  # the whole committed context is reused
        commit_s = rng.choice((2e-5, 4e-5, 8e-5, 2e-4, 7e-4))
        urllib.request.urlopen(f"http://{w}/turn?prompt={prompt}&cached={cached}&commit_s={commit_s}", timeout=5).read()
        decision = "placed" if conv not in history else "sticky"
        urllib.request.urlopen(f"http://{args.router}/turn?decision={decision}&ttft_s={0.01 + 0.0001 * (prompt - cached)}",
                               timeout=5).read()
        history[conv] = prompt + rng.randint(1, 50)  # + the generated tokens
        lines.append([prompt, cached])
    if args.misreport:
        lines[-1][1] += 1
    if args.usage:
        with open(args.usage, "a") as f:
            f.writelines(f"{p} {c}\n" for p, c in lines)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--role", choices=("worker", "router"), required=True)
    p.add_argument("--port-file", required=True)
    p = sub.add_parser("drive")
    p.add_argument("--worker", action="append", required=True)
    p.add_argument("--router", required=True)
    p.add_argument("--turns", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--usage")
    p.add_argument("--misreport", action="store_true")
    args = ap.parse_args(argv)
    return serve(args) if args.cmd == "serve" else drive(args)


if __name__ == "__main__":
    sys.exit(main())
