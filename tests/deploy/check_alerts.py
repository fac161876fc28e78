#!/usr/bin/env python3
"""Checks the PrometheusRule in deploy/k8s/base/alerts.yaml with promtool:
extracts spec.groups to a plain rules file, runs `promtool check rules` on it
and `promtool test rules` on tests/deploy/alerts_test.yaml (every alert fires
on the series it is about and stays quiet on the healthy ones).

Usage: check_alerts.py [--promtool PATH] [--keep DIR]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def extract_groups(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "PrometheusRule"]
    if len(docs) != 1:
        raise SystemExit(f"{path}: expected one PrometheusRule, found {len(docs)}")
    return {"groups": docs[0]["spec"]["groups"]}


def fill_descriptions(tests, rules):
    """Adds each rule's static description to the expected alerts of `tests`."""
    desc = {r["alert"]: r["annotations"]["description"]
            for g in rules["groups"] for r in g["rules"] if "alert" in r}
    for t in tests["tests"]:
        for case in t.get("alert_rule_test", []):
            for exp in case.get("exp_alerts", []):
                exp.setdefault("exp_annotations", {})["description"] = desc[case["alertname"]]
    return tests


def run(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        print(f"cannot run {cmd[0]}: {e} (scripts/install-deps.sh installs prometheus, which has promtool)")
        return False
    print(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}", end="")
    return out.returncode == 0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--rules", default=os.path.join(REPO, "deploy/k8s/base/alerts.yaml"))
    ap.add_argument("--tests", default=os.path.join(HERE, "alerts_test.yaml"))
    ap.add_argument("--keep", help="write the generated files here instead of a temporary directory")
    args = ap.parse_args(argv)

    rules = extract_groups(args.rules)
    with open(args.tests) as f:
        tests = fill_descriptions(yaml.safe_load(f), rules)
    with tempfile.TemporaryDirectory(prefix="hc-alerts-") as tmp:
        out_dir = args.keep or tmp
        os.makedirs(out_dir, exist_ok=True)
        rules_file = os.path.join(out_dir, "hybridcache.rules.yaml")
        tests_file = os.path.join(out_dir, "alerts_test.yaml")
        with open(rules_file, "w") as f:
            yaml.safe_dump(rules, f, sort_keys=False)
        with open(tests_file, "w") as f:
            yaml.safe_dump(tests, f, sort_keys=False)
        ok = run([args.promtool, "check", "rules", rules_file])
        ok = run([args.promtool, "test", "rules", tests_file]) and ok
    n_alerts = sum(1 for g in rules["groups"] for r in g["rules"] if "alert" in r)
    n_cases = sum(len(t.get("alert_rule_test", [])) for t in tests["tests"])
    print(f"check_alerts: {n_alerts} alerts, {n_cases} promtool test cases: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
