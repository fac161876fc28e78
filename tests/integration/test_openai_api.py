"""The OpenAI-compatible HTTP API of hc-router (router/http, docs/http-api.md) against a real
router and worker: the official `openai` Python SDK, curl and raw sockets.

Runs under the python3 on PATH, where scripts/install-deps.sh pip-installs `openai`; the
harness's gRPC modules come from Debian's dist-packages (the same CPython ABI), so the tests
can compare with the gRPC API and read the ledger.
"""
import http.client
import json
import os
import socket
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.append("/usr/lib/python3/dist-packages")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402
import openai  # noqa: E402

MODEL = "synthetic:tiny"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on loopback (no persistence), like the C++ ledger tests' fixture
    (tests/unit/router/ledger/redis_server_fixture.h); use as a context manager."""

    def __init__(self):
        binary = os.environ.get("HC_REDIS_SERVER", "/usr/bin/redis-server")
        if not shutil.which(binary):
            raise RuntimeError(f"{binary} not found (scripts/install-deps.sh installs it)")
        self.dir = tempfile.mkdtemp(prefix="hc-redis-")
        for _ in range(5):  # another process may take the free port before redis binds it
            self.port = free_port()
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ready():
                self.url = f"redis://127.0.0.1:{self.port}"
                return
            self.close()
        raise RuntimeError("redis-server did not start")

    def _wait_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.05)  # polls an external process's start, not a test's ordering
        return False

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class OpenAiApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.stack = h.Stack(num_workers=1, model=MODEL,
                            router_args=[f"--http_port={cls.port}"])
        cls.base = f"http://127.0.0.1:{cls.port}"
        h.wait_until(lambda: cls.status("GET", "/health")[0] == 200, what="/health 200")
        cls.client = openai.OpenAI(base_url=cls.base + "/v1", api_key="unused", max_retries=0)
        cls.grpc = cls.stack.chat()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    @classmethod
    def request(cls, method, path, body=b"", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", cls.port, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, dict(r.getheaders()), data

    @classmethod
    def status(cls, method, path):
        try:
            return cls.request(method, path)
        except OSError:
            return (0, {}, b"")

    def chat(self, messages, conversation=None, **kw):
        extra = {"X-Conversation-Id": conversation} if conversation else None
        return self.client.chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=kw.pop("max_tokens", 12),
            extra_headers=extra, **kw)

    def ledger(self, conversation_id, salt=""):
        return self.grpc.GetConversation(
            h.chat_pb2.GetConversationRequest(conversation_id=conversation_id, cache_salt=salt),
            timeout=30)

    def test_models_and_health(self):
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], [MODEL])

    def test_streamed_and_non_streamed_replies_are_equal(self):
        msgs = [{"role": "user", "content": "Tell me about caches."}]
        whole = self.chat(msgs)
        stream = self.chat(msgs, stream=True, stream_options={"include_usage": True})
        parts, usage, finish = [], None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                parts.append(c.delta.content or "")
                finish = c.finish_reason or finish
        self.assertEqual("".join(parts), whole.choices[0].message.content)
        self.assertEqual(finish, whole.choices[0].finish_reason)
        self.assertEqual(usage.prompt_tokens, whole.usage.prompt_tokens)
        self.assertEqual(usage.completion_tokens, whole.usage.completion_tokens)
        self.assertEqual(whole.usage.total_tokens,
                         whole.usage.prompt_tokens + whole.usage.completion_tokens)

    def test_top_logprobs_list_the_most_likely_tokens_streamed_and_not(self):
        msgs = [{"role": "user", "content": "Which tokens are likely?"}]
        whole = self.chat(msgs, max_tokens=6, logprobs=True, top_logprobs=3)
        stream = self.chat(msgs, max_tokens=6, logprobs=True, top_logprobs=3, stream=True)
        streamed = [e for chunk in stream for c in chunk.choices if c.logprobs
                    for e in c.logprobs.content]
        for entries in (whole.choices[0].logprobs.content, streamed):
            self.assertEqual(len(entries), 6)
            for e in entries:
                self.assertEqual(len(e.top_logprobs), 3)
                # Greedy: the sampled token is the most likely one.
                self.assertEqual(e.top_logprobs[0].token, e.token)
                self.assertAlmostEqual(e.top_logprobs[0].logprob, e.logprob, places=5)
                lps = [t.logprob for t in e.top_logprobs]
                self.assertEqual(lps, sorted(lps, reverse=True))
                self.assertLessEqual(lps[0], 0.0)
        self.assertEqual([e.model_dump() for e in streamed],
                         [e.model_dump() for e in whole.choices[0].logprobs.content])
        plain = self.chat(msgs, max_tokens=2, logprobs=True)
        self.assertEqual(plain.choices[0].logprobs.content[0].top_logprobs, [])

    def test_six_turn_conversation_hits_the_cache_and_equals_grpc(self):
        conv = "sdk-six-turns"
        history, prev_context = [], 0
        grpc_conv = "grpc-six-turns"
        for turn in range(6):
            user = f"Question number {turn}: what comes next?"
            history.append({"role": "user", "content": user})
            r = self.chat(history, conversation=conv)
            reply = r.choices[0].message.content
            cached = r.usage.prompt_tokens_details.cached_tokens
            if turn > 0:
                # Everything before this turn's new message came from the cache (the last
                # sampled token of a reply is computed with the next turn).
                self.assertGreaterEqual(cached, prev_context - 1, f"turn {turn}")
            else:
                self.assertEqual(cached, 0)
            prev_context = r.usage.prompt_tokens + r.usage.completion_tokens
            _, _, grpc_text, _ = h.complete(self.grpc, grpc_conv, [("user", user)],
                                            temperature=0.0, max_tokens=12)
            self.assertEqual(reply, grpc_text, f"turn {turn}")
            history.append({"role": "assistant", "content": reply})
        rec = self.ledger(conv)
        self.assertEqual(rec.committed_round, 6)
        self.assertEqual([(m.role, m.content) for m in rec.messages],
                         [(m["role"], m["content"]) for m in history])

    def test_regenerate_and_edit_fork_and_leave_the_original(self):
        conv = "sdk-edit"
        history = []
        for turn in range(3):
            history.append({"role": "user", "content": f"Edit test message {turn}."})
            r = self.chat(history, conversation=conv)
            history.append({"role": "assistant", "content": r.choices[0].message.content})
        before = self.ledger(conv)
        # Regenerate the last reply (greedy): the same tokens again, on a fork.
        regen = self.chat(history[:-1], conversation=conv)
        self.assertEqual(regen.choices[0].message.content, history[-1]["content"])
        self.assertGreater(regen.usage.prompt_tokens, 0)
        # Edit the second user message, then edit it back: the reply equals the original.
        edited = history[:2] + [{"role": "user", "content": "An edited question."}]
        e1 = self.chat(edited, conversation=conv)
        # The reference: a fresh conversation replaying the same greedy turns.
        ref_conv = "sdk-edit-reference"
        self.chat(history[:1], conversation=ref_conv)
        ref = self.chat(edited, conversation=ref_conv)
        self.assertEqual(e1.choices[0].message.content, ref.choices[0].message.content)
        back = self.chat(history[:3], conversation=conv)
        self.assertEqual(back.choices[0].message.content, history[3]["content"])
        # The edited branch continues as a cache hit.
        cont = self.chat(history[:4] + [{"role": "user", "content": "And then?"}],
                         conversation=conv)
        self.assertGreater(cont.usage.prompt_tokens_details.cached_tokens, 0)
        # The original conversation was only read.
        after = self.ledger(conv)
        self.assertEqual(after.committed_round, before.committed_round)
        self.assertEqual(list(after.messages), list(before.messages))

    def test_one_shot_equals_grpc_and_is_not_kept(self):
        msgs = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "One shot."}]
        r = self.chat(msgs)
        _, _, grpc_text, _ = h.complete(self.grpc, "grpc-one-shot",
                                        [(m["role"], m["content"]) for m in msgs],
                                        temperature=0.0, max_tokens=12)
        self.assertEqual(r.choices[0].message.content, grpc_text)

    def test_responses_chain_fork_and_retrieve(self):
        r1 = self.client.responses.create(model=MODEL, input="First input.", temperature=0,
                                          max_output_tokens=10)
        r2 = self.client.responses.create(model=MODEL, input="Second input.", temperature=0,
                                          max_output_tokens=10, previous_response_id=r1.id)
        self.assertGreater(r2.usage.input_tokens_details.cached_tokens, 0)
        self.assertGreaterEqual(r2.usage.input_tokens_details.cached_tokens,
                                r1.usage.input_tokens + r1.usage.output_tokens - 1)
        r3 = self.client.responses.create(model=MODEL, input="Third input.", temperature=0,
                                          max_output_tokens=10, previous_response_id=r2.id)
        self.assertGreater(r3.usage.input_tokens_details.cached_tokens,
                           r2.usage.input_tokens_details.cached_tokens)
        # previous_response_id of an older round forks: the same input gives the same reply.
        fork = self.client.responses.create(model=MODEL, input="Second input.", temperature=0,
                                            max_output_tokens=10, previous_response_id=r1.id)
        self.assertEqual(fork.output_text, r2.output_text)
        self.assertNotEqual(fork.id, r2.id)
        got = self.client.responses.retrieve(r2.id)
        self.assertEqual(got.output_text, r2.output_text)
        # GET returns the usage the response was made with.
        self.assertIsNotNone(got.usage)
        self.assertEqual(got.usage.model_dump(), r2.usage.model_dump())
        # Streaming: created, deltas, completed; the text equals the non-streamed one.
        events = list(self.client.responses.create(
            model=MODEL, input="Second input.", temperature=0, max_output_tokens=10,
            previous_response_id=r1.id, stream=True))
        # The streamed response's usage is the one committed with its round too.
        self.assertEqual(self.client.responses.retrieve(events[-1].response.id).usage.model_dump(),
                         events[-1].response.usage.model_dump())
        types = [e.type for e in events]
        self.assertEqual(types[0], "response.created")
        self.assertIn(types[-1], ("response.completed", "response.incomplete"))
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        self.assertEqual(deltas, r2.output_text)
        self.assertEqual(events[-1].response.output_text, r2.output_text)

    def test_a_response_that_was_not_committed_is_not_retrievable(self):
        # store=false: the round is committed and deleted after the reply.
        gone = self.client.responses.create(model=MODEL, input="Forget me.", temperature=0,
                                            max_output_tokens=4, store=False)
        self.assertIsNotNone(gone.usage)
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve(gone.id)
        # A streamed turn cancelled after response.created named its id: never committed, so
        # there is neither a text nor a usage to return.
        body = json.dumps({"model": MODEL, "input": "Talk for a long time.", "stream": True,
                           "max_output_tokens": 3000, "ignore_eos": True,
                           "temperature": 0}).encode()
        worker = self.stack.workers[0]
        cancelled = lambda: h.metric_value(  # noqa: E731
            self.stack.router.metrics(), "hc_router_requests_total", {"code": "CANCELLED"}) or 0
        n_cancelled = cancelled()
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        s.settimeout(60)
        received = b""
        while b"event: response.in_progress" not in received:
            part = s.recv(4096)
            self.assertTrue(part, f"connection closed before response.created: {received!r}")
            received += part
        created = received.split(b"event: response.created\ndata: ", 1)[1].split(b"\n", 1)[0]
        response_id = json.loads(created)["response"]["id"]
        worker.signal(19)  # SIGSTOP: the turn is surely unfinished when the client goes
        try:
            s.close()
            h.wait_until(lambda: cancelled() > n_cancelled, what="the turn cancelled")
        finally:
            worker.signal(18)  # SIGCONT
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve(response_id)

    def test_curl_sse_framing(self):
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "curl"}],
                           "max_tokens": 6, "temperature": 0, "stream": True})
        out = subprocess.run(["curl", "-sN", "-H", "Content-Type: application/json", "-d", body,
                              self.base + "/v1/chat/completions"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        events = out.split("\n\n")
        self.assertEqual(events[-1], "")
        self.assertEqual(events[-2], "data: [DONE]")
        for e in events[:-2]:
            self.assertTrue(e.startswith("data: "), e)
            self.assertNotIn("\n", e)
            chunk = json.loads(e[len("data: "):])
            self.assertEqual(chunk["object"], "chat.completion.chunk")
        self.assertEqual(json.loads(events[-3][6:])["choices"][0]["finish_reason"], "length")

    def test_client_disconnect_mid_stream_leaves_the_ledger_unchanged(self):
        conv = "sdk-disconnect"
        first = self.chat([{"role": "user", "content": "Before."}], conversation=conv)
        before = self.ledger(conv)
        history = [{"role": "user", "content": "Before."},
                   {"role": "assistant", "content": first.choices[0].message.content},
                   {"role": "user", "content": "Now talk for a long time."}]
        body = json.dumps({"model": MODEL, "messages": history, "max_tokens": 3000,
                           "ignore_eos": True, "temperature": 0, "stream": True}).encode()
        worker = self.stack.workers[0]
        cancelled = lambda: h.metric_value(  # noqa: E731
            self.stack.router.metrics(), "hc_router_requests_total", {"code": "CANCELLED"}) or 0
        n_cancelled = cancelled()
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Conversation-Id: " +
                  conv.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        # The head and the first event may arrive in separate segments: read until an event.
        s.settimeout(60)
        received = b""
        while b"data: " not in received:
            part = s.recv(4096)
            self.assertTrue(part, f"connection closed before the first event: {received!r}")
            received += part
        # The worker stops, so the turn is surely unfinished when the client goes.
        worker.signal(19)  # SIGSTOP
        try:
            s.close()
            h.wait_until(lambda: cancelled() > n_cancelled, what="the turn cancelled")
        finally:
            worker.signal(18)  # SIGCONT
        after = self.ledger(conv)
        self.assertEqual(after.committed_round, before.committed_round)
        self.assertEqual(list(after.messages), list(before.messages))
        # The lease is free again: the next turn runs.
        history[-1]["content"] = "Short now."
        self.chat(history, conversation=conv)
        self.assertEqual(self.ledger(conv).committed_round, 2)

    def test_bad_input_gets_the_right_status_and_an_openai_error_and_changes_nothing(self):
        ok_msgs = [{"role": "user", "content": "hi"}]

        def chat_body(**fields):
            body = {"model": MODEL, "messages": ok_msgs}
            body.update(fields)
            return json.dumps(body).encode()

        def without(key):
            body = {"model": MODEL, "messages": ok_msgs}
            del body[key]
            return json.dumps(body).encode()

        salted = self.client.responses.create(
            model=MODEL, input="salted", max_output_tokens=2,
            extra_headers={"X-Cache-Salt": "salt-a"})
        C = "/v1/chat/completions"
        R = "/v1/responses"
        cases = [
            # (name, method, path, body, extra headers, status)
            ("truncated json", "POST", C, b'{"model": ', {}, 400),
            ("empty body", "POST", C, b"", {}, 400),
            ("array body", "POST", C, b"[]", {}, 400),
            ("null body", "POST", C, b"null", {}, 400),
            ("string body", "POST", C, b'"hello"', {}, 400),
            ("trailing garbage", "POST", C, chat_body() + b"}", {}, 400),
            ("invalid utf-8", "POST", C,
             b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", '
             b'"content": "\xff\xfe"}]}', {}, 400),
            ("missing model", "POST", C, without("model"), {}, 400),
            ("model not a string", "POST", C, chat_body(model=5), {}, 400),
            ("unknown model", "POST", C, chat_body(model="gpt-17"), {}, 404),
            ("missing messages", "POST", C, without("messages"), {}, 400),
            ("messages a string", "POST", C, chat_body(messages="hi"), {}, 400),
            ("empty messages", "POST", C, chat_body(messages=[]), {}, 400),
            ("message a number", "POST", C, chat_body(messages=[5]), {}, 400),
            ("message without role", "POST", C, chat_body(messages=[{"content": "x"}]), {}, 400),
            ("unknown role", "POST", C,
             chat_body(messages=[{"role": "wizard", "content": "x"}]), {}, 400),
            ("role a number", "POST", C, chat_body(messages=[{"role": 7, "content": "x"}]), {}, 400),
            ("content missing", "POST", C, chat_body(messages=[{"role": "user"}]), {}, 400),
            ("content a number", "POST", C,
             chat_body(messages=[{"role": "user", "content": 5}]), {}, 400),
            ("image part", "POST", C,
             chat_body(messages=[{"role": "user", "content": [
                 {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]), {}, 400),
            ("text part without text", "POST", C,
             chat_body(messages=[{"role": "user", "content": [{"type": "text"}]}]), {}, 400),
            ("negative max_tokens", "POST", C, chat_body(max_tokens=-1), {}, 400),
            ("zero max_tokens", "POST", C, chat_body(max_tokens=0), {}, 400),
            ("huge max_tokens", "POST", C, chat_body(max_tokens=10**12), {}, 400),
            ("max_tokens past the context", "POST", C, chat_body(max_tokens=100000), {}, 400),
            ("max_tokens a string", "POST", C, chat_body(max_tokens="5"), {}, 400),
            ("max_tokens a fraction", "POST", C, chat_body(max_tokens=1.5), {}, 400),
            ("negative max_completion_tokens", "POST", C,
             chat_body(max_completion_tokens=-5), {}, 400),
            ("negative temperature", "POST", C, chat_body(temperature=-0.5), {}, 400),
            ("temperature above 2", "POST", C, chat_body(temperature=3), {}, 400),
            ("temperature a string", "POST", C, chat_body(temperature="hot"), {}, 400),
            ("top_p zero", "POST", C, chat_body(top_p=0), {}, 400),
            ("top_p above 1", "POST", C, chat_body(top_p=1.5), {}, 400),
            ("stream a string", "POST", C, chat_body(stream="yes"), {}, 400),
            ("stop a number", "POST", C, chat_body(stop=5), {}, 400),
            ("stop list of numbers", "POST", C, chat_body(stop=[1]), {}, 400),
            ("too many stops", "POST", C, chat_body(stop=[f"s{i}" for i in range(17)]), {}, 400),
            ("empty stop", "POST", C, chat_body(stop=[""]), {}, 400),
            ("n of 2", "POST", C, chat_body(n=2), {}, 400),
            ("logprobs a string", "POST", C, chat_body(logprobs="true"), {}, 400),
            ("top_logprobs without logprobs", "POST", C, chat_body(top_logprobs=5), {}, 400),
            ("top_logprobs 50", "POST", C, chat_body(logprobs=True, top_logprobs=50), {}, 400),
            ("stream_options a number", "POST", C, chat_body(stream_options=5), {}, 400),
            ("seed a string", "POST", C, chat_body(seed="x"), {}, 400),
            ("user a number", "POST", C, chat_body(user=5), {}, 400),
            ("conversation id with spaces", "POST", C, chat_body(),
             {"X-Conversation-Id": "bad id!"}, 400),
            ("conversation id too long", "POST", C, chat_body(),
             {"X-Conversation-Id": "c" * 200}, 400),
            ("salt too long", "POST", C, chat_body(cache_salt="s" * 2000), {}, 400),
            ("context too long", "POST", C,
             chat_body(messages=[{"role": "user", "content": "word " * 40000}]), {}, 400),
            ("10 MB body", "POST", C, b"{" + b" " * (10 << 20) + b"}", {}, 413),
            ("GET chat completions", "GET", C, b"", {}, 405),
            ("POST models", "POST", "/v1/models", b"{}", {}, 405),
            ("unknown path", "GET", "/v1/nothing", b"", {}, 404),
            ("responses without input", "POST", R, json.dumps({"model": MODEL}).encode(), {}, 400),
            ("responses input a number", "POST", R,
             json.dumps({"model": MODEL, "input": 5}).encode(), {}, 400),
            ("responses zero max_output_tokens", "POST", R,
             json.dumps({"model": MODEL, "input": "x", "max_output_tokens": 0}).encode(), {}, 400),
            ("unknown previous_response_id", "POST", R,
             json.dumps({"model": MODEL, "input": "x",
                         "previous_response_id": "resp_bm90LWEtcmVhbC1pZC1hdC1hbGwtaGVyZQ"}).encode(),
             {}, 404),
            ("previous_response_id of another salt", "POST", R,
             json.dumps({"model": MODEL, "input": "x",
                         "previous_response_id": salted.id}).encode(),
             {"X-Cache-Salt": "salt-b"}, 404),
            ("retrieve an unknown response", "GET", R + "/resp_bogus", b"", {}, 404),
            ("retrieve under another salt", "GET", R + "/" + salted.id, b"", {}, 404),
            ("PATCH", "PATCH", C, chat_body(), {}, 405),
            ("TRACE", "TRACE", "/v1/models", b"", {}, 405),
            ("100 KB header", "POST", C, chat_body(), {"X-Padding": "x" * 100000}, 431),
            ("100 KB header on GET", "GET", "/v1/models", b"", {"X-Padding": "x" * 100000}, 431),
            ("many headers", "POST", C, chat_body(),
             {f"X-Pad-{k}": "y" * 1000 for k in range(80)}, 431),
        ]
        self.assertGreaterEqual(len(cases), 40)
        for i, (name, method, path, body, headers, want) in enumerate(cases):
            with self.subTest(name):
                hdrs = {"Content-Type": "application/json"}
                hdrs.setdefault("X-Conversation-Id", f"bad-case-{i}")
                hdrs.update(headers)
                status, _, data = self.request(method, path, body, hdrs)
                self.assertEqual(status, want, data[:300])
                err = json.loads(data)["error"]
                self.assertIsInstance(err["message"], str)
                self.assertTrue(err["message"])
                self.assertIsInstance(err["type"], str)
                self.assertIn("param", err)
                self.assertIn("code", err)
        # Nothing was created, and the server still serves.
        for i in range(len(cases)):
            with self.assertRaises(h.grpc.RpcError) as e:
                self.ledger(f"bad-case-{i}")
            self.assertEqual(e.exception.code(), h.grpc.StatusCode.NOT_FOUND)
        self.assertEqual(self.request("GET", "/health")[0], 200)
        self.chat(ok_msgs)


class OpenAiApiRestartTest(unittest.TestCase):
    """Response ids name (conversation, round) under an HMAC; the ledger is durable: both survive
    a router restart (same --http_response_id_secret_file, file ledger)."""

    def test_response_ids_resolve_after_a_router_restart(self):
        import tempfile
        tmp = tempfile.mkdtemp(prefix="hc-http-restart-")
        with open(os.path.join(tmp, "secret"), "w") as f:
            f.write("a-shared-response-id-secret\n")
        port = free_port()
        with h.Stack(num_workers=1, model=MODEL,
                     router_args=[f"--http_port={port}", f"--ledger_dir={tmp}/ledger",
                                  "--ledger_fsync=always",
                                  f"--http_response_id_secret_file={tmp}/secret"]) as stack:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                                   max_retries=2)

            def create(text, prev=None):
                return client.responses.create(model=MODEL, input=text, temperature=0,
                                               max_output_tokens=8, previous_response_id=prev)

            h.wait_until(lambda: stack.router.alive(), what="router")
            r1 = create("Before the restart.")
            r2 = create("Still before.", r1.id)
            stack.router.kill()  # SIGKILL: only what the ledger made durable survives
            stack.start_router()
            h.wait_until(lambda: client.with_options(max_retries=0).models.list() is not None,
                         what="the restarted router")
            got = client.responses.retrieve(r2.id)
            self.assertEqual(got.output_text, r2.output_text)
            # The usage was committed with each round: the restarted router has it too.
            self.assertIsNotNone(got.usage)
            self.assertEqual(got.usage.model_dump(), r2.usage.model_dump())
            self.assertEqual(client.responses.retrieve(r1.id).usage.model_dump(),
                             r1.usage.model_dump())
            # An older round still forks (the same greedy reply as the original second round)...
            fork = create("Still before.", r1.id)
            self.assertEqual(fork.output_text, r2.output_text)
            self.assertNotEqual(fork.id, r2.id)
            # ...and the latest round still continues its conversation, from the cache.
            r3 = create("After the restart.", r2.id)
            self.assertGreater(r3.usage.input_tokens_details.cached_tokens, 0)
            self.assertEqual(client.responses.retrieve(r3.id).output_text, r3.output_text)


class OpenAiApiReplicasTest(unittest.TestCase):
    """Router replicas share one Redis ledger (as Kubernetes scales them) and the response id
    secret: a response made on one is retrieved on the other with its text and usage."""

    def test_another_replica_returns_the_response_with_its_usage(self):
        tmp = tempfile.mkdtemp(prefix="hc-http-replicas-")
        with open(os.path.join(tmp, "secret"), "w") as f:
            f.write("a-shared-response-id-secret\n")
        with RedisServer() as redis, h.Stack(
                num_workers=1, model=MODEL, start_router=False,
                router_args=[f"--ledger={redis.url}",
                             f"--http_response_id_secret_file={tmp}/secret"]) as stack:
            ports = [free_port(), free_port()]
            a = stack.start_router([f"--http_port={ports[0]}"])
            try:
                stack.start_router([f"--http_port={ports[1]}"])
                one, other = (openai.OpenAI(base_url=f"http://127.0.0.1:{p}/v1", api_key="unused",
                                            max_retries=2) for p in ports)
                r1 = one.responses.create(model=MODEL, input="On replica one.", temperature=0,
                                          max_output_tokens=8)
                r2 = one.responses.create(model=MODEL, input="Again on one.", temperature=0,
                                          max_output_tokens=8, previous_response_id=r1.id)
                self.assertGreater(r2.usage.input_tokens_details.cached_tokens, 0)
                for made in (r1, r2):
                    got = other.responses.retrieve(made.id)
                    self.assertEqual(got.output_text, made.output_text)
                    self.assertIsNotNone(got.usage)
                    self.assertEqual(got.usage.model_dump(), made.usage.model_dump())
                # And the other way round: a turn on replica two, retrieved on replica one.
                r3 = other.responses.create(model=MODEL, input="Now on two.", temperature=0,
                                            max_output_tokens=8, previous_response_id=r2.id)
                self.assertEqual(one.responses.retrieve(r3.id).usage.model_dump(),
                                 r3.usage.model_dump())
            finally:
                a.kill()


class OpenAiApiTlsTest(unittest.TestCase):
    """With --tls_cert/--tls_key the HTTP port serves HTTPS only."""

    def test_https_serves_the_sdk_and_refuses_plaintext(self):
        import tempfile
        pki = tempfile.mkdtemp(prefix="hc-http-pki-")
        subprocess.run(["sh", os.path.join(h.REPO, "tests", "certs", "make_test_certs.sh"), pki],
                       check=True, capture_output=True)
        port = free_port()
        with h.Stack(num_workers=1, model=MODEL,
                     router_args=[f"--http_port={port}",
                                  f"--tls_cert={pki}/server.crt",
                                  f"--tls_key={pki}/server.key"]) as stack:
            client = openai.OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key="unused",
                                   max_retries=0,
                                   http_client=openai.DefaultHttpxClient(verify=f"{pki}/ca.crt"))
            h.wait_until(lambda: stack.router.alive(), what="router")
            r = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "over TLS"}], max_tokens=4,
                temperature=0)
            self.assertEqual(r.usage.completion_tokens, 4)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with self.assertRaises((http.client.HTTPException, OSError)):
                conn.request("GET", "/health")
                conn.getresponse()
