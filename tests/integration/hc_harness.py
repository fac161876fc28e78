"""Test harness: real hc-worker / hc-router processes on loopback.

Each process binds port 0 and logs one line
    "<name> listening on HOST:PORT metrics HOST:MPORT"
which the harness reads from the process's stderr (a reader thread; no
sleeps). Every process is killed at cleanup, whatever the test did.

Python stubs are generated from proto/ at import time into a temp dir with
grpc_tools (Debian python3-grpc-tools), so the API is used exactly as any
client in another language would use it.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("HC_BUILD_DIR", os.path.join(REPO, "build"))
BIN = os.path.join(BUILD, "bin")
# The router and worker binaries may come from another build (a sanitizer build: make test-asan / test-tsan).
ROUTER_BIN = os.environ.get("HC_ROUTER_BIN", os.path.join(BIN, "hc-router"))
WORKER_BIN = os.environ.get("HC_WORKER_BIN", os.path.join(BIN, "hc-worker"))
GRPC_PROTO_DIR = "/usr/share/grpc-proto"

_READY = re.compile(r"listening on (\S+):(\d+) metrics (\S+):(\d+)")
# Lines a sanitizer writes to a process's stderr (make test-asan / test-tsan).
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "WARNING: ThreadSanitizer", "runtime error:",
                   "ERROR: LeakSanitizer")


sys.path.insert(0, os.path.join(REPO, "tools", "python"))
import hc_client  # noqa: E402,F401  (generates the stubs from proto/)
import grpc  # noqa: E402
from hc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from hybridcache.v1 import chat_pb2, chat_pb2_grpc, worker_pb2, worker_pb2_grpc  # noqa: E402,F401


class Process:
    """One server process; stderr lines are kept and scanned for the ready line."""

    def __init__(self, name, args, ready_timeout=120.0, log_dir=None):
        self.name = name
        self.args = args
        self.lines = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.host = self.port = self.metrics_port = None
        log_dir = log_dir or tempfile.mkdtemp(prefix="hc-logs-")
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(ready_timeout) or self.port is None:
            self.kill()
            raise RuntimeError(f"{name} did not start: {' '.join(args)}\n{self.log()}")

    def _read(self):
        with open(self.log_path, "w") as log:
            for line in self.proc.stderr:
                log.write(line)
                log.flush()
                with self._lock:
                    self.lines.append(line)
                m = _READY.search(line)
                if m and self.port is None:
                    self.host, self.port = m.group(1), int(m.group(2))
                    self.metrics_port = int(m.group(4))
                    self._ready.set()
        self._ready.set()  # exited: unblock a waiting start

    def log(self):
        with self._lock:
            return "".join(self.lines[-60:])

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def metrics(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def kill(self):
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)

    def stop(self, timeout=30.0):
        """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds; returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode


def metric_value(text, name, labels=None):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if labels and any(got.get(k) != v for k, v in labels.items()):
            continue
        total += float(m.group(3))
        found = True
    return total if found else None


class Stack:
    """Workers and a router on loopback; use as a context manager."""

    def __init__(self, num_workers=2, model="synthetic:tiny", worker_args=(), router_args=(),
                 start_router=True):
        self.model = model
        self.worker_args = list(worker_args)
        self.router_args = list(router_args)
        self.log_dir = tempfile.mkdtemp(prefix="hc-stack-")
        self.workers = []
        self.router = None
        try:
            for i in range(num_workers):
                self.add_worker(f"w{i}")
            if start_router:
                self.start_router()
        except Exception:
            self.close()
            raise

    def add_worker(self, worker_id, extra=()):
        args = [WORKER_BIN, "--port=0", "--metrics_port=0",
                f"--worker_id={worker_id}", f"--model={self.model}", "--device=cpu",
                *self.worker_args, *extra]
        w = Process(worker_id, args, log_dir=self.log_dir)
        self.workers.append(w)
        return w

    def start_router(self, extra=()):
        workers = ",".join(w.address for w in self.workers)
        args = [ROUTER_BIN, "--port=0", "--metrics_port=0",
                f"--workers={workers}", f"--model={self.model}", *self.router_args, *extra]
        self.router = Process("router", args, log_dir=self.log_dir)
        return self.router

    def chat(self):
        channel = grpc.insecure_channel(self.router.address)
        return chat_pb2_grpc.ChatServiceStub(channel)

    def worker_stub(self, worker):
        return worker_pb2_grpc.WorkerServiceStub(grpc.insecure_channel(worker.address))

    def close(self):
        for p in ([self.router] if self.router else []) + self.workers:
            if p.alive():
                p.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def complete(stub, conversation_id, messages=None, suffix_token_ids=None, salt="", timeout=120,
             **sampling):
    """Runs one turn; returns (started, tokens, text, completed). Raises grpc.RpcError."""
    req = chat_pb2.CompleteRequest(conversation_id=conversation_id, cache_salt=salt)
    for role, content in messages or []:
        req.messages.add(role=role, content=content)
    req.suffix_token_ids.extend(suffix_token_ids or [])
    expected_round = sampling.pop("expected_round", None)
    if expected_round is not None:
        req.expected_round = expected_round
    for k, v in sampling.items():
        if k == "stop":
            req.sampling.stop.extend(v)
        else:
            setattr(req.sampling, k, v)
    started, completed, tokens, text = None, None, [], []
    for ev in stub.Complete(req, timeout=timeout):
        kind = ev.WhichOneof("event")
        if kind == "started":
            started = ev.started
        elif kind == "chunk":
            tokens.extend(ev.chunk.token_ids)
            text.append(ev.chunk.text)
        elif kind == "completed":
            completed = ev.completed
    return started, tokens, "".join(text), completed


def wait_until(predicate, timeout=30.0, what="condition"):
    """Polls `predicate` (for external state such as a process's health) until true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
