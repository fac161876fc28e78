"""TLS through real processes: an hc-worker that requires the router's client
certificate (--peer_ca), an hc-router serving TLS on its public port and
presenting that certificate to the worker, both with a plaintext health-only
port. Certificates are made for each run by tests/certs/make_test_certs.sh
(openssl): a CA, a server certificate for 127.0.0.1/localhost, the router's
client certificate, and a rogue CA with a client certificate of its own."""
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

grpc, chat_pb2, worker_pb2, worker_pb2_grpc = h.grpc, h.chat_pb2, h.worker_pb2, h.worker_pb2_grpc
health_pb2, health_pb2_grpc = h.health_pb2, h.health_pb2_grpc
MAKE_CERTS = os.path.join(h.REPO, "tests", "certs", "make_test_certs.sh")
GREEDY = dict(temperature=0.0, ignore_eos=True)
_HEALTH = re.compile(r" health (\S+):(\d+)")


def make_certs():
    d = tempfile.mkdtemp(prefix="hc-tls-")
    subprocess.run([MAKE_CERTS, d], check=True)
    return d


def read(path):
    with open(path, "rb") as f:
        return f.read()


def health_address(process):
    m = _HEALTH.search("".join(process.lines))
    assert m, f"{process.name} printed no health port:\n{process.log()}"
    return f"{m.group(1)}:{m.group(2)}"


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


class TlsStack:
    """One worker (mutual TLS) and a router (TLS) on loopback."""

    def __init__(self, certs, refresh="1s"):
        c = lambda name: os.path.join(certs, name)  # noqa: E731
        self.certs = certs
        tls = [f"--tls_cert={c('server.crt')}", f"--tls_key={c('server.key')}",
               f"--tls_refresh_interval={refresh}", "--health_port=0"]
        self.stack = h.Stack(
            num_workers=1, worker_args=tls + [f"--peer_ca={c('ca.crt')}"],
            router_args=tls + ["--probe_interval=200ms", f"--worker_ca={c('ca.crt')}",
                               f"--worker_tls_cert={c('router-client.crt')}",
                               f"--worker_tls_key={c('router-client.key')}"])
        self.worker = self.stack.workers[0]
        self.router = self.stack.router

    def file(self, name):
        return os.path.join(self.certs, name)

    def credentials(self, identity=None, ca="ca.crt"):
        key = read(self.file(f"{identity}.key")) if identity else None
        chain = read(self.file(f"{identity}.crt")) if identity else None
        return grpc.ssl_channel_credentials(root_certificates=read(self.file(ca)),
                                            private_key=key, certificate_chain=chain)

    def chat(self):
        return h.chat_pb2_grpc.ChatServiceStub(
            grpc.secure_channel(self.router.address, self.credentials()))

    def worker_stub(self, identity=None, ca="ca.crt"):
        return worker_pb2_grpc.WorkerServiceStub(
            grpc.secure_channel(self.worker.address, self.credentials(identity, ca)))

    def close(self):
        self.stack.close()
        shutil.rmtree(self.certs, ignore_errors=True)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = TlsStack(make_certs())

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def test_plaintext_clients_are_refused_on_the_tls_ports(self):
        chat = h.chat_pb2_grpc.ChatServiceStub(grpc.insecure_channel(self.s.router.address))
        self.assertEqual(code_of(lambda: chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id="x"), timeout=5)), grpc.StatusCode.UNAVAILABLE)
        worker = worker_pb2_grpc.WorkerServiceStub(grpc.insecure_channel(self.s.worker.address))
        self.assertEqual(code_of(lambda: worker.Load(worker_pb2.LoadRequest(), timeout=5)),
                         grpc.StatusCode.UNAVAILABLE)

    def test_worker_refuses_clients_without_the_routers_certificate(self):
        # A certificate of another CA, and none at all: the handshake fails, so
        # no method of the WorkerService is reached.
        for name, stub in [("rogue client certificate", self.s.worker_stub("rogue-client")),
                           ("no client certificate", self.s.worker_stub())]:
            calls = {
                "Execute": lambda: list(stub.Execute(worker_pb2.ExecuteRequest(), timeout=5)),
                "Release": lambda: stub.Release(worker_pb2.ReleaseRequest(), timeout=5),
                "Drain": lambda: stub.Drain(worker_pb2.DrainRequest(), timeout=5),
                "Load": lambda: stub.Load(worker_pb2.LoadRequest(), timeout=5),
            }
            for method, call in calls.items():
                with self.subTest(client=name, method=method):
                    self.assertEqual(code_of(call), grpc.StatusCode.UNAVAILABLE)
        # The refused Drain did nothing: the worker still takes turns.
        report = self.s.worker_stub("router-client").Load(worker_pb2.LoadRequest(), timeout=10)
        self.assertFalse(report.draining)
        _, tokens, _, done = h.complete(self.s.chat(), "after-rogue", messages=[("user", "hi")],
                                        max_tokens=3, **GREEDY)
        self.assertEqual(len(tokens), 3)

    def test_multi_turn_conversation_over_tls(self):
        chat = self.s.chat()
        prev = 0
        for i, text in enumerate(["Hello there", "How are you?", "Tell me about the cache."]):
            started, tokens, _, done = h.complete(chat, "tls-conv", messages=[("user", text)],
                                                  max_tokens=5, **GREEDY)
            self.assertEqual(done.committed_round, i + 1)
            self.assertEqual(len(tokens), 5)
            if i > 0:
                # Resumed from the worker's cache: the router reached it over mutual TLS.
                self.assertGreaterEqual(started.cached_tokens, prev)
            prev = started.prompt_tokens + len(tokens) - 1
        conv = chat.GetConversation(chat_pb2.GetConversationRequest(conversation_id="tls-conv"))
        self.assertEqual(conv.committed_round, 3)

    def test_health_port_is_plaintext_while_the_main_port_requires_mutual_tls(self):
        for p in (self.s.worker, self.s.router):
            channel = grpc.insecure_channel(health_address(p))
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "liveness"):
                with self.subTest(process=p.name, service=service):
                    resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                    self.assertEqual(resp.status, health_pb2.HealthCheckResponse.SERVING)
        # Nothing but health there.
        worker = worker_pb2_grpc.WorkerServiceStub(grpc.insecure_channel(health_address(self.s.worker)))
        self.assertEqual(code_of(lambda: worker.Drain(worker_pb2.DrainRequest(), timeout=5)),
                         grpc.StatusCode.UNIMPLEMENTED)
        # The main port still refuses a plaintext health check.
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(self.s.worker.address))
        self.assertEqual(code_of(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5)),
                         grpc.StatusCode.UNAVAILABLE)


class TlsStartupErrorTest(unittest.TestCase):
    """Certificate mistakes end start-up with a message naming them (exit 2),
    before a worker loads its model or a router probes its workers."""

    @classmethod
    def setUpClass(cls):
        cls.certs = make_certs()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs, ignore_errors=True)

    def run_binary(self, name, *args):
        return subprocess.run([os.path.join(h.BIN, name), "--port=0", "--metrics_port=0", *args],
                              capture_output=True, text=True, timeout=60)

    def test_key_of_another_certificate_is_refused(self):
        c = lambda n: os.path.join(self.certs, n)  # noqa: E731
        out = self.run_binary("hc-worker", f"--tls_cert={c('server.crt')}", f"--tls_key={c('router-client.key')}",
                              f"--peer_ca={c('ca.crt')}")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("does not belong to certificate", out.stderr)
        out = self.run_binary("hc-router", "--workers=127.0.0.1:1", f"--worker_ca={c('ca.crt')}",
                              f"--worker_tls_cert={c('router-client.crt')}", f"--worker_tls_key={c('server.key')}")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("does not belong to certificate", out.stderr)

    def test_incomplete_tls_flags_are_refused(self):
        c = lambda n: os.path.join(self.certs, n)  # noqa: E731
        out = self.run_binary("hc-worker", f"--peer_ca={c('ca.crt')}")  # mutual TLS without a certificate
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("client CA was given without a server certificate", out.stderr)
        out = self.run_binary("hc-router", "--workers=127.0.0.1:1", f"--worker_tls_cert={c('router-client.crt')}",
                              f"--worker_tls_key={c('router-client.key')}")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("need --worker_ca", out.stderr)
        out = self.run_binary("hc-router", "--workers=127.0.0.1:1", f"--tls_cert={c('absent.crt')}",
                              f"--tls_key={c('server.key')}")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("absent.crt", out.stderr)


def served_fingerprint(port, ca):
    """SHA-256 of the certificate the server presents in a new handshake."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            return hashlib.sha256(conn.getpeercert(binary_form=True)).hexdigest()


def file_fingerprint(path):
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


class CertificateRotationTest(unittest.TestCase):
    # Decoding this many takes seconds on the tiny model; the stop comes within
    # milliseconds of the first tokens.
    MAX_TOKENS = 3500

    def setUp(self):
        self.s = TlsStack(make_certs())
        self.addCleanup(self.s.close)

    def test_rotated_certificate_is_served_without_dropping_a_running_stream(self):
        ca, cert = self.s.file("ca.crt"), self.s.file("server.crt")
        old = file_fingerprint(cert)
        self.assertEqual(served_fingerprint(self.s.router.port, ca), old)

        # A turn that is running on the router's connection when the
        # certificate changes. The worker is stopped (SIGSTOP) once the first
        # tokens arrive, so the turn cannot end before the new certificate has
        # been seen; it resumes (SIGCONT) afterwards and must complete.
        req = chat_pb2.CompleteRequest(conversation_id="rotation")
        req.messages.add(role="user", content="a long answer, please")
        req.sampling.max_tokens = self.MAX_TOKENS
        req.sampling.temperature = 0.0
        req.sampling.ignore_eos = True
        stream = self.s.chat().Complete(req, timeout=120)
        tokens, result = [], {}
        first_tokens, finished = threading.Event(), threading.Event()

        def reader():
            try:
                for ev in stream:
                    if ev.WhichOneof("event") == "chunk":
                        tokens.extend(ev.chunk.token_ids)
                        first_tokens.set()
                    elif ev.WhichOneof("event") == "completed":
                        result["completed"] = ev.completed
            except grpc.RpcError as e:
                result["error"] = e
            finally:
                first_tokens.set()
                finished.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        self.assertTrue(first_tokens.wait(60), "no tokens")
        self.s.worker.signal(signal.SIGSTOP)
        try:
            self.assertFalse(finished.is_set(), f"the turn ended before the rotation: {result}")
            subprocess.run([MAKE_CERTS, self.s.certs, "reissue"], check=True)
            new = file_fingerprint(cert)
            self.assertNotEqual(new, old)
            # New handshakes get the new certificate within --tls_refresh_interval.
            deadline = time.monotonic() + 30
            served = old
            while served != new and time.monotonic() < deadline:
                served = served_fingerprint(self.s.router.port, ca)
                time.sleep(0.1)
            self.assertEqual(served, new, "the renewed certificate was not served")
            self.assertFalse(finished.is_set(), "the running turn ended during the rotation")
            tokens_at_rotation = len(tokens)
        finally:
            self.s.worker.signal(signal.SIGCONT)
        self.assertTrue(finished.wait(120))
        self.assertNotIn("error", result)
        self.assertEqual(result["completed"].usage.completion_tokens, self.MAX_TOKENS)
        self.assertEqual(len(tokens), self.MAX_TOKENS)
        self.assertLess(tokens_at_rotation, self.MAX_TOKENS)
        # And a new connection, which verifies the new certificate, serves turns.
        _, more, _, done = h.complete(self.s.chat(), "rotation", messages=[("user", "more")],
                                      max_tokens=3, **GREEDY)
        self.assertEqual(done.committed_round, 2)


class MetricsHostTest(unittest.TestCase):
    def test_metrics_bind_apart_from_the_service(self):
        with h.Stack(num_workers=1, start_router=False, worker_args=["--metrics_host=127.0.0.2"]) as stack:
            w = stack.workers[0]
            self.assertRegex("".join(w.lines), rf"listening on 127\.0\.0\.1:\d+ metrics 127\.0\.0\.2:{w.metrics_port}")
            with h.urllib.request.urlopen(f"http://127.0.0.2:{w.metrics_port}/metrics", timeout=10) as r:
                self.assertIn("hc_worker_", r.read().decode())
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", w.metrics_port), timeout=5).close()


if __name__ == "__main__":
    unittest.main()
