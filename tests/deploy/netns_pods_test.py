#!/usr/bin/env python3
"""Runs the rendered Kubernetes manifests as pods on this machine: the real
hc-router, hc-worker and redis-server, each in a network namespace of its own
with one address, started with exactly the command, args and environment of
its rendered container, probed the way the kubelet probes it, and a
conversation sent through the router pods.

Why: the offline checks (check_k8s.py) read the manifests; this one runs them.
It catches what only shows when the processes meet over a network: servers
listening on loopback only, a router that does not see every worker, probes
that restart a pod which is merely not ready, a ledger anyone can reach.

For every overlay under deploy/k8s/overlays (or the ones named):
  - render it with `kubectl kustomize`;
  - per Deployment/StatefulSet pod (replicas from the manifest): environment
    built as the kubelet builds it (envFrom, env, fieldRefs, ConfigMap and
    Secret keys), $(VAR) expanded in command/args as Kubernetes expands them,
    the image's entrypoint (deploy/docker/*.Dockerfile for ours, the official
    image's for redis) mapped to the binary built here;
  - the pod's filesystem: the host's root as a read-only overlay (its
    readOnlyRootFilesystem), the image's binaries at their image paths, the
    pod's volumes (emptyDir, PVC, ConfigMap, Secret) at their mountPaths, run as its
    runAsUser/runAsGroup/fsGroup with no capabilities, hostname = pod name;
  - network: a "node" network namespace that the test process itself enters
    (it plays the kubelet, and everything it creates lives inside it), a
    bridge there with 10.213.0.1/24, one network namespace per pod (held by
    a "pause" process, as in Kubernetes: unlike `ip netns add` nothing is
    left under /run/netns if the test is killed) with a veth on the bridge
    and 10.213.0.<n>/24, no route anywhere else;
  - Service names resolved by a hosts file per pod, kept by the test like the
    endpoints controller keeps DNS: a Service lists the *ready* pods it
    selects (a ClusterIP Service has no virtual IP here: its name lists the
    pod IPs, so only Services whose port equals their target port work);
  - Secrets (secret_emulation.py): the ones an operator creates by hand
    (deploy/README.md): hc-redis-auth with a random password, hc-api-keys
    with the hash (`hcctl hash-key`) of a random API key; cert-manager
    emulated: every Certificate's Secret (tls.crt, tls.key, ca.crt) issued
    with openssl as its Issuer says (selfSigned, or ca); Secret volumes in
    the kubelet's layout (`..data` switched atomically on an update);
  - probes as the kubelet runs them: gRPC health (port, service) and TCP on
    the pod IP from the node, exec inside the container (nsenter);
  - checks: Redis, workers and routers pass their startup and readiness
    probes; a router passes startup/liveness but is NOT ready while no worker
    is published; every router sees every worker (hc_router_workers);
    Redis refuses a client without the password; workers started with
    --peer_ca refuse plaintext clients and TLS clients without a certificate;
    a 3-turn conversation through the router pods' addresses and the router
    Service name (over TLS, verifying the router's certificate, where the
    router has one, with the API key where the router has --api_keys_file),
    turns 2 and 3 served from the cache (cached_tokens > 0); where the
    router has --api_keys_file, calls without a key or with a wrong key are
    refused UNAUTHENTICATED, and after the Secret is changed to a new key
    (volume updated as the kubelet does) every router takes the new key and
    refuses the old one, without a restart;
    /metrics scraped where
    the ServiceMonitor/PodMonitor scrape it; SIGTERM makes every pod exit 0.

Only what cannot exist here is substituted, and printed: --device=cuda runs
as --device=cpu, and a --model on a volume (the gpu overlay's checkpoint PVC)
runs as synthetic:tiny. Kubernetes would restart a router that exits because
Redis is not up yet; the test starts Redis first instead.

Needs root (namespaces, mounts), iproute2, util-linux, redis-server and the
built binaries. Without root it FAILS (exit 1) with a message: it is part of
the deploy checks and a skipped run would look like a pass. Everything it
creates (namespaces, processes, files) is removed when it ends, on failure too.

Usage: netns_pods_test.py [--kubectl PATH] [--root DIR] [--build-dir DIR]
                          [--wait-cap S] [OVERLAY_DIR ...]
"""

import argparse
import ctypes
import glob
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from secret_emulation import (API_KEYS_SECRET, SecretError, api_keys_json,  # noqa: E402
                              cluster_secrets, write_secret_volume)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SUBNET = "10.213.0"          # inside the node namespace only: nothing else sees it
NODE_IP = f"{SUBNET}.1"
CLUSTER_DOMAIN = "cluster.local"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLONE_NEWNET = 0x40000000
POLL_S = 0.1                 # how often a wait re-checks its condition


class TestFailure(Exception):
    pass




def log(msg):
    print(msg, flush=True)


def run(cmd, check=True, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and out.returncode != 0:
        raise TestFailure(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


# ---- Kubernetes semantics ---------------------------------------------------

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text, env, where, strict=True):
    """Kubernetes' $(VAR) expansion (command, args, env values): a defined
    variable is replaced, $$ is a literal $, an undefined reference stays as
    written, which in a flag is a bug, hence strict."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        if m.group(1) in env:
            return env[m.group(1)]
        if strict:
            raise TestFailure(f"{where}: $({m.group(1)}) is not in the container's environment")
        return m.group(0)
    return _VAR.sub(sub, text)


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def dockerfile_entrypoint(root, image):
    """ENTRYPOINT of our image, from deploy/docker/<name>.Dockerfile."""
    name = image.rsplit("/", 1)[-1].split(":")[0]
    path = os.path.join(root, "deploy", "docker", f"{name.replace('hc-', '')}.Dockerfile")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            if line.startswith("ENTRYPOINT"):
                return json.loads(line[len("ENTRYPOINT"):])
    raise TestFailure(f"{path} has no ENTRYPOINT")


class Cluster:
    """The rendered objects of one overlay, with what the API server and the
    kubelet would add: Secrets, pod names and IPs."""

    def __init__(self, name, docs, args):
        self.name = name
        self.args = args
        self.by_kind = {}
        for d in docs:
            self.by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        self.namespace = next(iter(self.by_kind.get("Namespace", {})), "default")
        self.hcctl = os.path.join(args.build_dir, "bin", "hcctl")
        if not os.access(self.hcctl, os.X_OK):
            raise TestFailure(f"{self.hcctl} is not built (ninja hcctl)")
        # The operator's Secrets, the rendered ones and cert-manager's.
        self.secrets, self.api_key = cluster_secrets(self.by_kind, self.hcctl)
        if self.by_kind.get("Certificate"):
            log(f"{name}: issued {', '.join(sorted(self.by_kind['Certificate']))} (cert-manager emulated)")
        self.pods = []
        for kind in ("StatefulSet", "Deployment"):
            for w in self.by_kind.get(kind, {}).values():
                for i in range(w["spec"].get("replicas", 1)):
                    self.pods.append(Pod(self, w, i, f"{SUBNET}.{10 + len(self.pods)}"))

    def configmap(self, name, where):
        cm = self.by_kind.get("ConfigMap", {}).get(name)
        if cm is None:
            raise TestFailure(f"{where}: ConfigMap {name} is not rendered (CreateContainerConfigError)")
        return cm.get("data", {})

    def secret(self, name, where):
        if name not in self.secrets:
            raise TestFailure(f"{where}: Secret {name} is neither rendered nor one the README says to create")
        return self.secrets[name]

    def update_secret(self, name, data):
        """A changed Secret (kubectl apply), and the kubelet updating every
        volume of it."""
        self.secrets[name] = data
        for p in self.pods:
            for src, spec in p.secret_volumes.items():
                if spec["secretName"] == name:
                    write_secret_volume(src, self.secrets, spec, p.name)

    def pods_of(self, selector):
        return [p for p in self.pods if labels_match(selector, p.labels)]


class Pod:
    def __init__(self, cluster, workload, index, ip):
        self.cluster = cluster
        self.workload = workload
        self.kind = workload["kind"]
        self.name = f"{workload['metadata']['name']}-{index}"
        self.ip = ip
        self.spec = workload["spec"]["template"]["spec"]
        self.labels = workload["spec"]["template"]["metadata"].get("labels", {})
        if len(self.spec["containers"]) != 1 or self.spec.get("initContainers"):
            raise TestFailure(f"{self.name}: the test runs pods of exactly one container")
        self.container = self.spec["containers"][0]
        self.pause = None  # holds the pod's network namespace
        self.proc = None
        self.dir = None
        self.substituted = []
        self.env = self.build_env()
        self.argv = self.build_argv()

    def __repr__(self):
        return self.name

    @property
    def image(self):
        return self.container["image"]

    def build_env(self):
        """The container's environment as the kubelet builds it."""
        c, where = self.container, f"{self.name}"
        env = {}
        for src in c.get("envFrom", []):
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                data = self.cluster.configmap(src["configMapRef"]["name"], where)
            else:
                data = self.cluster.secret(src["secretRef"]["name"], where)
            env.update({prefix + k: v for k, v in data.items()})
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = expand(e["value"], env, where, strict=False)
                continue
            vf = e.get("valueFrom", {})
            if "fieldRef" in vf:
                path = vf["fieldRef"]["fieldPath"]
                fields = {"metadata.name": self.name, "metadata.namespace": self.cluster.namespace,
                          "status.podIP": self.ip, "status.hostIP": NODE_IP, "spec.nodeName": "node"}
                if path not in fields:
                    raise TestFailure(f"{where}: fieldRef {path} is not emulated")
                env[e["name"]] = fields[path]
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                env[e["name"]] = self.cluster.configmap(ref["name"], where)[ref["key"]]
            elif "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                data = self.cluster.secret(ref["name"], where)
                if ref["key"] not in data:
                    raise TestFailure(f"{where}: Secret {ref['name']} has no key {ref['key']}")
                env[e["name"]] = data[ref["key"]]
            else:
                raise TestFailure(f"{where}: env {e['name']}: {vf} is not emulated")
        return env

    def build_argv(self):
        """command/args with $(VAR) expanded, the image's entrypoint mapped to
        a binary here, and the substitutions for what cannot exist here."""
        c, where = self.container, self.name
        command = [expand(a, self.env, where) for a in c.get("command", [])]
        args = [expand(a, self.env, where) for a in c.get("args", [])]
        self.image_files = {}  # image path -> file here, bind-mounted there
        if "redis" in self.image.split(":")[0].rsplit("/", 1)[-1]:
            # The official image's docker-entrypoint.sh: `redis-server` first
            # when the first argument is a flag or a .conf file.
            if not command:
                command = ["docker-entrypoint.sh"]
            if command == ["docker-entrypoint.sh"]:
                command = ["redis-server"] if args and (args[0].startswith("-") or args[0].endswith(".conf")) else []
            argv = command + args
            argv[0] = shutil.which(argv[0]) or argv[0]
            return argv
        entry = command or dockerfile_entrypoint(self.cluster.args.root, self.image)
        if not entry:
            raise TestFailure(f"{where}: no command and no Dockerfile for image {self.image}")
        argv = entry + args
        built = os.path.join(self.cluster.args.build_dir, "bin", os.path.basename(argv[0]))
        if not os.access(built, os.X_OK):
            raise TestFailure(f"{where}: {built} is not built (ninja hc-router hc-worker hcctl)")
        self.image_files[argv[0]] = built
        mounts = {m["mountPath"]: m for m in self.container.get("volumeMounts", [])}
        for i, a in enumerate(argv):
            m = re.fullmatch(r"--([a-z_]+)=(.*)", a)
            if not m:
                continue
            flag, value = m.groups()
            new = None
            if flag == "device" and value == "cuda":
                new = "cpu"         # no GPU on this machine
            elif flag == "model" and any(value == p or value.startswith(p.rstrip("/") + "/") for p in mounts):
                new = "synthetic:tiny"  # the checkpoint volume is empty here
            if new is not None:
                argv[i] = f"--{flag}={new}"
                self.substituted.append(f"{a} -> {argv[i]}")
        return argv

    # ---- volumes and filesystem --------------------------------------------
    def prepare_dir(self, base):
        self.dir = os.path.join(base, self.name)
        os.makedirs(os.path.join(self.dir, "fs"))
        sc = self.spec.get("securityContext", {})
        csc = self.container.get("securityContext", {})
        self.uid = csc.get("runAsUser", sc.get("runAsUser", 0))
        self.gid = csc.get("runAsGroup", sc.get("runAsGroup", 0))
        self.fs_group = sc.get("fsGroup")
        self.read_only_root = csc.get("readOnlyRootFilesystem", False)
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        for t in self.workload["spec"].get("volumeClaimTemplates", []):
            volumes[t["metadata"]["name"]] = {"name": t["metadata"]["name"], "persistentVolumeClaim": {}}
        self.mounts = []  # (host dir, mountPath, read-only)
        self.secret_volumes = {}  # host dir -> the volume's secret spec
        for m in self.container.get("volumeMounts", []):
            v = volumes.get(m["name"])
            if v is None:
                raise TestFailure(f"{self.name}: volumeMount {m['name']} has no volume")
            src = os.path.join(self.dir, "volumes", m["name"])
            if not os.path.exists(src):
                os.makedirs(src)
                if "configMap" in v:
                    data = self.cluster.configmap(v["configMap"]["name"], self.name)
                    for key, text in data.items():
                        with open(os.path.join(src, key), "w") as f:
                            f.write(text)
                elif "secret" in v:
                    write_secret_volume(src, self.cluster.secrets, v["secret"], self.name)
                    self.secret_volumes[src] = v["secret"]
                elif "emptyDir" in v:
                    os.chmod(src, 0o777)
                elif "persistentVolumeClaim" in v:
                    if self.fs_group is not None:
                        os.chown(src, 0, self.fs_group)
                        os.chmod(src, 0o2775)
                    else:
                        os.chmod(src, 0o777)
                else:
                    raise TestFailure(f"{self.name}: volume {m['name']} {sorted(v)} is not emulated")
            ro = m.get("readOnly", False) or "configMap" in v or "secret" in v
            self.mounts.append((src, m["mountPath"], ro))
        self.hosts = os.path.join(self.dir, "hosts")
        with open(os.path.join(self.dir, "resolv.conf"), "w") as f:
            # No name server in the pod's namespace: lookups of names the
            # hosts file lacks fail at once instead of leaving the namespace.
            f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")

    def container_script(self):
        """Shell run inside the pod's namespaces as root: builds the
        container's root and execs the container's process in it."""
        r = os.path.join(self.dir, "fs", "root")
        fs = os.path.join(self.dir, "fs")
        lines = [
            "set -eu",
            f"hostname {self.name}",  # in the pod's own UTS namespace
            f"mount -t tmpfs -o mode=0755 hc-pod {fs}",
            f"mkdir {fs}/upper {fs}/work {r}",
            # The image: the host's root filesystem through an overlay, so
            # that mount points can be made without touching the host.
            f"mount -t overlay hc-pod-root -o lowerdir=/,upperdir={fs}/upper,workdir={fs}/work {r}",
            f"mount --rbind /proc {r}/proc", f"mount --rbind /sys {r}/sys", f"mount --rbind /dev {r}/dev",
            f"mount --bind {self.hosts} {r}/etc/hosts",
            f"mount --bind {self.dir}/resolv.conf {r}/etc/resolv.conf",
        ]
        for image_path, here in self.image_files.items():
            lines += [f"mkdir -p {r}{os.path.dirname(image_path)}", f"touch {r}{image_path}",
                      f"mount --bind {here} {r}{image_path}"]
        for src, path, ro in self.mounts:
            lines += [f"mkdir -p {r}{path}", f"mount --bind {src} {r}{path}"]
            if ro:
                lines.append(f"mount -o remount,bind,ro {r}{path}")
        if self.read_only_root:
            lines.append(f"mount -o remount,bind,ro {r}")
        groups = f"--groups={self.fs_group}" if self.fs_group is not None else "--clear-groups"
        workdir = self.container.get("workingDir", "/data" if "redis" in self.image else "/")
        # coreutils' chroot changes to the new root; setpriv then to workingDir.
        lines.append(f'exec chroot {r} setpriv --reuid={self.uid} --regid={self.gid} {groups} '
                     f'--no-new-privs --inh-caps=-all --bounding-set=-all -- sh -c \'cd "$0" && exec "$@"\' {workdir} "$@"')
        return "\n".join(lines)

    def start(self):
        env = {"PATH": IMAGE_PATH, "HOSTNAME": self.name, "HOME": "/"}
        env.update(self.env)
        self.log_path = os.path.join(self.dir, "log")
        self.log_file = open(self.log_path, "w")
        # The pod's network namespace, and mount and UTS namespaces of its own
        # (private mounts: nothing propagates back to the host).
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/proc/{self.pause.pid}/ns/net", "unshare", "--mount", "--uts",
             "--propagation=private", "sh", "-c", self.container_script(), "pod"] + self.argv,
            env=env, stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.started = time.monotonic()

    def flag(self, name):
        """The value of --name=VALUE in the container's argv, or None."""
        for a in self.argv:
            if a.startswith(f"--{name}="):
                return a.split("=", 1)[1]
        return None

    def secret_file(self, path):
        """The content of `path` in a mounted Secret volume of the pod."""
        for src, mount_path, _ in self.mounts:
            mount = mount_path.rstrip("/") + "/"
            if src in self.secret_volumes and path.startswith(mount):
                with open(os.path.join(src, path[len(mount):])) as f:
                    return f.read()
        raise TestFailure(f"{self.name}: {path} is not in a mounted Secret")

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return ""
        # The ready line says where it listens, often the point of a failure.
        head = [line for line in lines[:-n] if "listening on" in line][:1]
        return "".join(f"    {self.name}| {line}" for line in head + lines[-n:])

    def container_port(self, port):
        if isinstance(port, int):
            return port
        for p in self.container.get("ports", []):
            if p.get("name") == port:
                return p["containerPort"]
        raise TestFailure(f"{self.name}: no container port named {port}")


# ---- the node: network, probes, endpoints -----------------------------------

def start_pause():
    """A process holding a new network namespace, like a pod's pause
    container: the namespace lives as long as it does (no named namespaces
    under /run/netns to leak), and it dies with this process (pdeathsig)."""
    p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--net", "--",
                          "sh", "-c", "echo ready && exec sleep infinity"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":  # the namespace exists once it says so
        raise TestFailure("cannot create a network namespace (unshare --net)")
    return p


class Node:
    def __init__(self, args, health):
        self.args = args
        self.health_pb2, self.health_grpc = health
        self.pauses = []
        self.client = None  # the client pod's pause process
        self.client_ip = f"{SUBNET}.250"

    def setup_network(self, pods):
        run(["ip", "link", "set", "lo", "up"])
        run(["ip", "link", "add", "hcbr0", "type", "bridge"])
        run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", "hcbr0"])
        run(["ip", "link", "set", "hcbr0", "up"])
        for p in pods:
            p.pause = start_pause()
        self.client = start_pause()
        for i, (pause, ip) in enumerate([(p.pause, p.ip) for p in pods] + [(self.client, self.client_ip)]):
            self.pauses.append(pause)
            veth = f"hcv{i}"
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(pause.pid)])
            run(["ip", "link", "set", veth, "master", "hcbr0", "up"])
            for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"],
                        ["ip", "link", "set", "eth0", "up"]):
                run(["nsenter", f"--net=/proc/{pause.pid}/ns/net"] + cmd)

    def teardown_network(self):
        # Each namespace goes with its last process, its veth with it.
        for pause in self.pauses:
            pause.kill()
            pause.wait()
            pause.stdout.close()
        self.pauses = []
        run(["ip", "link", "delete", "hcbr0"], check=False)

    # -- probes, as the kubelet runs them --------------------------------------
    def probe(self, pod, spec):
        """One probe attempt: (passed, detail)."""
        timeout = spec.get("timeoutSeconds", 1)
        if "grpc" in spec:
            import grpc
            port = spec["grpc"]["port"]
            service = spec["grpc"].get("service", "")
            target = f"{pod.ip}:{port}"
            with grpc.insecure_channel(target) as ch:
                try:
                    resp = self.health_grpc.HealthStub(ch).Check(
                        self.health_pb2.HealthCheckRequest(service=service), timeout=timeout)
                except grpc.RpcError as e:
                    return False, f"gRPC health {service!r} at {target}: {e.code().name} {e.details()}"
            status = self.health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            return resp.status == self.health_pb2.HealthCheckResponse.SERVING, \
                f"gRPC health {service!r} at {target}: {status}"
        if "tcpSocket" in spec:
            port = pod.container_port(spec["tcpSocket"]["port"])
            try:
                socket.create_connection((pod.ip, port), timeout=timeout).close()
                return True, f"TCP {pod.ip}:{port} open"
            except OSError as e:
                return False, f"TCP {pod.ip}:{port}: {e}"
        if "exec" in spec:
            # Like `kubectl exec`: the container's namespaces, root, user and
            # environment.
            env = {"PATH": IMAGE_PATH, "HOSTNAME": pod.name, "HOME": "/"}
            env.update(pod.env)
            cmd = [expand(a, {k: v for k, v in pod.env.items()}, pod.name, strict=False)
                   for a in spec["exec"]["command"]]
            groups = ["-G", str(pod.gid)]
            out = subprocess.run(["nsenter", "-t", str(pod.proc.pid), "-m", "-n", "-u", "-r", "-w",
                                  "-S", str(pod.uid)] + groups + ["--"] + cmd,
                                 env=env, capture_output=True, text=True, timeout=timeout + 5)
            return out.returncode == 0, f"exec {cmd}: exit {out.returncode} {out.stdout.strip()} {out.stderr.strip()}"
        raise TestFailure(f"{pod.name}: probe {spec} is not emulated")

    def wait_probe(self, pod, kind, expect=True):
        """Polls until the probe passes (as the kubelet would within
        periodSeconds x failureThreshold, capped by --wait-cap)."""
        spec = pod.container.get(kind)
        if spec is None:
            return f"no {kind}"
        budget = spec.get("initialDelaySeconds", 0) + spec.get("periodSeconds", 10) * spec.get("failureThreshold", 3)
        deadline = time.monotonic() + min(budget, self.args.wait_cap)
        while True:
            if pod.proc.poll() is not None:
                raise TestFailure(f"{pod.name} exited ({pod.proc.returncode}) before its {kind} passed:\n"
                                  f"{pod.log_tail()}")
            ok, detail = self.probe(pod, spec)
            # A probe expected to fail must have been answered (NOT_SERVING),
            # not refused.
            if ok == expect and (expect or "NOT_SERVING" in detail):
                return detail
            if time.monotonic() > deadline:
                raise TestFailure(
                    f"{pod.name}: {kind} did not {'pass' if expect else 'fail'} within "
                    f"{min(budget, self.args.wait_cap):g}s (manifest budget {budget}s): {detail}\n{pod.log_tail()}")
            time.sleep(POLL_S)


def write_hosts(cluster, pods_ready, client_hosts):
    """The cluster DNS, as hosts files: every Service name (short, with the
    namespace, .svc and the cluster domain, as the search path would find
    them) lists the ready pods it selects; StatefulSet pods also get
    <pod>.<serviceName> records. Rewritten in place: the files are
    bind-mounted into the pods, and glibc re-reads them on every lookup."""
    ns = cluster.namespace
    names = {}  # ip -> names
    for svc in cluster.by_kind.get("Service", {}).values():
        name = svc["metadata"]["name"]
        selected = cluster.pods_of(svc["spec"].get("selector", {}))
        for port in svc["spec"]["ports"]:
            for p in selected:
                if p.container_port(port.get("targetPort", port["port"])) != port["port"]:
                    raise TestFailure(f"Service {name}: port {port['port']} != target port: needs a virtual IP, "
                                      f"which this test does not emulate")
        for p in selected:
            if p.name in pods_ready:
                names.setdefault(p.ip, []).extend(
                    [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"])
            if p.kind == "StatefulSet" and p.workload["spec"].get("serviceName") == name:
                names.setdefault(p.ip, []).append(f"{p.name}.{name}.{ns}.svc.{CLUSTER_DOMAIN}")
    entries = "".join(f"{ip} {' '.join(n)}\n" for ip, n in sorted(names.items()))
    for p in cluster.pods:
        with open(p.hosts, "w") as f:
            f.write(f"127.0.0.1 localhost\n{p.ip} {p.name}\n{entries}")
    with open(client_hosts, "w") as f:
        f.write(f"127.0.0.1 localhost\n{entries}")


# ---- one overlay --------------------------------------------------------------

def render(kubectl, path):
    out = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise TestFailure(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def scrape(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        return r.read().decode()


def metric_value(text, name, labels=""):
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def run_overlay(args, node, overlay_dir, base):
    name = os.path.basename(os.path.normpath(overlay_dir))
    cluster = Cluster(name, render(args.kubectl, overlay_dir), args)
    by_image = lambda part: [p for p in cluster.pods if part in p.image]  # noqa: E731
    redis, workers, routers = by_image("redis"), by_image("hc-worker"), by_image("hc-router")
    if len(redis) != 1 or len(workers) < 2 or not routers:
        raise TestFailure(f"{name}: expected 1 Redis, >= 2 workers, >= 1 router; got "
                          f"{len(redis)}, {len(workers)}, {len(routers)}")
    log(f"{name}: namespace {cluster.namespace}, pods " +
        ", ".join(f"{p.name} {p.ip}" for p in cluster.pods))
    for p in cluster.pods:
        log(f"  {p.name}: {' '.join(p.argv)}")
        for s in p.substituted:
            log(f"  {p.name}: substituted {s} (cannot exist on this machine)")
    odir = os.path.join(base, name)
    for p in cluster.pods:
        p.prepare_dir(odir)
    client_dir = os.path.join(odir, "client")
    os.makedirs(client_dir)
    client_hosts = os.path.join(client_dir, "hosts")
    ready = set()
    write_hosts(cluster, ready, client_hosts)
    try:
        node.setup_network(cluster.pods)
        check_overlay(args, node, cluster, redis[0], workers, routers, ready, client_hosts)
    finally:
        # On a failure the exception propagates and these problems, likely
        # its consequences, are dropped.
        problems = stop_pods(cluster.pods)
        node.teardown_network()
    if problems:
        raise TestFailure("\n".join(problems))
    log("  every pod exited 0 on SIGTERM")


def publish(cluster, ready, pod, client_hosts):
    ready.add(pod.name)
    write_hosts(cluster, ready, client_hosts)


def client(node, client_hosts, argv, timeout=60, api_key=None):
    """Runs argv in the client pod (a namespace of its own on the bridge,
    the cluster's hosts file as /etc/hosts), with $HC_API_KEY = api_key."""
    script = f'mount --bind {client_hosts} /etc/hosts && exec "$@"'
    env = dict(os.environ, GRPC_DNS_RESOLVER="native")
    env.pop("HC_API_KEY", None)
    if api_key is not None:
        env["HC_API_KEY"] = api_key
    return subprocess.run(["nsenter", f"--net=/proc/{node.client.pid}/ns/net", "unshare", "--mount",
                           "--propagation=private", "sh", "-c", script, "client"] + argv,
                          capture_output=True, text=True, timeout=timeout, env=env)


def check_overlay(args, node, cluster, redis, workers, routers, ready, client_hosts):
    name = cluster.name
    # Redis first: a router exits while the ledger is unreachable, and
    # Kubernetes would restart it until Redis is up; the test does not emulate
    # restarts.
    redis.start()
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        log(f"  {redis.name} {kind}: {node.wait_probe(redis, kind)}")
    publish(cluster, ready, redis, client_hosts)

    # The ledger must not answer a client without the password, from another pod.
    port = redis.container_port("redis")
    out = client(node, client_hosts, ["redis-cli", "-h", "hc-redis", "-p", str(port), "ping"])
    if "NOAUTH" not in out.stdout + out.stderr:
        raise TestFailure(f"{name}: Redis answered a client without the password: {out.stdout.strip()} "
                          f"{out.stderr.strip()}")
    log(f"  {redis.name}: refuses clients without the password ({out.stdout.strip()})")

    for p in workers + routers:
        p.start()
    # No worker is in the headless Service yet: the routers must be alive
    # (startup/liveness pass, so they are not restarted) but not ready.
    for r in routers:
        try:
            log(f"  {r.name} startupProbe: {node.wait_probe(r, 'startupProbe')}")
            log(f"  {r.name} livenessProbe: {node.wait_probe(r, 'livenessProbe')}")
        except TestFailure as e:
            raise TestFailure(f"{e}\n  (no worker is ready yet, as while GPU workers load a model for "
                              f"minutes: the kubelet would restart this router instead of waiting)") from None
        log(f"  {r.name} readinessProbe before any worker is ready: "
            f"{node.wait_probe(r, 'readinessProbe', expect=False)}")
    for w in workers:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            log(f"  {w.name} {kind}: {node.wait_probe(w, kind)}")
        publish(cluster, ready, w, client_hosts)
    for r in routers:
        log(f"  {r.name} readinessProbe: {node.wait_probe(r, 'readinessProbe')}")
        publish(cluster, ready, r, client_hosts)

    # Metrics where the monitors scrape them; every router sees every worker.
    targets = metric_targets(cluster)
    deadline = time.monotonic() + args.wait_cap
    for r in routers:
        url = targets[r.name]
        while True:
            healthy = metric_value(scrape(url), "hc_router_workers", '{state="healthy"}')
            if healthy == len(workers):
                break
            if time.monotonic() > deadline:
                raise TestFailure(f"{r.name}: hc_router_workers{{state=\"healthy\"}} is {healthy} at {url}, "
                                  f"expected {len(workers)} (one per worker pod)\n{r.log_tail()}")
            time.sleep(POLL_S)
        log(f"  {r.name}: sees {len(workers)} healthy workers ({url})")

    # Mutual TLS: the workers' gRPC port refuses clients without the routers'
    # certificate (plaintext, or TLS with none); the routers reached them above.
    for w in workers:
        if w.flag("peer_ca") is None:
            continue
        import grpc
        ca = w.secret_file(w.flag("peer_ca")).encode()
        target = f"{w.ip}:{w.container_port('grpc')}"
        for what, channel in (("plaintext client", grpc.insecure_channel(target)),
                              ("TLS client without a client certificate",
                               grpc.secure_channel(target, grpc.ssl_channel_credentials(ca), options=[
                                   ("grpc.ssl_target_name_override", routers[0].flag("worker_server_name"))]))):
            with channel:
                try:
                    node.health_grpc.HealthStub(channel).Check(node.health_pb2.HealthCheckRequest(), timeout=5)
                    raise TestFailure(f"{w.name}: its gRPC port answered a {what}")
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        raise TestFailure(f"{w.name}: a {what} got {e.code().name}, expected the "
                                          f"handshake to fail (UNAVAILABLE)") from None
            log(f"  {w.name}: refuses a {what} at {target}")

    # A 3-turn conversation through the routers: pod addresses, then the Service name.
    svc_port = next(p["port"] for p in cluster.by_kind["Service"]["hc-router"]["spec"]["ports"]
                    if p["name"] == "grpc")
    grpc_port = routers[0].container_port("grpc")
    via = [f"{routers[0].ip}:{grpc_port}", f"{routers[-1].ip}:{grpc_port}",
           f"hc-router.{cluster.namespace}.svc.{CLUSTER_DOMAIN}:{svc_port}"]
    hcctl = cluster.hcctl
    # The key an operator gives a client, where the routers require one.
    api_key = cluster.api_key if routers[0].flag("api_keys_file") is not None else None
    tls = []
    if routers[0].flag("tls_cert") is not None:
        # Clients verify the router's certificate against its CA; pod IPs are
        # not in it, the Service name is.
        ca = os.path.join(os.path.dirname(client_hosts), "router-ca.crt")
        with open(ca, "w") as f:
            f.write(routers[0].secret_file(os.path.join(os.path.dirname(routers[0].flag("tls_cert")), "ca.crt")))
        tls = [f"--tls_ca={ca}"]
    conversation = f"netns-{name}-{os.getpid()}"
    for turn, router in enumerate(via, 1):
        name_override = [f"--tls_server_name=hc-router.{cluster.namespace}.svc"] \
            if tls and router.split(":")[0].replace(".", "").isdigit() else []
        out = client(node, client_hosts, [hcctl, "send", f"--router={router}", f"--conversation={conversation}",
                                          f"--message=turn {turn}: tell me about caches", "--max_tokens=8"]
                     + tls + name_override, api_key=api_key)
        # The worker is blank for a key without admin rights.
        m = re.search(r"round (\d+) on (\S*) \| prompt (\d+) tokens, cached (\d+)", out.stderr)
        if out.returncode != 0 or not m:
            raise TestFailure(f"{name}: turn {turn} via {router} failed ({out.returncode}): {out.stderr.strip()}\n"
                              + "".join(r.log_tail(5) for r in routers))
        cached = int(m.group(4))
        log(f"  turn {turn} via {router}: round {m.group(1)} on {m.group(2) or '(not shown to this key)'}, "
            f"prompt {m.group(3)}, cached {cached}")
        if turn > 1 and cached == 0:
            raise TestFailure(f"{name}: turn {turn} was not served from the cache (cached_tokens 0)")
    if api_key is not None:
        check_api_keys(args, node, cluster, routers, client_hosts, tls, conversation)

    for p in workers + routers:
        text = scrape(targets[p.name])
        family = "hc_router_requests_total" if p in routers else "hc_worker_prefix_cache_queries_total"
        if family not in text:
            raise TestFailure(f"{p.name}: {targets[p.name]} has no {family}")
    hits = sum(metric_value(scrape(targets[w.name]), "hc_worker_prefix_cache_hits_total") or 0 for w in workers)
    if hits <= 0:
        raise TestFailure(f"{name}: no worker counted a prefix-cache hit")
    log(f"  /metrics scraped at {', '.join(sorted(targets.values()))}; prefix-cache hits {hits:g}")


def check_api_keys(args, node, cluster, routers, client_hosts, tls, conversation):
    """Only the key of Secret hc-api-keys gets in; after the Secret changes
    (the kubelet updates the volume, the router polls the file) only the new
    one does, on every router, without a restart."""
    def call(router, key, command):
        argv = [cluster.hcctl, command, f"--router={router.ip}:{router.container_port('grpc')}",
                f"--conversation={conversation}"] + tls
        if tls:  # pod IPs are not in the router's certificate
            argv.append(f"--tls_server_name=hc-router.{cluster.namespace}.svc")
        if command == "send":
            argv += ["--message=one more turn", "--max_tokens=4"]
        return client(node, client_hosts, argv, api_key=key)

    def refused(router, key, what):
        out = call(router, key, "send")
        if out.returncode == 0 or "UNAUTHENTICATED" not in out.stderr:
            raise TestFailure(f"{router.name}: a turn {what} got exit {out.returncode}: {out.stderr.strip()}; "
                              f"expected UNAUTHENTICATED")
        return out.stderr.strip()

    for r in routers:
        log(f"  {r.name}: a turn without a key: {refused(r, None, 'without an API key')}")
        log(f"  {r.name}: a turn with a wrong key: {refused(r, secrets.token_hex(32), 'with a wrong API key')}")
    old, new = cluster.api_key, secrets.token_hex(32)
    cluster.update_secret(API_KEYS_SECRET, {"keys.json": api_keys_json(cluster.hcctl, new)})
    for r in routers:
        deadline = time.monotonic() + args.wait_cap
        while (out := call(r, new, "get")).returncode != 0:
            if time.monotonic() > deadline:
                raise TestFailure(f"{r.name}: the new key of the updated Secret {API_KEYS_SECRET} is still refused "
                                  f"after {args.wait_cap:g}s: {out.stderr.strip()}\n{r.log_tail(5)}")
            time.sleep(POLL_S)
        if "round 3," not in out.stdout:
            raise TestFailure(f"{r.name}: with the new key (same tenant) the conversation reads {out.stdout!r}")
        refused(r, old, "with the key the Secret no longer holds")
        log(f"  {r.name}: Secret {API_KEYS_SECRET} updated: takes the new key (same tenant, round 3), "
            f"refuses the old one")


def metric_targets(cluster):
    """pod name -> URL, as the ServiceMonitors (through their Services'
    endpoints) and PodMonitors address them."""
    targets = {}
    for sm in cluster.by_kind.get("ServiceMonitor", {}).values():
        for svc in cluster.by_kind.get("Service", {}).values():
            if not labels_match(sm["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})):
                continue
            for ep in sm["spec"]["endpoints"]:
                port = next(p for p in svc["spec"]["ports"] if p.get("name") == ep["port"])
                for p in cluster.pods_of(svc["spec"]["selector"]):
                    targets[p.name] = f"http://{p.ip}:{p.container_port(port.get('targetPort', port['port']))}" \
                                      f"{ep.get('path', '/metrics')}"
    for pm in cluster.by_kind.get("PodMonitor", {}).values():
        for p in cluster.pods_of(pm["spec"]["selector"]["matchLabels"]):
            for ep in pm["spec"]["podMetricsEndpoints"]:
                targets[p.name] = f"http://{p.ip}:{p.container_port(ep['port'])}{ep.get('path', '/metrics')}"
    for p in cluster.pods:
        if ("hc-router" in p.image or "hc-worker" in p.image) and p.name not in targets:
            raise TestFailure(f"no ServiceMonitor/PodMonitor scrapes {p.name}")
    return targets


def stop_pods(pods):
    """SIGTERM, as the kubelet sends it after preStop (which only sleeps, so
    it is skipped); every pod must exit 0 within its grace period (capped)."""
    problems = []
    running = [p for p in pods if p.proc is not None]
    for p in running:
        if p.proc.poll() is None:
            os.killpg(p.proc.pid, signal.SIGTERM)
    for p in running:
        grace = p.spec.get("terminationGracePeriodSeconds", 30)
        try:
            rc = p.proc.wait(timeout=min(grace, 60))
        except subprocess.TimeoutExpired:
            os.killpg(p.proc.pid, signal.SIGKILL)
            rc = p.proc.wait()
            problems.append(f"{p.name} did not exit within its grace period on SIGTERM")
        if rc != 0:
            problems.append(f"{p.name} exited {rc} on SIGTERM:\n{p.log_tail()}")
        p.log_file.close()
        p.proc = None
    return problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--root", default=REPO, help="directory holding deploy/ (default: this repository)")
    ap.add_argument("--build-dir", default=os.environ.get("HC_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--wait-cap", type=float, default=60,
                    help="longest wait for one probe or condition, seconds (the manifests allow minutes)")
    ap.add_argument("overlays", nargs="*")
    args = ap.parse_args(argv)
    args.root = os.path.abspath(args.root)
    args.build_dir = os.path.abspath(args.build_dir)

    if os.geteuid() != 0:
        print("FAIL: netns_pods_test needs root (network namespaces, mounts); CI runs the deploy tests "
              "as root. Run it as root (sudo ctest -R deploy_pods_netns).", file=sys.stderr)
        return 1
    missing = [t for t in ("ip", "nsenter", "unshare", "setpriv", "chroot", "mount", "redis-server", "redis-cli")
               if shutil.which(t) is None]
    if missing:
        print(f"FAIL: missing {missing} (scripts/install-deps.sh installs them)", file=sys.stderr)
        return 1
    overlays = args.overlays or sorted(glob.glob(os.path.join(args.root, "deploy/k8s/overlays/*/")))
    if not overlays:
        print("FAIL: no overlays found", file=sys.stderr)
        return 1

    # The node: a network namespace of our own, entered before any thread or
    # socket exists, so that every socket and child of this process (probes,
    # scrapes, the bridge, the pods' veths) lives inside it, and it vanishes
    # with this process whatever happens.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        print(f"FAIL: unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    sys.path.insert(0, os.path.join(REPO, "tools", "python"))
    import hc_client  # noqa: F401  (generates the stubs, health included)
    from hc_health.v1 import health_pb2, health_pb2_grpc
    stubs = sys.path[0]  # where hc_client put them

    node = Node(args, (health_pb2, health_pb2_grpc))
    base = tempfile.mkdtemp(prefix="hc-netns-pods-")
    started = time.monotonic()
    failed = False
    try:
        for path in overlays:
            t0 = time.monotonic()
            try:
                run_overlay(args, node, path, base)
                log(f"PASS {os.path.basename(os.path.normpath(path))} ({time.monotonic() - t0:.1f}s)")
            except (TestFailure, SecretError, subprocess.TimeoutExpired, OSError) as e:
                log(f"FAIL {os.path.basename(os.path.normpath(path))}: {e}")
                failed = True
    finally:
        node.teardown_network()
        shutil.rmtree(base, ignore_errors=True)
        if os.path.basename(stubs).startswith("hc-stubs-"):
            shutil.rmtree(stubs, ignore_errors=True)
    log(f"{'FAILED' if failed else 'passed'} in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
