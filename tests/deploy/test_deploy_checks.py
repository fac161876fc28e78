#!/usr/bin/env python3
"""The deploy checks must fail on the mistakes they exist to catch: each test
breaks one thing in a copy of deploy/ (or feeds a bad input) and expects the
checker to reject it with a message naming the problem."""

import contextlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import check_alerts  # noqa: E402
import check_dashboard  # noqa: E402
import check_k8s  # noqa: E402
import check_metric_names  # noqa: E402
import prometheus_dashboard_eval  # noqa: E402
import synthetic_metrics_target  # noqa: E402

KUBECTL = os.environ.get("HC_KUBECTL", "kubectl")
PROMTOOL = os.environ.get("HC_PROMTOOL", "promtool")


def run_main(main, argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(argv)
    return rc, out.getvalue()


class DeployCopy:
    """A scratch copy of deploy/ to break."""

    def __enter__(self):
        self.root = tempfile.mkdtemp(prefix="hc-deploy-")
        shutil.copytree(os.path.join(REPO, "deploy"), os.path.join(self.root, "deploy"))
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.root)

    def path(self, rel):
        return os.path.join(self.root, "deploy", rel)

    def edit(self, rel, old, new):
        p = self.path(rel)
        text = open(p).read()
        assert old in text, f"{old!r} not in {rel}"
        with open(p, "w") as f:
            f.write(text.replace(old, new, 1))

    def check(self, overlay="gpu"):
        return run_main(check_k8s.main, ["--kubectl", KUBECTL, "--root", self.root,
                                         self.path(f"k8s/overlays/{overlay}")])


class K8sChecksCatchMistakes(unittest.TestCase):
    def assert_rejected(self, rel, old, new, message, overlay="gpu"):
        with DeployCopy() as d:
            d.edit(rel, old, new)
            rc, out = d.check(overlay)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, message)

    def test_unmodified_overlays_pass(self):
        with DeployCopy() as d:
            for overlay in ("cpu-dev", "gpu", "tls"):
                rc, out = d.check(overlay)
                self.assertEqual(rc, 0, out)

    def test_worker_grpc_port_only_from_routers(self):
        self.assert_rejected("k8s/base/network-policy.yaml", """    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: hc-router
      ports:
        - port: grpc""", """    - ports:
        - port: grpc""", r"worker pods admits port\(s\).*grpc.*from anywhere; only router pods")

    def test_metrics_only_from_the_monitoring_namespace(self):
        self.assert_rejected("k8s/base/network-policy.yaml", "kubernetes.io/metadata.name: monitoring",
                             "app.kubernetes.io/name: hc-router", r"only the monitoring namespace")

    def test_tls_probes_must_use_the_health_port(self):
        self.assert_rejected("k8s/overlays/tls/worker-tls.yaml", """          readinessProbe:
            grpc:
              port: 50052""", """          readinessProbe:
            grpc:
              port: 50051""", r"hc-worker: readinessProbe probes port 50051, the health port is 50052",
                             overlay="tls")

    def test_tls_worker_name_must_be_in_its_certificate(self):
        self.assert_rejected("k8s/overlays/tls/kustomization.yaml", "HC_WORKER_SERVER_NAME=hc-worker-headless",
                             "HC_WORKER_SERVER_NAME=hc-worker", r"--worker_server_name=hc-worker is not among",
                             overlay="tls")

    def test_tls_mutual_needs_both_sides(self):
        self.assert_rejected("k8s/overlays/tls/kustomization.yaml", """      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --peer_ca=$(HC_TLS_DIR)/server/ca.crt""", "", r"--peer_ca and router --worker_tls_cert go together",
                             overlay="tls")

    def test_tls_router_needs_api_keys(self):
        self.assert_rejected("k8s/overlays/tls/kustomization.yaml", """      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --api_keys_file=$(HC_API_KEYS_FILE)""", "",
                             r"router serves TLS \(--tls_cert\) without --api_keys_file", overlay="tls")

    def test_api_keys_file_without_its_secret_mount_is_rejected(self):
        self.assert_rejected("k8s/overlays/tls/router-tls.yaml", """            - name: api-keys
              mountPath: /etc/hc/api-keys
              readOnly: true
""", "", r"router --api_keys_file=/etc/hc/api-keys/keys.json is not in a mounted Secret volume",
                             overlay="tls")

    def test_api_keys_secret_must_be_required(self):
        self.assert_rejected("k8s/overlays/tls/router-tls.yaml", "optional: false", "optional: true",
                             r"Secret volume hc-api-keys is optional; it must be required", overlay="tls")

    def test_api_keys_secret_must_not_be_a_subpath_mount(self):
        self.assert_rejected("k8s/overlays/tls/router-tls.yaml", """              mountPath: /etc/hc/api-keys
""", """              mountPath: /etc/hc/api-keys/keys.json
              subPath: keys.json
""", r"Secret hc-api-keys is mounted with subPath, which the kubelet never updates", overlay="tls")

    def test_api_keys_file_must_read_the_documented_key(self):
        self.assert_rejected("k8s/overlays/tls/router-tls.yaml", "- key: keys.json", "- key: api-keys.json",
                             r"reads key api-keys.json of Secret hc-api-keys, expected keys.json", overlay="tls")

    def test_misspelt_certificate_field_fails_structural_schema(self):
        self.assert_rejected("k8s/overlays/tls/certificates.yaml", "  dnsNames:\n    - hc-router\n",
                             "  dnsName:\n    - hc-router\n", r"Certificate/hc-router-tls: spec.*dnsName",
                             overlay="tls")

    def test_gpu_limit_must_equal_tp(self):
        self.assert_rejected("k8s/overlays/gpu/kustomization.yaml", "HC_TP=2", "HC_TP=4",
                             r"nvidia.com/gpu limit 2 != --tp 4")

    def test_cpu_worker_with_default_threads_needs_a_cpu_limit(self):
        self.assert_rejected("k8s/base/worker.yaml", '              cpu: "2"\n              memory: 8Gi',
                             "              memory: 8Gi", r"--threads=0 has no CPU limit",
                             overlay="cpu-dev")

    def test_grace_period_must_cover_drain(self):
        self.assert_rejected("k8s/base/worker.yaml", "terminationGracePeriodSeconds: 140",
                             "terminationGracePeriodSeconds: 60", r"terminationGracePeriodSeconds 60 < preStop")

    def test_probes_must_be_grpc(self):
        self.assert_rejected("k8s/base/router.yaml",
                             "readinessProbe:\n            grpc:\n              port: 50051",
                             "readinessProbe:\n            tcpSocket:\n              port: 50051",
                             r"hc-router: readinessProbe must be a gRPC probe")

    def test_unknown_flag_is_rejected(self):
        self.assert_rejected("k8s/base/worker.yaml", "--kv_blocks=$(HC_KV_BLOCKS)",
                             "--kv_block=$(HC_KV_BLOCKS)", r"unknown \['kv_block'\]")

    def test_undefined_variable_in_args_is_rejected(self):
        self.assert_rejected("k8s/base/worker.yaml", "--tp=$(HC_TP)", "--tp=$(HC_TP_SIZE)",
                             r"\$\(HC_TP_SIZE\), which is not in its environment")

    def test_router_needs_two_replicas(self):
        self.assert_rejected("k8s/base/router.yaml", "replicas: 2", "replicas: 1",
                             r"Deployment with >= 2 replicas")

    def test_unknown_field_fails_strict_schema(self):
        self.assert_rejected("k8s/base/worker.yaml", "livenessProbe:", "livenesProbe:",
                             r"'livenesProbe' was unexpected", overlay="cpu-dev")

    def test_worker_service_must_be_headless(self):
        self.assert_rejected("k8s/base/worker.yaml", "  clusterIP: None\n", "",
                             r"not a headless Service")

    def test_misspelt_alert_field_fails_structural_schema(self):
        self.assert_rejected("k8s/base/alerts.yaml", "          for: 2m", "          fro: 2m",
                             r"PrometheusRule/hybridcache: spec\.groups\.2\.rules\.0: Additional properties")

    def test_ledger_must_not_evict(self):
        self.assert_rejected("k8s/base/redis.yaml", "    maxmemory-policy noeviction\n",
                             "    maxmemory-policy allkeys-lru\n",
                             r"Redis config lacks 'maxmemory-policy noeviction'", overlay="cpu-dev")

    def test_servers_must_not_listen_on_loopback_only(self):
        self.assert_rejected("k8s/base/worker-flags.env", "HC_HOST=0.0.0.0", "HC_HOST=127.0.0.1",
                             r"hc-worker: --host=127.0.0.1 listens on loopback only")

    def test_router_dns_name_must_be_workers_dns(self):
        self.assert_rejected("k8s/base/router.yaml", "- --workers_dns=$(HC_WORKER_SERVICE)",
                             "- --workers=dns:///$(HC_WORKER_SERVICE)",
                             r"--workers=dns:///hc-worker-headless:50051 takes host:port addresses")

    def test_router_liveness_must_not_wait_for_workers(self):
        self.assert_rejected("k8s/base/router.yaml",
                             "livenessProbe:\n            grpc:\n              port: 50051\n              service: liveness\n",
                             "livenessProbe:\n            grpc:\n              port: 50051\n",
                             r"hc-router: livenessProbe checks health service '', expected 'liveness'")

    def test_redis_needs_a_password_from_a_secret(self):
        self.assert_rejected("k8s/base/redis.yaml", '"--requirepass", "$(REDIS_PASSWORD)"',
                             '"--requirepass", "hunter2"', r"Redis has no --requirepass \$\(VAR\) with VAR from a Secret")

    def test_router_ledger_needs_the_password(self):
        self.assert_rejected("k8s/base/router.yaml", "--ledger=redis://:$(REDIS_PASSWORD)@",
                             "--ledger=redis://", r"router --ledger=redis://hc-redis:6379 is not redis://:\$\(PASSWORD\)@")

    def test_redis_protected_mode_stays_on(self):
        self.assert_rejected("k8s/base/redis.yaml", "protected-mode yes", "protected-mode no",
                             r"Redis config lacks 'protected-mode yes'")

    def test_hpa_metric_must_be_served_by_adapter(self):
        self.assert_rejected("k8s/base/router.yaml", "name: hc_router_requests_per_second",
                             "name: hc_router_rps", r"Pods metric hc_router_rps, which the prometheus-adapter")


class MetricNameChecksCatchMistakes(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hc-names-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def write(self, name, text):
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def rules(self, *exprs):
        rules = "".join(f"      - alert: A{i}\n        expr: '{e}'\n" for i, e in enumerate(exprs))
        return self.write("rules.yaml", f"groups:\n  - name: g\n    rules:\n{rules}")

    def test_repository_queries_use_only_contract_metrics(self):
        rc, out = run_main(check_metric_names.main, ["--require-all"])
        self.assertEqual(rc, 0, out)

    def test_mistakes_against_the_contract(self):
        path = self.rules('sum by (stat) (hc_worker_kv_blocks{state="used"}) > 0',
                          "rat(hc_worker_prefix_cache_hit_total[5m]) > 0",
                          "hc_worker_commit_duration_seconds > 1",
                          'hc_router_routing_decisions_total{decision=~"sticky|moved"} offset 5m',
                          'hc_worker_num_requests_waiting{queue="x"} > 1')
        rc, out = run_main(check_metric_names.main, ["--rules", path])
        self.assertEqual(rc, 1, out)
        for message in (r"hc_worker_kv_blocks\{state\} has no value 'used'",
                        r"groups by 'stat'",
                        r"unknown function rat\(\)",
                        r"metric hc_worker_prefix_cache_hit_total is not exported",
                        r"hc_worker_commit_duration_seconds is a histogram",
                        r"hc_router_routing_decisions_total\{decision\} has no value 'moved'",
                        r"hc_worker_num_requests_waiting has no label 'queue'"):
            self.assertRegex(out, message)

    def scrapes(self, drop=None):
        paths = []
        for role in ("router", "worker"):
            text = synthetic_metrics_target.Target(role).exposition()
            if drop:
                text = "\n".join(l for l in text.splitlines() if drop not in l) + "\n"
            paths.append(self.write(f"{role}.metrics", text))
        return [a for p in paths for a in ("--scrape", p)]

    def test_live_scrape_with_every_family_passes(self):
        rc, out = run_main(check_metric_names.main, self.scrapes())
        self.assertEqual(rc, 0, out)

    def test_family_missing_from_live_scrape_fails(self):
        rc, out = run_main(check_metric_names.main, self.scrapes(drop="hc_worker_mamba_slots"))
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"metric hc_worker_mamba_slots is not exported \(scrape ")

    def test_label_missing_from_live_scrape_fails(self):
        text = synthetic_metrics_target.Target("router").exposition().replace('decision="', 'choice="')
        rc, out = run_main(check_metric_names.main, ["--scrape", self.write("router.metrics", text),
                                                     "--rules", self.rules(
                                                         'rate(hc_router_routing_decisions_total{decision="failover"}[5m]) > 0')])
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"hc_router_routing_decisions_total has no label 'decision'")


class DashboardChecksCatchMistakes(unittest.TestCase):
    def check(self, mutate):
        with open(os.path.join(REPO, "deploy/grafana/hybridcache.json")) as f:
            dash = json.load(f)
        mutate(dash)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(dash, f)
        try:
            return run_main(check_dashboard.main, ["--promtool", PROMTOOL, f.name])
        finally:
            os.unlink(f.name)

    @staticmethod
    def panel(dash, title):
        return next(p for p in dash["panels"] if p.get("title") == title)

    def test_unmodified_dashboard_passes(self):
        rc, out = self.check(lambda d: None)
        self.assertEqual(rc, 0, out)

    def test_invalid_promql_is_rejected_by_promtool(self):
        def mutate(d):
            self.panel(d, "Queue depth")["targets"][0]["expr"] = "sum by (pod) (hc_worker_num_requests_waiting"
        rc, out = self.check(mutate)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"promtool rejects a query(.|\n)*panel 'Queue depth' A")

    def test_missing_p99_is_reported(self):
        def mutate(d):
            self.panel(d, "Commit latency")["targets"].pop()
        rc, out = self.check(mutate)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"panel 'Commit latency' query B should match")

    def test_overlapping_panels_are_reported(self):
        def mutate(d):
            self.panel(d, "Cached vs computed prompt tokens")["gridPos"]["x"] = 4
        rc, out = self.check(mutate)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"overlaps 'Prefix cache hit rate'")


class DashboardQuantileComparisons(unittest.TestCase):
    """prometheus_dashboard_eval's commit-latency comparisons: exact against
    Prometheus' own bucket rates, one bucket wide against /metrics."""
    INF = float("inf")

    def failing(self, q, got, prom_cum, metrics_cum):
        return [what for what, g, want, tol in
                prometheus_dashboard_eval.quantile_comparisons(q, got, prom_cum, metrics_cum)
                if not prometheus_dashboard_eval.close(g, want, tol)]

    def test_interpolation_is_prometheus(self):
        bq = prometheus_dashboard_eval.bucket_quantile
        self.assertEqual(bq(0.5, {1.0: 0, 2.0: 10, self.INF: 10}), 1.5)
        self.assertEqual(bq(0.5, {1.0: 5, 2.0: 10, self.INF: 10}), 1.0)  # rank on an edge
        self.assertEqual(bq(0.25, {1.0: 4, 2.0: 4, self.INF: 4}), 0.25)  # first bucket starts at 0
        self.assertEqual(bq(0.99, {1.0: 0, 2.0: 0, self.INF: 10}), 2.0)  # +Inf: largest finite bound
        self.assertEqual(bq(0.5, {1.0: 6, 2.0: 5.9, self.INF: 10}), 1.0 * 5 / 6)  # made monotonic
        self.assertTrue(math.isnan(bq(0.5, {1.0: 0, self.INF: 0})))

    def test_rank_on_an_edge_may_cross_it_by_scrape_timing(self):
        # The case of issue #20: 20 of 40 commits at or below 100us, so the
        # /metrics p50 is exactly 1e-4; the two workers' rates are scaled by
        # slightly different factors, and Prometheus' p50 lands just above.
        metrics = {5e-5: 12, 1e-4: 20, 2.5e-4: 31, self.INF: 40}
        prom = {5e-5: 12.3 / 40, 1e-4: 20.4 / 40, 2.5e-4: 31.9 / 40, self.INF: 41.2 / 40}
        got = prometheus_dashboard_eval.bucket_quantile(0.5, prom)
        self.assertNotAlmostEqual(got, 1e-4, delta=2e-6)
        self.assertEqual(self.failing(0.5, got, prom, metrics), [])

    def test_a_quantile_outside_its_bucket_fails(self):
        metrics = {5e-5: 12, 1e-4: 20, 2.5e-4: 31, 1e-3: 40, self.INF: 40}
        # Twice the right value: one bucket over against /metrics, and not
        # what Prometheus' own rates give.
        self.assertEqual(self.failing(0.5, 2e-4 + 1e-6, metrics, metrics), [
            "commit latency p50 vs histogram_quantile of Prometheus' own bucket rates",
            "commit latency p50 vs the /metrics histogram (within a bucket)"])
        # A query that is not the quantile of the summed buckets (say p90 for
        # p50) fails the exact comparison even inside the right bucket.
        p90 = prometheus_dashboard_eval.bucket_quantile(0.9, {1e-4: 0, 2.5e-4: 10, self.INF: 10})
        self.assertEqual(self.failing(0.5, p90, {1e-4: 0, 2.5e-4: 10, self.INF: 10},
                                      {1e-4: 0, 2.5e-4: 10, self.INF: 10}),
                         ["commit latency p50 vs histogram_quantile of Prometheus' own bucket rates"])

    def test_dashboard_commit_latency_is_a_histogram_quantile(self):
        targets = prometheus_dashboard_eval.dashboard_targets(os.path.join(REPO, "deploy/grafana/hybridcache.json"))
        for ref, q in (("A", 0.5), ("B", 0.99)):
            parts = prometheus_dashboard_eval.split_histogram_quantile(targets[("Commit latency", ref)])
            self.assertIsNotNone(parts)
            self.assertEqual(parts[0], q)
            self.assertTrue(parts[1].startswith("sum by (le) (rate(hc_worker_commit_duration_seconds_bucket"),
                            parts[1])


class AlertTestsCatchMistakes(unittest.TestCase):
    def test_alert_unit_tests_pass(self):
        rc, out = run_main(check_alerts.main, ["--promtool", PROMTOOL])
        self.assertEqual(rc, 0, out)

    def test_a_weaker_threshold_breaks_the_unit_tests(self):
        # Raising the KV threshold to 99% must stop the 95%-full worker alert.
        with DeployCopy() as d:
            d.edit("k8s/base/alerts.yaml", "sum by (namespace, pod) (hc_worker_kv_blocks) > 0.9",
                   "sum by (namespace, pod) (hc_worker_kv_blocks) > 0.99")
            rc, out = run_main(check_alerts.main, ["--promtool", PROMTOOL,
                                                   "--rules", d.path("k8s/base/alerts.yaml")])
        self.assertEqual(rc, 1, out)
        self.assertTrue(re.search(r"alertname: HybridCacheKVCacheNearFull", out), out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
