#!/usr/bin/env python3
"""Checks that every metric the dashboards, alert rules and prometheus-adapter
rules use is one the services export.

What "exported" means comes from one or more sources, each checked on its own:
  --contract FILE   the metric list (tests/deploy/metric_names.txt): names,
                    types, label names and, where fixed, label values;
  --scrape SRC      /metrics text of a running router or worker: a file, '-'
                    for stdin, or an http:// URL. Several --scrape sources are
                    merged (a router and its workers make one deployment).
With neither, the contract file is used.

Checked, for each expression: every metric name exists (histogram names with
_bucket/_sum/_count); every label in a matcher belongs to the metric (or is a
target label: namespace, pod, ...); fixed label values are legal (contract);
grouping labels (by/on/...) exist on some metric of the expression; functions
are known; Grafana label_values() queries name real labels.

Exit status 0 when all pass, 1 otherwise. Usage examples:
  check_metric_names.py                                # repo files vs contract
  check_metric_names.py --scrape http://127.0.0.1:9464/metrics \\
                        --scrape http://127.0.0.1:9465/metrics
"""

import argparse
import glob
import json
import os
import re
import sys
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promql_refs  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


class Family:
    def __init__(self, name, mtype):
        self.name = name
        self.type = mtype
        self.labels = {}          # label -> set of values, or None = any value
        self.has_samples = False  # scrape: label names known only from samples


class Catalog:
    """The metric families one source says exist."""

    def __init__(self, source, families, label_values_known):
        self.source = source
        self.families = families
        self.label_values_known = label_values_known

    def resolve(self, series_name):
        """Returns (family, suffix) for a series name, or (None, None)."""
        if series_name in self.families and self.families[series_name].type != "histogram":
            return self.families[series_name], ""
        for suf in HIST_SUFFIXES:
            if series_name.endswith(suf):
                fam = self.families.get(series_name[: -len(suf)])
                if fam and fam.type in ("histogram", "summary"):
                    return fam, suf
        return None, None


def load_contract(path):
    families = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 2 or parts[1] not in ("counter", "gauge", "histogram", "summary"):
                raise SystemExit(f"{path}:{lineno}: expected 'name type [label=values]...'")
            fam = Family(parts[0], parts[1])
            for spec in parts[2:]:
                label, _, values = spec.partition("=")
                fam.labels[label] = None if values in ("", "*") else set(values.split("|"))
            fam.has_samples = True
            families[fam.name] = fam
    return Catalog(f"contract {os.path.relpath(path)}", families, label_values_known=True)


_SAMPLE_RE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+\S+")
_LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:\\.|[^"\\])*)"')


def parse_exposition(text, families):
    """Adds the families of Prometheus text-format `text` to `families`."""
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, mtype = line.split(None, 3)
            types[name] = mtype.strip()
            families.setdefault(name, Family(name, types[name]))
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            continue
        series = m.group(1)
        base = series
        for suf in HIST_SUFFIXES:
            if series.endswith(suf) and types.get(series[: -len(suf)]) in ("histogram", "summary"):
                base = series[: -len(suf)]
        fam = families.setdefault(base, Family(base, types.get(base, "untyped")))
        fam.has_samples = True
        for label, value in _LABEL_RE.findall(m.group(3) or ""):
            if label in ("le", "quantile"):
                continue
            fam.labels.setdefault(label, set())
            if fam.labels[label] is not None:
                fam.labels[label].add(value)


def read_source(src):
    if src == "-":
        return sys.stdin.read()
    if src.startswith(("http://", "https://")):
        with urllib.request.urlopen(src, timeout=10) as r:
            return r.read().decode()
    with open(src) as f:
        return f.read()


def load_scrapes(sources):
    families = {}
    for src in sources:
        parse_exposition(read_source(src), families)
    return Catalog("scrape " + ", ".join(sources), families, label_values_known=False)


# ---- where the expressions come from -------------------------------------

def dashboard_exprs(path):
    """Yields (where, expr, label_or_None) of a Grafana dashboard JSON."""
    with open(path) as f:
        dash = json.load(f)

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    yield f"panel '{p.get('title')}' {t.get('refId')}", t["expr"], None
            yield from walk(p.get("panels", []))

    yield from walk(dash.get("panels", []))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        expr, label = promql_refs.split_label_values(q)
        if label is not None:
            yield f"variable ${var.get('name')}", expr or "", label
        elif q:
            yield f"variable ${var.get('name')}", q, None


def rule_exprs(path):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            groups = doc.get("spec", {}).get("groups") if doc.get("kind") == "PrometheusRule" else doc.get("groups")
            for g in groups or []:
                for r in g.get("rules", []):
                    yield f"rule {r.get('alert') or r.get('record')}", r["expr"], None


def adapter_exprs(path):
    """prometheus-adapter rules: seriesQuery, and metricsQuery with its
    template variables filled in."""
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]

    def find_rules(node):
        if isinstance(node, dict):
            if "seriesQuery" in node:
                yield node
            for v in node.values():
                yield from find_rules(v)
        elif isinstance(node, list):
            for v in node:
                yield from find_rules(v)

    for doc in docs:
        for rule in find_rules(doc):
            series_q = rule["seriesQuery"]
            yield "adapter seriesQuery", series_q, None
            mq = rule.get("metricsQuery")
            if mq:
                series = promql_refs.refs_of(series_q).metrics
                mq = (mq.replace("<<.Series>>", next(iter(series), "missing_series"))
                        .replace("<<.LabelMatchers>>", 'namespace="ns"')
                        .replace("<<.GroupBy>>", "pod"))
                yield "adapter metricsQuery", mq, None


def default_inputs():
    return (sorted(glob.glob(os.path.join(REPO, "deploy/grafana/*.json"))),
            [os.path.join(REPO, "deploy/k8s/base/alerts.yaml")],
            sorted(glob.glob(os.path.join(REPO, "deploy/k8s/prometheus-adapter/*.yaml"))))


# ---- the check -----------------------------------------------------------

def check_expr(catalog, where, expr, extra_label, used, errors):
    refs = promql_refs.refs_of(expr) if expr else promql_refs.Refs()
    for e in refs.errors:
        errors.append(f"{where}: {e}: {expr}")
    expr_labels = set(promql_refs.TARGET_LABELS)
    for name, matchers in refs.selectors:
        if name is None:
            errors.append(f"{where}: selector without a metric name: {expr}")
            continue
        fam, suffix = catalog.resolve(name)
        if fam is None:
            if name in catalog.families:
                errors.append(f"{where}: {name} is a {catalog.families[name].type}: "
                              f"query {name}_bucket, _sum or _count")
            else:
                errors.append(f"{where}: metric {name} is not exported ({catalog.source})")
            continue
        used.add(fam.name)
        labels = set(fam.labels) | promql_refs.TARGET_LABELS
        if suffix == "_bucket":
            labels.add("le")
        expr_labels |= labels
        for m in matchers:
            if m.label not in labels:
                if fam.has_samples:
                    errors.append(f"{where}: {fam.name} has no label '{m.label}' ({catalog.source})")
                continue
            allowed = fam.labels.get(m.label)
            if not catalog.label_values_known or not allowed or "var" in m.value:
                continue
            values = [m.value] if m.op in ("=", "!=") else (
                m.value.split("|") if re.fullmatch(r"[A-Za-z0-9_|]+", m.value) else [])
            for v in values:
                if v not in allowed:
                    errors.append(f"{where}: {fam.name}{{{m.label}}} has no value '{v}' "
                                  f"(allowed: {'|'.join(sorted(allowed))})")
    if refs.selectors and all(n and catalog.resolve(n)[0] and catalog.resolve(n)[0].has_samples
                              for n, _ in refs.selectors):
        for label in sorted(refs.grouping_labels - expr_labels):
            errors.append(f"{where}: groups by '{label}', which none of its metrics has: {expr}")
    if extra_label and extra_label not in expr_labels:
        errors.append(f"{where}: label_values() asks for '{extra_label}', which none of its metrics has")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contract", action="append", default=[], help="metric list file")
    ap.add_argument("--scrape", action="append", default=[], help="/metrics file, '-' or URL (merged)")
    ap.add_argument("--dashboard", action="append", default=None)
    ap.add_argument("--rules", action="append", default=None)
    ap.add_argument("--adapter", action="append", default=None)
    ap.add_argument("--require-all", action="store_true",
                    help="fail unless the inputs together use every metric of each contract")
    args = ap.parse_args(argv)

    dashboards, rules, adapters = default_inputs()
    if args.dashboard is not None or args.rules is not None or args.adapter is not None:
        dashboards, rules, adapters = args.dashboard or [], args.rules or [], args.adapter or []
    exprs = []
    for p in dashboards:
        exprs += [(f"{os.path.basename(p)}: {w}", e, lab) for w, e, lab in dashboard_exprs(p)]
    for p in rules:
        exprs += [(f"{os.path.basename(p)}: {w}", e, lab) for w, e, lab in rule_exprs(p)]
    for p in adapters:
        exprs += [(f"{os.path.basename(p)}: {w}", e, lab) for w, e, lab in adapter_exprs(p)]
    if not exprs:
        print("check_metric_names: no expressions found", file=sys.stderr)
        return 1

    catalogs = [load_contract(p) for p in args.contract]
    if args.scrape:
        catalogs.append(load_scrapes(args.scrape))
    if not catalogs:
        catalogs.append(load_contract(os.path.join(os.path.dirname(os.path.abspath(__file__)), "metric_names.txt")))

    failed = False
    for cat in catalogs:
        errors, used = [], set()
        for where, expr, label in exprs:
            check_expr(cat, where, expr, label, used, errors)
        if args.require_all and cat.label_values_known:
            for name in sorted(set(cat.families) - used):
                errors.append(f"{name} is in the {cat.source} but no dashboard, rule or adapter query uses it")
        for e in errors:
            print(f"FAIL {e}")
        print(f"{cat.source}: {len(exprs)} expressions, {len(used)} metrics used, "
              f"{len(errors)} problems")
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
