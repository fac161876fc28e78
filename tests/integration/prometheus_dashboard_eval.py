#!/usr/bin/env python3
"""Helper of prometheus_dashboard_test.sh: talks to the Prometheus HTTP API
and compares what the dashboard's queries say with what the targets and the
clients saw.

  wait-ready PROM_URL TIMEOUT_S
      until /-/ready answers 200.
  wait-scraped PROM_URL N_TARGETS TIMEOUT_S
      until every target is up and has been scraped at least twice.
  wait-caught-up PROM_URL AFTER_DIR TIMEOUT_S
      until Prometheus' latest sum of hc_worker_prefix_cache_queries_total and
      hc_worker_commit_duration_seconds_count equals the direct scrapes in
      AFTER_DIR (so it has seen the last turn).
  wait-more-samples PROM_URL N_SAMPLES TIMEOUT_S
      until every target has been scraped N_SAMPLES more times than when called.
  wait-stopped PROM_URL SCRAPE_INTERVAL TIMEOUT_S
      until Prometheus has no scrape target left (after a reload with an empty
      scrape config), then prints the evaluation time: a whole second at least
      SCRAPE_INTERVAL (e.g. 250ms) after that, so every series ends a whole
      scrape interval before it.
  evaluate --prom URL --dashboard FILE --before DIR --after DIR --window D
           --time T [--usage FILE] [--expect-turns N] [--tolerance X]
      evaluates the dashboard's "Prefix cache hit rate" (A: overall, B: per
      pod) and "Commit latency" (A: p50, B: p99) queries at time T with
      $__rate_interval = D, and checks them against the counter deltas of the
      direct scrapes (BEFORE -> AFTER) and the clients' usage lines
      ("<prompt_tokens> <cached_tokens>", one per turn). Every other dashboard
      query must evaluate without an error.
Direct scrapes are files named <pod>.metrics (pod = the target's `pod` label).
"""

import argparse
import glob
import json
import math
import os
import re
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "deploy"))
import check_metric_names  # noqa: E402

_SAMPLE_RE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:\\.|[^"\\])*)"')


def get_json(url, params=None, timeout=10):
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def query(prom, expr, at=None):
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    body = get_json(prom + "/api/v1/query", params)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def scalar_results(result):
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in result}


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of a /metrics text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if m:
            labels = frozenset(_LABEL_RE.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def load_dir(path):
    return {os.path.basename(f)[: -len(".metrics")]: parse_metrics(open(f).read())
            for f in sorted(glob.glob(os.path.join(path, "*.metrics")))}


def total(samples, name, **match):
    return sum(v for (n, labels), v in samples.items()
               if n == name and all((k, val) in labels for k, val in match.items()))


def buckets(samples, name):
    """{le: cumulative count} of one histogram in one scrape."""
    out = {}
    for (n, labels), v in samples.items():
        if n == name + "_bucket":
            le = float(dict(labels)["le"].replace("+Inf", "inf"))
            out[le] = out.get(le, 0.0) + v
    return out


def _monotonic(cum):
    """Sorted [(le, count)] with each count raised to the largest before it
    (Prometheus' ensureMonotonic: rates of cumulative buckets summed over
    targets need not be monotonic)."""
    out, top = [], float("-inf")
    for le in sorted(cum):
        top = max(top, cum[le])
        out.append((le, top))
    return out


def _rank_bucket(q, buckets):
    """(index of the bucket holding the q-quantile's rank, rank), or None."""
    if len(buckets) < 2 or buckets[-1][0] != float("inf") or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    # Like Prometheus' sort.Search over all buckets but +Inf.
    b = next((i for i, (_, c) in enumerate(buckets[:-1]) if c >= rank), len(buckets) - 1)
    return b, rank


def bucket_quantile(q, cum):
    """Prometheus' histogram_quantile() (linear interpolation inside the
    bucket holding the rank) on {le: cumulative count}."""
    buckets = _monotonic(cum)
    found = _rank_bucket(q, buckets)
    if found is None:
        return float("nan")
    b, rank = found
    if b == len(buckets) - 1:
        return buckets[-2][0]
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, count = 0.0, buckets[b][1]
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    return start + (buckets[b][0] - start) * (rank / count)


def bucket_width(q, cum):
    """Width of the bucket holding the q-quantile's rank (0 for +Inf, whose
    quantile is the largest finite bound; NaN without observations)."""
    buckets = _monotonic(cum)
    found = _rank_bucket(q, buckets)
    if found is None:
        return float("nan")
    b = found[0]
    if b == len(buckets) - 1:
        return 0.0
    return buckets[b][0] - (buckets[b - 1][0] if b > 0 else min(0.0, buckets[0][0]))


def quantile_comparisons(q, got, prom_cum, metrics_cum):
    """[(what, got, want, tolerance)] for a dashboard quantile `got`.

    Exact: histogram_quantile's interpolation of the bucket rates Prometheus
    itself returns for the same inner expression at the same time, up to float
    rounding: this pins down the dashboard's query (quantile, sum by le).
    Against the /metrics histogram, one bucket width: rate() extrapolates every
    series by its own factor (its sample times, its first value), so the
    summed bucket rates are the /metrics bucket deltas only up to a scale that
    differs a little per target and per bucket; the interpolated quantile then
    moves inside its bucket, or just across an edge when the rank sits on one,
    by an amount that depends on scrape timing. What the histogram does
    determine is the bucket."""
    p = int(q * 100)
    want_exact = bucket_quantile(q, prom_cum)
    want = bucket_quantile(q, metrics_cum)
    return [
        (f"commit latency p{p} vs histogram_quantile of Prometheus' own bucket rates", got, want_exact,
         1e-9 * abs(want_exact) if not math.isnan(want_exact) else 0.0),
        (f"commit latency p{p} vs the /metrics histogram (within a bucket)", got, want,
         bucket_width(q, metrics_cum)),
    ]


_HQ_RE = re.compile(r"^\s*histogram_quantile\(\s*([0-9.eE+-]+)\s*,(.*)\)\s*$", re.S)


def split_histogram_quantile(expr):
    """(q, inner expression) of `histogram_quantile(q, inner)`, or None."""
    m = _HQ_RE.match(expr)
    return (float(m.group(1)), m.group(2).strip()) if m else None


def dashboard_targets(path):
    with open(path) as f:
        dash = json.load(f)
    out = {}

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out[(p.get("title"), t.get("refId"))] = t["expr"]
            walk(p.get("panels", []))
    walk(dash["panels"])
    return out


def expand(expr, window):
    expr = re.sub(r"\$__rate_interval|\$\{__rate_interval\}|\$__interval|\$__range", window, expr)
    return re.sub(r"\$\{?namespace\}?", ".*", expr)


def cmd_wait_ready(args):
    deadline = time.time() + float(args.timeout)
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(args.prom + "/-/ready", timeout=2) as r:
                if r.status == 200:
                    return 0
        except OSError:
            pass
        time.sleep(0.2)
    print(f"Prometheus at {args.prom} not ready after {args.timeout}s", file=sys.stderr)
    return 1


def cmd_wait_scraped(args):
    deadline = time.time() + float(args.timeout)
    n = int(args.n_targets)
    last = None
    while time.time() < deadline:
        try:
            up = query(args.prom, "up")
            seen = query(args.prom, "count_over_time(up[1h])")
            counts = [float(r["value"][1]) for r in seen]
            if len(up) == n and all(r["value"][1] == "1" for r in up) and len(counts) == n and min(counts) >= 2:
                return 0
            last = up
        except (OSError, RuntimeError) as e:
            last = e
        time.sleep(0.2)
    print(f"targets not all up and scraped twice after {args.timeout}s: {last}", file=sys.stderr)
    return 1


def cmd_wait_caught_up(args):
    after = load_dir(args.after)
    want = {
        "hc_worker_prefix_cache_queries_total": sum(total(s, "hc_worker_prefix_cache_queries_total") for s in after.values()),
        "hc_worker_commit_duration_seconds_count": sum(total(s, "hc_worker_commit_duration_seconds_count") for s in after.values()),
    }
    deadline = time.time() + float(args.timeout)
    got = {}
    while time.time() < deadline:
        got = {}
        for name in want:
            r = query(args.prom, f"sum({name})")
            got[name] = float(r[0]["value"][1]) if r else 0.0
        if got == want:
            return 0
        time.sleep(0.2)
    print(f"Prometheus did not catch up with the direct scrapes: want {want}, got {got}", file=sys.stderr)
    return 1


def scrape_counts(prom):
    """{(job, pod): samples of `up` so far} for every target."""
    return {(r["metric"].get("job"), r["metric"].get("pod")): float(r["value"][1])
            for r in query(prom, "count_over_time(up[1h])")}


def cmd_wait_more_samples(args):
    start = scrape_counts(args.prom)
    want = int(args.n_samples)
    deadline = time.time() + float(args.timeout)
    now = start
    while time.time() < deadline:
        now = scrape_counts(args.prom)
        if now.keys() == start.keys() and all(now[k] >= start[k] + want for k in start):
            return 0
        time.sleep(0.05)  # polling an external process, with a deadline
    print(f"targets not scraped {want} more times after {args.timeout}s: from {start} to {now}",
          file=sys.stderr)
    return 1


def parse_duration_s(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    if not m:
        raise ValueError(f"bad duration: {text}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]


def cmd_wait_stopped(args):
    interval = parse_duration_s(args.interval)
    deadline = time.time() + float(args.timeout)
    active = None
    while time.time() < deadline:
        active = get_json(args.prom + "/api/v1/targets")["data"]["activeTargets"]
        if not active:
            # The last sample was taken before the reload that removed them.
            print(math.ceil(time.time() + interval))
            return 0
        time.sleep(0.05)  # polling an external process, with a deadline
    print(f"Prometheus still scrapes {len(active)} target(s) after {args.timeout}s "
          "(was the reload with an empty scrape config applied?)", file=sys.stderr)
    return 1


def close(a, b, tol):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def cmd_evaluate(args):
    before, after = load_dir(args.before), load_dir(args.after)
    targets = dashboard_targets(args.dashboard)
    failures = []
    report = []

    def check(what, got, want, tol):
        ok = close(got, want, tol)
        report.append(f"{'ok  ' if ok else 'FAIL'} {what}: got {got:.6g}, expected {want:.6g} (tolerance {tol:g})")
        if not ok:
            failures.append(what)

    def prom_value(title, ref):
        key = (title, ref)
        if key not in targets:
            raise SystemExit(f"dashboard has no panel '{title}' query {ref}")
        return query(args.prom, expand(targets[key], args.window), at=float(args.time))

    hits = {p: total(after[p], "hc_worker_prefix_cache_hits_total") - total(before.get(p, {}), "hc_worker_prefix_cache_hits_total")
            for p in after}
    queries = {p: total(after[p], "hc_worker_prefix_cache_queries_total") - total(before.get(p, {}), "hc_worker_prefix_cache_queries_total")
               for p in after}
    worker_pods = [p for p in after if any(n.startswith("hc_worker_") for n, _ in after[p])]
    sum_q = sum(queries[p] for p in worker_pods)
    if sum_q <= 0:
        failures.append("no prompt tokens were looked up on the workers (did the turns run?)")
    else:
        want = sum(hits[p] for p in worker_pods) / sum_q
        r = prom_value("Prefix cache hit rate", "A")
        check("hit rate, all workers, vs /metrics deltas", float(r[0]["value"][1]) if r else float("nan"), want, args.tolerance)
        per_pod = {res["metric"].get("pod"): float(res["value"][1]) for res in prom_value("Prefix cache hit rate", "B")}
        for p in worker_pods:
            if queries[p] > 0:
                check(f"hit rate of {p} vs its /metrics deltas", per_pod.get(p, float("nan")),
                      hits[p] / queries[p], args.tolerance)
        if args.usage and os.path.exists(args.usage):
            lines = [l.split() for l in open(args.usage) if l.strip()]
            prompt = sum(int(l[0]) for l in lines)
            cached = sum(int(l[1]) for l in lines)
            if prompt:
                check(f"hit rate vs what the clients saw ({len(lines)} turns, {cached}/{prompt} tokens cached)",
                      float(r[0]["value"][1]) if r else float("nan"), cached / prompt, args.tolerance)
                # Token counts are exact: the workers counted what the clients were told.
                check("cached tokens on the workers vs the clients' cached_tokens",
                      sum(hits[p] for p in worker_pods), cached, 0)

    commits = sum(total(after[p], "hc_worker_commit_duration_seconds_count")
                  - total(before.get(p, {}), "hc_worker_commit_duration_seconds_count") for p in worker_pods)
    if args.expect_turns is not None:
        check("commits recorded by the workers vs turns the clients completed", commits, args.expect_turns, 0)
    cum = {}
    for p in worker_pods:
        b0 = buckets(before.get(p, {}), "hc_worker_commit_duration_seconds")
        for le, v in buckets(after[p], "hc_worker_commit_duration_seconds").items():
            cum[le] = cum.get(le, 0) + v - b0.get(le, 0)
    for ref, q in (("A", 0.5), ("B", 0.99)):
        r = prom_value("Commit latency", ref)
        got = float(r[0]["value"][1]) if r else float("nan")
        if commits > 0 and math.isnan(got):
            failures.append(f"commit latency p{int(q * 100)} is NaN after {commits:g} commits")
        parts = split_histogram_quantile(targets[("Commit latency", ref)])
        if parts is None or parts[0] != q:
            failures.append(f"panel 'Commit latency' {ref} is not histogram_quantile({q}, ...)")
            continue
        prom_cum = {}
        for res in query(args.prom, expand(parts[1], args.window), at=float(args.time)):
            le = float(res["metric"].get("le", "nan").replace("+Inf", "inf"))
            prom_cum[le] = prom_cum.get(le, 0.0) + float(res["value"][1])
        for what, g, want, tol in quantile_comparisons(q, got, prom_cum, cum):
            check(what, g, want, tol)

    for (title, ref), expr in sorted(targets.items()):
        try:
            query(args.prom, expand(expr, args.window), at=float(args.time))
        except Exception as e:  # noqa: BLE001 - any API failure is a finding
            failures.append(f"panel '{title}' {ref} does not evaluate: {e}")

    print("\n".join(report))
    for f in failures:
        if not any(f in line for line in report):
            print(f"FAIL {f}")
    print(f"prometheus_dashboard_eval: {len(report)} comparisons, {len(targets)} dashboard queries evaluated, "
          f"{len(failures)} failures")
    return 1 if failures else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("wait-ready")
    p.add_argument("prom"), p.add_argument("timeout")
    p = sub.add_parser("wait-scraped")
    p.add_argument("prom"), p.add_argument("n_targets"), p.add_argument("timeout")
    p = sub.add_parser("wait-caught-up")
    p.add_argument("prom"), p.add_argument("after"), p.add_argument("timeout")
    p = sub.add_parser("wait-more-samples")
    p.add_argument("prom"), p.add_argument("n_samples"), p.add_argument("timeout")
    p = sub.add_parser("wait-stopped")
    p.add_argument("prom"), p.add_argument("interval"), p.add_argument("timeout")
    p = sub.add_parser("evaluate")
    p.add_argument("--prom", required=True)
    p.add_argument("--dashboard", required=True)
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--window", required=True)
    p.add_argument("--time", required=True)
    p.add_argument("--usage")
    p.add_argument("--expect-turns", type=float)
    p.add_argument("--tolerance", type=float, default=0.005, help="absolute, on hit rates")
    args = ap.parse_args(argv)
    return {"wait-ready": cmd_wait_ready, "wait-scraped": cmd_wait_scraped,
            "wait-caught-up": cmd_wait_caught_up, "wait-more-samples": cmd_wait_more_samples,
            "wait-stopped": cmd_wait_stopped, "evaluate": cmd_evaluate}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
