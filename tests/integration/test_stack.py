"""The whole turn through real processes: hc-router + 2 hc-workers on loopback
with the synthetic tiny model, driven through the public ChatService."""
import os
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

grpc, chat_pb2 = h.grpc, h.chat_pb2
GREEDY = dict(temperature=0.0, ignore_eos=True)


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


class StackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = h.Stack(num_workers=2, worker_args=["--kv_blocks=2048", "--mamba_slots=64"],
                            router_args=["--probe_interval=200ms"])
        cls.chat = cls.stack.chat()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def get(self, conv, salt=""):
        return self.chat.GetConversation(chat_pb2.GetConversationRequest(
            conversation_id=conv, cache_salt=salt))

    def test_multi_turn_message_mode_hits_the_cache(self):
        prev_prompt = prev_completion = 0
        for i, text in enumerate(["Hello there", "How are you today?", "Tell me about the cache.",
                                  "And the state?"]):
            started, tokens, text_out, done = h.complete(
                self.chat, "msg-hits", messages=[("user", text)], max_tokens=6, **GREEDY)
            self.assertEqual(done.committed_round, i + 1)
            self.assertEqual(done.usage.prompt_tokens, started.prompt_tokens)
            self.assertEqual(len(tokens), 6)
            if i > 0:
                self.assertGreaterEqual(started.cached_tokens, prev_prompt + prev_completion - 1)
            prev_prompt, prev_completion = started.prompt_tokens, len(tokens)
        conv = self.get("msg-hits")
        self.assertEqual(conv.committed_round, 4)
        self.assertEqual(len(conv.messages), 8)
        self.assertEqual([m.role for m in conv.messages[:2]], ["user", "assistant"])
        # Workers are identified by their address (stable per pod in Kubernetes).
        self.assertIn(conv.worker_id, [w.address for w in self.stack.workers])

    def test_raw_token_turns_equal_one_shot_recompute(self):
        history = []
        for i in range(6):
            suffix = [(31 * i + 7 * k) % 900 + 10 for k in range(4 + i)]
            _, tokens, _, done = h.complete(self.chat, "raw-exact", suffix_token_ids=suffix,
                                            max_tokens=5, **GREEDY)
            _, fresh, _, _ = h.complete(self.chat, f"raw-fresh-{i}", suffix_token_ids=history + suffix,
                                        max_tokens=5, **GREEDY)
            self.assertEqual(tokens, fresh, f"turn {i}")
            history += suffix + tokens
        self.assertEqual(self.get("raw-exact").num_tokens, len(history))

    def test_cancel_mid_stream_changes_nothing_and_retry_equals_uninterrupted(self):
        h.complete(self.chat, "cancel", suffix_token_ids=[11, 12, 13], max_tokens=4, **GREEDY)
        h.complete(self.chat, "cancel-ref", suffix_token_ids=[11, 12, 13], max_tokens=4, **GREEDY)
        before = self.get("cancel")
        req = chat_pb2.CompleteRequest(conversation_id="cancel", suffix_token_ids=[21, 22])
        req.sampling.temperature, req.sampling.ignore_eos, req.sampling.max_tokens = 0.0, True, 3000
        call = self.chat.Complete(req, timeout=120)
        got = 0
        with self.assertRaises(grpc.RpcError) as err:
            for ev in call:
                got += len(ev.chunk.token_ids)
                if got >= 2:
                    call.cancel()
        self.assertEqual(err.exception.code(), grpc.StatusCode.CANCELLED)
        after = self.get("cancel")
        self.assertEqual((after.committed_round, after.num_tokens), (before.committed_round, before.num_tokens))
        # The router releases the lease when the worker's stream ends.
        h.wait_until(lambda: code_of(lambda: h.complete(
            self.chat, "cancel", suffix_token_ids=[21, 22], max_tokens=5, expected_round=99)) !=
            grpc.StatusCode.ABORTED, what="the lease to be released")
        _, retry, _, _ = h.complete(self.chat, "cancel", suffix_token_ids=[21, 22], max_tokens=5, **GREEDY)
        _, ref, _, _ = h.complete(self.chat, "cancel-ref", suffix_token_ids=[21, 22], max_tokens=5, **GREEDY)
        self.assertEqual(retry, ref)

    def test_two_simultaneous_turns_exactly_one_succeeds(self):
        h.complete(self.chat, "race", suffix_token_ids=[5, 6], max_tokens=2, **GREEDY)
        req = chat_pb2.CompleteRequest(conversation_id="race", suffix_token_ids=[7, 8])
        req.sampling.temperature, req.sampling.ignore_eos, req.sampling.max_tokens = 0.0, True, 3500
        first = self.chat.Complete(req, timeout=120)
        events = iter(first)
        next(events)  # the first turn is streaming: it holds the lease for ~3500 tokens
        second = code_of(lambda: h.complete(self.chat, "race", suffix_token_ids=[9], max_tokens=2))
        self.assertEqual(second, grpc.StatusCode.ABORTED)
        first.cancel()
        self.assertEqual(self.get("race").committed_round, 1)

    def test_salts_are_independent_conversations(self):
        h.complete(self.chat, "same-id", salt="tenant-a", suffix_token_ids=[5, 6, 7], max_tokens=3, **GREEDY)
        started, _, _, done = h.complete(self.chat, "same-id", salt="tenant-b",
                                         suffix_token_ids=[8, 9], max_tokens=3, **GREEDY)
        self.assertEqual(done.committed_round, 1)
        self.assertEqual(started.cached_tokens, 0)
        self.assertEqual(self.get("same-id", "tenant-a").num_tokens, 6)
        self.assertEqual(self.get("same-id", "tenant-b").num_tokens, 5)
        self.assertEqual(code_of(lambda: self.get("same-id", "tenant-c")), grpc.StatusCode.NOT_FOUND)

    def test_bad_input_gets_the_right_status_and_changes_nothing(self):
        h.complete(self.chat, "bad", messages=[("user", "hi")], max_tokens=2, **GREEDY)
        before = self.get("bad")
        S = grpc.StatusCode

        def turn(conv="bad", **kw):
            return lambda: h.complete(self.chat, conv, **kw)

        def raw(req):
            return lambda: list(self.chat.Complete(req, timeout=30))

        bad_utf8 = chat_pb2.CompleteRequest(conversation_id="bad")
        bad_utf8.messages.add(role="user", content="ok")
        bad_utf8_bytes = bad_utf8.SerializeToString().replace(b"ok", b"\xff\xfe")
        cases = {
            "empty id": (turn(conv="", messages=[("user", "x")]), S.INVALID_ARGUMENT),
            "10 KB id": (turn(conv="x" * 10240, messages=[("user", "x")]), S.INVALID_ARGUMENT),
            "unknown role": (turn(messages=[("wizard", "x")]), S.INVALID_ARGUMENT),
            "no messages": (turn(), S.INVALID_ARGUMENT),
            "temperature < 0": (turn(messages=[("user", "x")], temperature=-1.0), S.INVALID_ARGUMENT),
            "top_p > 1": (turn(messages=[("user", "x")], top_p=1.5), S.INVALID_ARGUMENT),
            "max_tokens 0": (turn(messages=[("user", "x")], max_tokens=0), S.INVALID_ARGUMENT),
            "context overflow": (turn(suffix_token_ids=[5] * 5000), S.RESOURCE_EXHAUSTED),
            "expected_round mismatch": (turn(messages=[("user", "x")], expected_round=7), S.FAILED_PRECONDITION),
            "messages and tokens": (turn(messages=[("user", "x")], suffix_token_ids=[5]), S.INVALID_ARGUMENT),
            "token outside vocab": (turn(suffix_token_ids=[10 ** 6]), S.INVALID_ARGUMENT),
        }
        for name, (fn, want) in cases.items():
            self.assertEqual(code_of(fn), want, name)
        # Invalid UTF-8 can only be sent as raw bytes (protobuf refuses to
        # encode it); the router parses requests itself and says what is wrong.
        channel = grpc.insecure_channel(self.stack.router.address)
        call = channel.unary_stream("/hybridcache.v1.ChatService/Complete",
                                    request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        self.assertEqual(code_of(lambda: list(call(bad_utf8_bytes, timeout=30))), S.INVALID_ARGUMENT)
        self.assertEqual(code_of(lambda: list(call(bad_utf8_bytes[:-2], timeout=30))), S.INVALID_ARGUMENT)
        for fn in (lambda: self.get("nobody"),
                   lambda: self.chat.DeleteConversation(chat_pb2.DeleteConversationRequest(conversation_id="nobody"))):
            self.assertEqual(code_of(fn), S.NOT_FOUND)
        after = self.get("bad")
        self.assertEqual((after.committed_round, after.num_tokens), (before.committed_round, before.num_tokens))
        health = h.health_pb2_grpc.HealthStub(grpc.insecure_channel(self.stack.router.address))
        self.assertEqual(health.Check(h.health_pb2.HealthCheckRequest()).status,
                         h.health_pb2.HealthCheckResponse.SERVING)
        _, _, _, done = h.complete(self.chat, "bad", messages=[("user", "still there?")], max_tokens=2)
        self.assertEqual(done.committed_round, before.committed_round + 1)

    def test_delete_forgets_the_conversation(self):
        h.complete(self.chat, "del", suffix_token_ids=[5, 6], max_tokens=2, **GREEDY)
        self.chat.DeleteConversation(chat_pb2.DeleteConversationRequest(conversation_id="del"))
        self.assertEqual(code_of(lambda: self.get("del")), grpc.StatusCode.NOT_FOUND)
        _, _, _, done = h.complete(self.chat, "del", suffix_token_ids=[5, 6], max_tokens=2, **GREEDY)
        self.assertEqual(done.committed_round, 1)


class MetricsTest(unittest.TestCase):
    """A fresh stack so the counters start at zero."""

    def test_metrics_pass_promtool_and_hit_rate_matches_clients(self):
        with h.Stack(num_workers=2) as stack:
            chat = stack.chat()
            prompt = cached = 0
            for conv in ("m1", "m2", "m3"):
                for turn in range(3):
                    started, _, _, done = h.complete(chat, conv, messages=[("user", f"turn {turn}")],
                                                     max_tokens=4, **GREEDY)
                    prompt += done.usage.prompt_tokens
                    cached += done.usage.cached_tokens
            self.assertGreater(cached, 0)
            texts = [stack.router.metrics()] + [w.metrics() for w in stack.workers]
            for text in texts:
                with tempfile.NamedTemporaryFile("w", suffix=".prom") as f:
                    f.write(text)
                    f.flush()
                    r = subprocess.run(f"promtool check metrics < {f.name}", shell=True,
                                       capture_output=True, text=True)
                    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            worker_texts = texts[1:]
            queries = sum(h.metric_value(t, "hc_worker_prefix_cache_queries_total") or 0 for t in worker_texts)
            hits = sum(h.metric_value(t, "hc_worker_prefix_cache_hits_total") or 0 for t in worker_texts)
            self.assertEqual(queries, prompt)
            self.assertEqual(hits, cached)
            self.assertEqual(h.metric_value(texts[0], "hc_router_requests_total", {"code": "OK"}), 9)


if __name__ == "__main__":
    unittest.main()
