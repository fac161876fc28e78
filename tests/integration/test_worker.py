"""hc-worker as a real process with the real (synthetic tiny) hybrid model, over gRPC.

Each test starts its own worker on ephemeral ports and kills it at the end.
"""
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

pb = h.worker_pb2


def turn(conv, suffix, new_round=1, expected=None, history=None, max_tokens=8, salt="",
         request_id=None):
    req = pb.ExecuteRequest(key=pb.ConversationKey(conversation_id=conv, cache_salt=salt),
                            new_round=new_round, suffix_token_ids=suffix,
                            request_id=request_id or f"{conv}/{new_round}/{len(suffix)}")
    if expected is not None:
        req.expected.CopyFrom(expected)
    if history is not None:
        req.has_history = True
        req.history_token_ids.extend(history)
    req.sampling.temperature = 0.0
    req.sampling.max_tokens = max_tokens
    req.sampling.ignore_eos = True
    return req


def run(stub, req, cancel_after=None, timeout=120):
    """Returns (started, tokens, committed, missing, error_code)."""
    started = committed = missing = None
    tokens = []
    call = stub.Execute(req, timeout=timeout)
    try:
        for ev in call:
            kind = ev.WhichOneof("event")
            if kind == "started":
                started = ev.started
            elif kind == "tokens":
                tokens.extend(ev.tokens.token_ids)
                if cancel_after is not None and len(tokens) >= cancel_after:
                    call.cancel()
            elif kind == "committed":
                committed = ev.committed
            elif kind == "state_missing":
                missing = ev.state_missing
    except h.grpc.RpcError as e:
        return started, tokens, committed, missing, e.code()
    return started, tokens, committed, missing, h.grpc.StatusCode.OK


class Conversation:
    """Plays the router: ledger of all tokens, the worker's committed state."""

    def __init__(self, stub, conv, salt=""):
        self.stub, self.conv, self.salt = stub, conv, salt
        self.ledger, self.state, self.round, self.resends = [], None, 0, 0

    def send(self, new_tokens, max_tokens=8, use_cache=True):
        if use_cache and self.state is not None:
            req = turn(self.conv, self.ledger[self.state.num_tokens:] + new_tokens, self.round + 1,
                       expected=self.state, max_tokens=max_tokens, salt=self.salt)
        else:
            req = turn(self.conv, new_tokens, self.round + 1, history=self.ledger,
                       max_tokens=max_tokens, salt=self.salt)
        started, tokens, committed, missing, code = run(self.stub, req)
        if missing is not None:
            self.resends += 1
            req = turn(self.conv, new_tokens, self.round + 1, history=self.ledger,
                       max_tokens=max_tokens, salt=self.salt, request_id=req.request_id + "/resend")
            started, tokens, committed, missing, code = run(self.stub, req)
        assert code == h.grpc.StatusCode.OK, code
        self.ledger += new_tokens + tokens
        self.state, self.round = committed.state, committed.state.round
        return started, tokens, committed


def available_cpus():
    """What hc::AvailableCpus() computes: the affinity mask capped by the cgroup CPU quota."""
    cpus = len(os.sched_getaffinity(0))
    quota = 0.0
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            q, period = f.read().split()
            if q != "max":
                quota = float(q) / float(period)
    except (OSError, ValueError):
        try:
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fq, \
                    open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fp:
                q, period = float(fq.read()), float(fp.read())
                quota = q / period if q > 0 and period > 0 else 0.0
        except (OSError, ValueError):
            pass
    if quota > 0:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


class WorkerProcessTest(unittest.TestCase):
    def start(self, *extra):
        w = h.Process("w0", [os.path.join(h.BIN, "hc-worker"), "--port=0", "--metrics_port=0",
                             "--worker_id=w0", "--model=synthetic:tiny", "--kv_blocks=512",
                             "--mamba_slots=32", "--max_batch_tokens=64", *extra])
        self.addCleanup(w.kill)
        return w, h.worker_pb2_grpc.WorkerServiceStub(h.grpc.insecure_channel(w.address))

    def test_multi_turn_hits_and_equals_recompute(self):
        w, stub = self.start()
        cached, fresh = Conversation(stub, "a"), Conversation(stub, "b")
        prev_context = 0
        for i in range(5):
            suffix = [(37 * i + 11 * k) % 900 + 4 for k in range(5 + 3 * i)]
            s1, t1, c1 = cached.send(suffix)
            s2, t2, _ = fresh.send(suffix, use_cache=False)
            self.assertEqual(t1, t2, f"turn {i}: cached and recomputed tokens differ")
            if i > 0:
                self.assertEqual(s1.cached_tokens, prev_context - 1)
            self.assertEqual(s2.cached_tokens, 0)
            self.assertEqual(s1.prompt_tokens, s2.prompt_tokens)
            prev_context = len(cached.ledger)
        m = w.metrics()
        self.assertEqual(h.metric_value(m, "hc_worker_conversation_lookups_total", {"result": "hit"}), 4)
        self.assertGreater(h.metric_value(m, "hc_worker_prefix_cache_hits_total"), 0)

    def test_threads_0_runs_on_every_available_cpu_and_exports_it(self):
        w, stub = self.start("--threads=0")
        want = available_cpus()
        self.assertEqual(h.metric_value(w.metrics(), "hc_worker_intra_op_threads", {"rank": "0"}),
                         want)
        self.assertIn(f"intra-op threads: {want} (--threads 0: available CPUs)", w.log())
        _, tokens, _ = Conversation(stub, "a").send([5, 6, 7, 8])
        self.assertEqual(len(tokens), 8)

    def test_threads_split_over_tp_ranks_each_with_its_own_pool(self):
        w, stub = self.start("--threads=3", "--tp=2")
        m = w.metrics()
        self.assertEqual(h.metric_value(m, "hc_worker_intra_op_threads", {"rank": "0"}), 2)
        self.assertEqual(h.metric_value(m, "hc_worker_intra_op_threads", {"rank": "1"}), 1)
        self.assertIn("per rank [2, 1]", w.log())
        _, tokens, _ = Conversation(stub, "a").send([5, 6, 7, 8])
        self.assertEqual(len(tokens), 8)

    def test_out_of_range_threads_is_refused_at_startup_with_a_clear_error(self):
        # 1000000 used to reach std::thread and abort on "Resource temporarily unavailable".
        for value in ("-2", "1000000"):
            r = subprocess.run([os.path.join(h.BIN, "hc-worker"), "--port=0", "--metrics_port=0",
                                f"--threads={value}"], capture_output=True, text=True,
                               timeout=120)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("--threads must be between 0 and 1024 (0: every CPU this process may "
                          f"use), got {value}", r.stderr)

    def test_bf16_checkpoint_serves_multi_turn_exactly(self):
        ckpt = tempfile.mkdtemp(prefix="hc-bf16-")
        self.addCleanup(shutil.rmtree, ckpt, True)
        subprocess.run([os.path.join(h.BIN, "hc-checkpoint"), "--preset=tiny", f"--out={ckpt}",
                        "--dtype=bfloat16"], check=True, capture_output=True)
        w, stub = self.start(f"--model={ckpt}")  # --dtype=auto: torch_dtype bfloat16
        cached, fresh = Conversation(stub, "a"), Conversation(stub, "b")
        for i in range(3):
            suffix = [(29 * i + 7 * k) % 900 + 4 for k in range(4 + 2 * i)]
            _, t1, _ = cached.send(suffix)
            _, t2, _ = fresh.send(suffix, use_cache=False)
            self.assertEqual(t1, t2, f"turn {i}: cached and recomputed tokens differ")
        self.assertEqual(h.metric_value(w.metrics(), "hc_worker_conversation_lookups_total",
                                        {"result": "hit"}), 2)
        self.assertIn("weights bfloat16, KV cache bfloat16", w.log())

    def test_cancel_mid_stream_keeps_committed_state(self):
        _, stub = self.start("--max_model_len=8192")
        conv, ref = Conversation(stub, "c"), Conversation(stub, "r")
        conv.send([5, 6, 7, 8, 9], max_tokens=4)
        ref.send([5, 6, 7, 8, 9], max_tokens=4)
        second = [40, 41, 42]
        req = turn("c", conv.ledger[conv.state.num_tokens:] + second, 2, expected=conv.state,
                   max_tokens=6000, request_id="to-cancel")
        _, tokens, committed, _, code = run(stub, req, cancel_after=2)
        self.assertEqual(code, h.grpc.StatusCode.CANCELLED)
        self.assertIsNone(committed)
        # The cancel reaches the engine asynchronously; until it has, a retry
        # is refused as a concurrent turn (ABORTED).
        h.wait_until(lambda: stub.Load(pb.LoadRequest()).num_running == 0, what="the cancel")
        _, retry, _ = conv.send(second, max_tokens=6)
        _, expected, _ = ref.send(second, max_tokens=6)
        self.assertEqual(retry, expected)
        self.assertEqual(conv.resends, 0, "the round-1 state should still be cached")

    def test_memory_pressure_evicts_and_stays_exact(self):
        w, stub = self.start("--kv_blocks=24", "--mamba_slots=6", "--block_size=4")
        convs = [Conversation(stub, f"p{i}") for i in range(20)]
        refs = [Conversation(stub, f"p{i}", salt="ref") for i in range(20)]
        for rnd in range(2):
            for i, (c, r) in enumerate(zip(convs, refs)):
                suffix = [(i * 13 + rnd * 7 + k) % 1000 + 3 for k in range(3 + (i + rnd) % 5)]
                _, t1, _ = c.send(suffix, max_tokens=3)
                _, t2, _ = r.send(suffix, max_tokens=3, use_cache=False)
                self.assertEqual(t1, t2, f"conversation {i} round {rnd}")
        evictions = h.metric_value(w.metrics(), "hc_worker_evictions_total")
        self.assertGreater(evictions, 0)
        self.assertGreater(sum(c.resends for c in convs), 0)

    def test_malformed_requests_change_nothing(self):
        _, stub = self.start("--max_model_len=64")
        cases = [
            (turn("m", [5, 99999]), h.grpc.StatusCode.INVALID_ARGUMENT),
            (turn("m", []), h.grpc.StatusCode.INVALID_ARGUMENT),
            (turn("m", [7] * 80), h.grpc.StatusCode.RESOURCE_EXHAUSTED),
            (turn("", [5]), h.grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for req, want in cases:
            self.assertEqual(run(stub, req)[4], want, req)
        self.assertEqual(stub.Load(pb.LoadRequest()).committed_conversations, 0)
        self.assertEqual(run(stub, turn("m", [5, 6]))[4], h.grpc.StatusCode.OK)

    def test_drain_then_sigterm_finishes_in_flight_turn(self):
        w, stub = self.start("--max_model_len=8192")
        results = {}
        first_token = threading.Event()

        def long_turn():
            call = stub.Execute(turn("d", [5, 6, 7], max_tokens=300), timeout=120)
            toks, committed = [], None
            for ev in call:
                if ev.WhichOneof("event") == "tokens":
                    toks.extend(ev.tokens.token_ids)
                    first_token.set()
                elif ev.WhichOneof("event") == "committed":
                    committed = ev.committed
            results["tokens"], results["committed"] = toks, committed

        t = threading.Thread(target=long_turn)
        t.start()
        self.assertTrue(first_token.wait(60))
        stub.Drain(pb.DrainRequest())
        self.assertTrue(stub.Load(pb.LoadRequest()).draining)
        health = h.health_pb2_grpc.HealthStub(h.grpc.insecure_channel(w.address))
        self.assertEqual(health.Check(h.health_pb2.HealthCheckRequest()).status,
                         h.health_pb2.HealthCheckResponse.NOT_SERVING)
        self.assertEqual(run(stub, turn("late", [5]))[4], h.grpc.StatusCode.UNAVAILABLE)
        t.join(120)
        self.assertEqual(len(results["tokens"]), 300)
        self.assertIsNotNone(results["committed"])
        self.assertEqual(w.stop(), 0)

    def test_max_waiting_refuses_the_next_turn_and_reports_the_bound(self):
        # Room for a turn far longer than the test: it is cancelled at the end.
        w, stub = self.start("--max_waiting=2", "--max_running=1", "--max_model_len=65536",
                             "--kv_blocks=4200")
        self.assertEqual(stub.Load(pb.LoadRequest()).max_waiting, 2)
        # A long turn holds the only running place; two more wait behind it.
        long_call = stub.Execute(turn("long", [5, 6, 7], max_tokens=65000, request_id="long"),
                                 timeout=300)
        self.assertEqual(next(long_call).WhichOneof("event"), "started")
        waiting = [stub.Execute(turn(f"w{i}", [5, 6, 7], max_tokens=2), timeout=120)
                   for i in range(2)]
        h.wait_until(lambda: stub.Load(pb.LoadRequest()).num_waiting == 2, what="two waiting turns")
        with self.assertRaises(h.grpc.RpcError) as refused:
            list(stub.Execute(turn("over", [5, 6, 7], max_tokens=2), timeout=60))
        self.assertEqual(refused.exception.code(), h.grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(refused.exception.details(), "worker busy: 2 turns waiting (--max_waiting 2)")
        self.assertEqual(h.metric_value(w.metrics(), "hc_worker_rejected_requests_total",
                                        {"reason": "queue_full"}), 1)
        long_call.cancel()
        for call in waiting:
            kinds = [ev.WhichOneof("event") for ev in call]
            self.assertEqual(kinds[-1], "committed")
        # The refused turn left nothing behind: it runs now, from scratch.
        started, _, committed, _, code = run(stub, turn("over", [5, 6, 7], max_tokens=2))
        self.assertEqual(code, h.grpc.StatusCode.OK)
        self.assertEqual(started.cached_tokens, 0)
        self.assertIsNotNone(committed)

    def test_sigterm_lets_the_running_turn_finish_before_the_engine_stops(self):
        w, stub = self.start("--max_model_len=8192")
        call = stub.Execute(turn("t", [5, 6, 7], max_tokens=300), timeout=120)
        tokens, committed = [], None
        for ev in call:
            kind = ev.WhichOneof("event")
            if kind == "tokens":
                if not tokens:
                    w.signal(signal.SIGTERM)  # mid-turn: the server drains first
                tokens.extend(ev.tokens.token_ids)
            elif kind == "committed":
                committed = ev.committed
        self.assertEqual(len(tokens), 300)
        self.assertIsNotNone(committed)
        self.assertEqual(w.proc.wait(timeout=60), 0)


if __name__ == "__main__":
    unittest.main()
