#!/usr/bin/env python3
"""Checks deploy/grafana/hybridcache.json: it parses, has the panels the
operators rely on (each with the queries it is named for), its layout is sane
(unique ids, panels inside the 24-column grid and not overlapping), every
target uses the dashboard's data-source variable, and every query - and the
prometheus-adapter queries - is valid PromQL according to `promtool check
rules` (Grafana variables expanded).

Usage: check_dashboard.py [--promtool PATH] [DASHBOARD_JSON]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_metric_names  # noqa: E402
import promql_refs  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

# Panel title -> patterns its queries must contain, in refId order where it
# matters (the Prometheus integration test evaluates "Prefix cache hit rate"
# A and "Commit latency" A/B).
REQUIRED_PANELS = {
    "Prefix cache hit rate": [r"^sum\(rate\(hc_worker_prefix_cache_hits_total\{.*\}\[\$__rate_interval\]\)\) / "
                              r"sum\(rate\(hc_worker_prefix_cache_queries_total\{.*\}\[\$__rate_interval\]\)\)$"],
    "Cached vs computed prompt tokens": [r"hc_worker_prefix_cache_hits_total",
                                         r"hc_worker_prefix_cache_queries_total.* - .*hc_worker_prefix_cache_hits_total"],
    "Commit latency": [r"^histogram_quantile\(0\.5, .*hc_worker_commit_duration_seconds_bucket",
                       r"^histogram_quantile\(0\.99, .*hc_worker_commit_duration_seconds_bucket"],
    "Time to first token": [r"histogram_quantile\(0\.5, .*hc_router_time_to_first_token_seconds_bucket",
                            r"histogram_quantile\(0\.9, .*hc_router_time_to_first_token_seconds_bucket",
                            r"histogram_quantile\(0\.99, .*hc_router_time_to_first_token_seconds_bucket"],
    "Inter-token latency": [r"histogram_quantile\(0\.5, .*hc_worker_inter_token_latency_seconds_bucket",
                            r"histogram_quantile\(0\.9, .*hc_worker_inter_token_latency_seconds_bucket",
                            r"histogram_quantile\(0\.99, .*hc_worker_inter_token_latency_seconds_bucket"],
    "Queue depth": [r"hc_worker_num_requests_waiting", r"hc_worker_num_requests_running"],
    "KV blocks": [r"sum by \(state\) \(hc_worker_kv_blocks"],
    "Mamba state slots": [r"sum by \(state\) \(hc_worker_mamba_slots"],
    "Routing decisions": [r"sum by \(decision\) \(rate\(hc_router_routing_decisions_total"],
    "Worker health": [r"by \(state\) \(hc_router_workers"],
}


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def check_layout(dash, errors):
    ids = [p.get("id") for p in all_panels(dash["panels"])]
    if len(ids) != len(set(ids)) or None in ids:
        errors.append(f"panel ids are missing or repeated: {ids}")
    cells = {}
    for p in all_panels(dash["panels"]):
        g = p.get("gridPos", {})
        x, y, w, h = g.get("x", -1), g.get("y", -1), g.get("w", 0), g.get("h", 0)
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > 24:
            errors.append(f"panel '{p.get('title')}': gridPos {g} is outside the 24-column grid")
            continue
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                if (cx, cy) in cells:
                    errors.append(f"panel '{p.get('title')}' overlaps '{cells[(cx, cy)]}'")
                    break
                cells[(cx, cy)] = p.get("title")
            else:
                continue
            break


def check_panels(dash, errors):
    by_title = {}
    ds_vars = [v["name"] for v in dash.get("templating", {}).get("list", []) if v.get("type") == "datasource"]
    for p in all_panels(dash["panels"]):
        if p.get("type") == "row":
            continue
        by_title.setdefault(p.get("title"), []).append(p)
        targets = p.get("targets", [])
        if not targets:
            errors.append(f"panel '{p.get('title')}' has no query")
        refids = [t.get("refId") for t in targets]
        if len(refids) != len(set(refids)):
            errors.append(f"panel '{p.get('title')}': repeated refIds {refids}")
        for t in targets:
            uid = t.get("datasource", {}).get("uid", "")
            if not ds_vars or uid not in (f"${{{v}}}" for v in ds_vars):
                errors.append(f"panel '{p.get('title')}' {t.get('refId')}: data source {uid!r} "
                              f"is not the dashboard's variable {ds_vars}")
    for title, patterns in REQUIRED_PANELS.items():
        panels = by_title.get(title, [])
        if len(panels) != 1:
            errors.append(f"expected one panel '{title}', found {len(panels)}")
            continue
        exprs = [t.get("expr", "") for t in panels[0].get("targets", [])]
        for i, pattern in enumerate(patterns):
            if i >= len(exprs) or not re.search(pattern, exprs[i]):
                errors.append(f"panel '{title}' query {chr(65 + i)} should match /{pattern}/, "
                              f"is {exprs[i] if i < len(exprs) else 'missing'!r}")


def check_promql(promtool, queries, errors):
    """Runs every query through `promtool check rules` as a recording rule."""
    rules = [{"record": f"check:query_{i}", "expr": promql_refs.expand_grafana(e, var_value=".*")}
             for i, (_, e) in enumerate(queries)]
    with tempfile.NamedTemporaryFile("w", suffix=".rules.yaml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f, sort_keys=False)
        path = f.name
    try:
        out = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    except OSError as e:
        errors.append(f"cannot run {promtool}: {e} (scripts/install-deps.sh installs prometheus)")
        return
    finally:
        os.unlink(path)
    if out.returncode != 0:
        msg = out.stdout + out.stderr
        for i, (where, e) in enumerate(queries):
            if f"check:query_{i}" in msg or f"rule {i + 1}" in msg:
                msg += f"\n  query_{i} is {where}: {e}"
        errors.append(f"promtool rejects a query:\n{msg}")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("dashboard", nargs="?", default=os.path.join(REPO, "deploy/grafana/hybridcache.json"))
    args = ap.parse_args(argv)
    errors = []
    try:
        with open(args.dashboard) as f:
            dash = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"FAIL {args.dashboard}: {e}")
        return 1
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dash:
            errors.append(f"dashboard has no '{key}'")
    if errors:
        print("\n".join(f"FAIL {e}" for e in errors))
        return 1
    check_layout(dash, errors)
    check_panels(dash, errors)
    queries = [(w, e) for w, e, label in check_metric_names.dashboard_exprs(args.dashboard) if e and label is None]
    adapter = os.path.join(REPO, "deploy/k8s/prometheus-adapter/values.yaml")
    queries += [(w, e) for w, e, _ in check_metric_names.adapter_exprs(adapter)]
    check_promql(args.promtool, queries, errors)
    for e in errors:
        print(f"FAIL {e}")
    n_panels = sum(1 for p in all_panels(dash["panels"]) if p.get("type") != "row")
    print(f"check_dashboard: {n_panels} panels, {len(queries)} queries checked by promtool, "
          f"{len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
