"""Wire fuzz: random and mutated requests against a real hc-router and hc-worker.

Sends HC_FUZZ_REQUESTS (default 10,400) requests as raw bytes through gRPC's
generic client (no stubs, so anything can be sent): typed mutations of valid
requests (bad ids and salts, empty or unknown roles, many messages, both or
neither of messages / suffix_token_ids, out-of-range sampling, token ids >=
vocab, huge repeated fields) and byte mutations of them (truncation, flipped
and inserted bytes, invalid UTF-8, unknown and invalid fields, random bytes).
Checks that
  - neither process crashes and every answer is a status documented in
    chat.proto (router) or worker.proto (worker), with a message when not OK;
  - the rejected requests changed nothing: seeded conversations read the same
    through GetConversation, the file ledger's log still starts with its
    bytes from before and grew by exactly one record per accepted turn or
    delete, conversations only rejected requests named do not exist, and the
    worker's seeded states still serve their next turn from the cache with
    the same tokens as a recompute.

Every request is generated from its own Random(f"{seed}:{index}"), so a
failure names the seed and index that reproduce it whatever the concurrency
(HC_FUZZ_SEED overrides the seed; the seed is printed).
"""
import concurrent.futures
import os
import random
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

grpc = h.grpc
chat_pb2, worker_pb2 = h.chat_pb2, h.worker_pb2
SC = grpc.StatusCode

SEED = int(os.environ.get("HC_FUZZ_SEED", "20261130"))
REQUESTS = int(os.environ.get("HC_FUZZ_REQUESTS", "10400"))
THREADS = 16
MAX_MODEL_LEN = 128

# The status lists at the top of proto/hybridcache/v1/chat.proto and worker.proto.
ROUTER_CODES = {SC.OK, SC.INVALID_ARGUMENT, SC.FAILED_PRECONDITION, SC.ABORTED, SC.NOT_FOUND,
                SC.RESOURCE_EXHAUSTED, SC.UNAVAILABLE}
WORKER_CODES = {SC.OK, SC.INVALID_ARGUMENT, SC.RESOURCE_EXHAUSTED, SC.ABORTED, SC.UNAVAILABLE}

ROUTER_POOL = [f"fz-{i}" for i in range(48)]   # conversations fuzzed through the router
WORKER_POOL = [f"wz-{i}" for i in range(48)]   # conversations fuzzed on the worker directly
ID_CHARS = "abcXYZ019._:-"
BAD_IDS = ["", "a" * 129, "a b", "a/b", "caf\u00e9", "\u0000", "a\nb", "\U0001F600", "*", "x" * 4096]
UTF8_SLOT = b"@@UTF8@@"  # placeholder replaced by invalid UTF-8 of the same length
VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
BAD_UTF8 = [b"\xc3\x28", b"\xff", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xc0\xaf", b"\x80"]


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire_type):
    return varint((field << 3) | wire_type)


def length_delimited(field, payload):
    return tag(field, 2) + varint(len(payload)) + payload


def packed_ids(field, rng, n, vocab):
    """About n token ids (below vocab) as one packed repeated field."""
    chunk = b"".join(varint(rng.randrange(vocab)) for _ in range(16))
    return length_delimited(field, chunk * (n // 16 + 1))


def invalid_utf8(rng):
    bad = rng.choice(BAD_UTF8)
    return (bad + b"a" * len(UTF8_SLOT))[: len(UTF8_SLOT)]


def random_id(rng):
    return "".join(rng.choice(ID_CHARS) for _ in range(rng.randrange(1, 12)))


def mutate_sampling(rng, s, vocab):
    choice = rng.randrange(16)
    if choice == 0:
        s.temperature = rng.choice([float("nan"), float("inf"), float("-inf"), -1.0, -0.0, 0.0, 1e30, 2.0])
    elif choice == 1:
        s.top_p = rng.choice([0.0, -0.5, 1.0000001, 1.0, 0.5, float("nan"), float("inf"), 1e-30])
    elif choice == 2:
        s.top_k = rng.choice([0, 1, vocab, 2**31 - 1, 2**31, 2**32 - 1])
    elif choice == 3:
        s.max_tokens = rng.choice([0, 1, 2, 2**31, 2**32 - 1])
    elif choice == 4:
        s.ClearField("max_tokens")
    elif choice == 5:
        s.seed = rng.choice([0, 1, 2**64 - 1])
    elif choice == 6:
        s.stop.extend(["x"] * rng.choice([1, 16, 17, 500]))
    elif choice == 7:
        s.stop.append(rng.choice(["", "y" * 256, "y" * 257, "\u00e9" * 200, "\U0001F600"]))
    elif choice == 8:
        s.stop.append(UTF8_SLOT.decode())
    elif choice == 9:
        s.stop_token_ids.extend([rng.randrange(vocab)] * rng.choice([1, 64, 65, 10000]))
    elif choice == 10:
        s.stop_token_ids.append(rng.choice([vocab, vocab + 1, 2**31, 2**32 - 1]))
    elif choice == 11:
        s.ignore_eos = not s.ignore_eos
    elif choice == 12:
        s.logprobs = True
    elif choice == 13:
        s.Clear()
    elif choice == 14:
        s.temperature, s.top_p, s.top_k = 0.7, 0.9, 5
    else:
        s.ClearField("temperature")


def mutate_bytes(rng, data, huge_fields):
    """One byte-level mutation; huge_fields: (field number, packed?) candidates for growth."""
    choice = rng.randrange(11)
    if choice == 0 and data:
        return data[: rng.randrange(len(data))]
    if choice == 1 and data:
        b = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= rng.randrange(1, 256)
        return bytes(b)
    if choice == 2:
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.randbytes(rng.randrange(1, 9)) + data[at:]
    if choice == 3 and data:
        at = rng.randrange(len(data))
        return data[:at] + data[at + rng.randrange(1, 9):]
    if choice == 4:  # unknown fields of every wire type
        return data + rng.choice([tag(99, 0) + varint(rng.randrange(2**64)),
                                  length_delimited(1000, rng.randbytes(rng.randrange(40))),
                                  tag(77, 5) + rng.randbytes(4), tag(88, 1) + rng.randbytes(8),
                                  length_delimited(536870911, b"")])
    if choice == 5:  # invalid tags: field 0, wire types 6 and 7, a group that never ends
        return data + rng.choice([b"\x00", b"\x06", b"\x07", tag(5, 3), b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"])
    if choice == 6:
        return data + data
    if choice == 7:
        return rng.randbytes(rng.randrange(0, 300))
    if choice == 8 and huge_fields:
        field, vocab = rng.choice(huge_fields)
        return data + packed_ids(field, rng, rng.choice([1000, 50000, 400000]), vocab)
    if choice == 9:  # a length prefix far beyond the end
        return data + tag(3, 2) + varint(rng.randrange(2**20, 2**32))
    return b""


def build_complete(rng, vocab):
    req = chat_pb2.CompleteRequest(conversation_id=rng.choice(ROUTER_POOL), cache_salt="fuzz")
    if rng.random() < 0.5:
        req.messages.add(role="user", content="hello")
    else:
        req.suffix_token_ids.extend(rng.randrange(vocab) for _ in range(rng.randrange(1, 6)))
    req.sampling.max_tokens = rng.randrange(1, 4)
    req.sampling.temperature = 0.0
    for _ in range(rng.randrange(0, 4)):
        choice = rng.randrange(14)
        if choice == 0:
            req.conversation_id = rng.choice(BAD_IDS + [random_id(rng), "x" * 128])
        elif choice == 1:
            req.cache_salt = rng.choice(["", "s" * 1024, "s" * 1025, "\u00e9", UTF8_SLOT.decode()])
        elif choice == 2:
            req.messages.add(role=rng.choice(["", "USER", "bot", "user ", "system", "assistant", "tool"]),
                             content="x")
        elif choice == 3:
            for _ in range(rng.choice([10, 1000, 5000])):
                req.messages.add(role="user", content="m")
        elif choice == 4:
            req.messages.add(role="user", content=rng.choice(["", "x" * 100000, UTF8_SLOT.decode()]))
        elif choice == 5:
            req.ClearField("messages")
            req.ClearField("suffix_token_ids")
        elif choice == 6:  # both
            req.messages.add(role="user", content="hi")
            req.suffix_token_ids.append(1)
        elif choice == 7:
            req.suffix_token_ids.append(rng.choice([vocab, vocab + 1, 2**31, 2**32 - 1]))
        elif choice == 8:
            req.suffix_token_ids.extend([rng.randrange(vocab)] * rng.choice([MAX_MODEL_LEN - 2, MAX_MODEL_LEN, 100000]))
        elif choice == 9:
            req.expected_round = rng.choice([0, 1, 2, 2**64 - 1])
        elif choice == 10:
            req.messages.add(role=UTF8_SLOT.decode(), content="x")
        else:
            mutate_sampling(rng, req.sampling, vocab)
    data = req.SerializeToString()
    return finish_bytes(rng, data, [(6, vocab)])


def finish_bytes(rng, data, huge_fields):
    while UTF8_SLOT in data:
        data = data.replace(UTF8_SLOT, invalid_utf8(rng), 1)
    if rng.random() < 0.35:
        for _ in range(rng.randrange(1, 3)):
            data = mutate_bytes(rng, data, huge_fields)
    return data


def build_keyed(rng, cls, ids):
    req = cls(conversation_id=rng.choice(ids), cache_salt=rng.choice(["fuzz", "fuzz", "seed", ""]))
    if rng.random() < 0.3:
        req.conversation_id = rng.choice(BAD_IDS + [random_id(rng)])
    if rng.random() < 0.1:
        req.cache_salt = rng.choice(["s" * 1025, UTF8_SLOT.decode()])
    return finish_bytes(rng, req.SerializeToString(), [])


def build_execute(rng, vocab):
    key = worker_pb2.ConversationKey(conversation_id=rng.choice(WORKER_POOL), cache_salt="wfuzz")
    req = worker_pb2.ExecuteRequest(key=key, request_id=f"fuzz-{rng.randrange(2**40)}", new_round=1)
    req.suffix_token_ids.extend(rng.randrange(vocab) for _ in range(rng.randrange(1, 8)))
    req.sampling.max_tokens = rng.randrange(1, 4)
    req.sampling.temperature = 0.0
    if rng.random() < 0.3:
        req.has_history = True
        req.history_token_ids.extend(rng.randrange(vocab) for _ in range(rng.randrange(0, 16)))
        req.new_round = rng.randrange(1, 5)
    if rng.random() < 0.3:
        req.expected.round = rng.randrange(0, 4)
        req.expected.num_tokens = rng.randrange(0, 32)
        req.expected.prefix_hash = rng.randrange(2**64)
        req.new_round = req.expected.round + 1
    for _ in range(rng.randrange(0, 4)):
        choice = rng.randrange(13)
        if choice == 0:
            req.key.conversation_id = rng.choice(BAD_IDS + [random_id(rng)])
        elif choice == 1:
            req.key.cache_salt = rng.choice(["s" * 1025, UTF8_SLOT.decode(), ""])
        elif choice == 2:
            req.request_id = rng.choice(["", "r" * 1025, "r" * 100000, UTF8_SLOT.decode(), "same-id"])
        elif choice == 3:
            req.new_round = rng.choice([0, 1, 2**64 - 1])
        elif choice == 4:
            req.expected.round = rng.choice([0, 2**64 - 1])
            req.expected.num_tokens = rng.choice([0, MAX_MODEL_LEN - 1, MAX_MODEL_LEN, 2**32 - 1])
        elif choice == 5:
            req.ClearField("suffix_token_ids")
        elif choice == 6:
            req.suffix_token_ids.append(rng.choice([vocab, 2**31 - 1, 2**31, 2**32 - 1]))
        elif choice == 7:
            req.has_history = rng.random() < 0.5
            req.history_token_ids.extend([rng.randrange(vocab)] * rng.choice([1, MAX_MODEL_LEN, 300000]))
        elif choice == 8:
            req.history_token_ids.append(rng.choice([vocab, 2**32 - 1]))
        elif choice == 9:
            req.suffix_token_ids.extend([1] * rng.choice([MAX_MODEL_LEN - 1, MAX_MODEL_LEN, 200000]))
        else:
            mutate_sampling(rng, req.sampling, vocab)
    return finish_bytes(rng, req.SerializeToString(), [(5, vocab), (7, vocab)])


def build_release(rng):
    key = worker_pb2.ConversationKey(conversation_id=rng.choice(WORKER_POOL), cache_salt="wfuzz")
    if rng.random() < 0.3:
        key.conversation_id = rng.choice(BAD_IDS + [random_id(rng)])
    return finish_bytes(rng, worker_pb2.ReleaseRequest(key=key).SerializeToString(), [])


def build_empty_message(rng):
    """Load/Drain requests: empty messages, unknown fields, or garbage."""
    data = b""
    for _ in range(rng.randrange(0, 3)):
        data = mutate_bytes(rng, data, [])
    return data


# (target, method, streaming, weight)
PLAN = [("router", "/hybridcache.v1.ChatService/Complete", True, 45),
        ("router", "/hybridcache.v1.ChatService/GetConversation", False, 7),
        ("router", "/hybridcache.v1.ChatService/DeleteConversation", False, 5),
        ("worker", "/hybridcache.v1.WorkerService/Execute", True, 33),
        ("worker", "/hybridcache.v1.WorkerService/Load", False, 4),
        ("worker", "/hybridcache.v1.WorkerService/Release", False, 6)]


def generate(index, vocab):
    rng = random.Random(f"{SEED}:{index}")
    target, method, streaming, _ = rng.choices(PLAN, weights=[p[3] for p in PLAN])[0]
    name = method.rsplit("/", 1)[1]
    if name == "Complete":
        data = build_complete(rng, vocab)
    elif name == "GetConversation":
        data = build_keyed(rng, chat_pb2.GetConversationRequest, ROUTER_POOL + ["seed-0", "seed-1"])
    elif name == "DeleteConversation":
        data = build_keyed(rng, chat_pb2.DeleteConversationRequest, ROUTER_POOL)
    elif name == "Execute":
        data = build_execute(rng, vocab)
    elif name == "Release":
        data = build_release(rng)
    else:
        data = build_empty_message(rng)
    return target, method, streaming, data


def parse_or_none(cls, data):
    try:
        msg = cls()
        msg.ParseFromString(data)
        return msg
    except Exception:  # noqa: BLE001 (any parse failure)
        return None


class Caller:
    """Raw-bytes calls over one channel per process (generic: no serializers)."""

    def __init__(self, address):
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", 64 << 20)])
        self.unary, self.stream = {}, {}

    def call(self, method, streaming, data, timeout=60):
        try:
            if streaming:
                fn = self.stream.get(method) or self.stream.setdefault(method, self.channel.unary_stream(method))
                return SC.OK, "", list(fn(data, timeout=timeout))
            fn = self.unary.get(method) or self.unary.setdefault(method, self.channel.unary_unary(method))
            return SC.OK, "", [fn(data, timeout=timeout)]
        except grpc.RpcError as e:
            return e.code(), e.details() or "", []


def ledger_frames(data):
    """Number of [u32 length][u32 crc][payload] frames in a log segment."""
    n, at = 0, 0
    while at + 8 <= len(data):
        at += 8 + int.from_bytes(data[at:at + 4], "little")
        n += 1
    assert at == len(data), "the log does not end on a frame boundary"
    return n


class WireFuzzTest(unittest.TestCase):
    def setUp(self):
        print(f"wire fuzz: seed {SEED} (HC_FUZZ_SEED), {REQUESTS} requests", file=sys.stderr)
        self.ledger_dir = tempfile.mkdtemp(prefix="hc-fuzz-ledger-")
        self.addCleanup(shutil.rmtree, self.ledger_dir, True)
        self.stack = h.Stack(
            num_workers=1,
            worker_args=["--kv_blocks=4096", "--mamba_slots=256", f"--max_model_len={MAX_MODEL_LEN}",
                         "--block_size=16", "--max_batch_tokens=256"],
            router_args=[f"--ledger_dir={self.ledger_dir}", "--ledger_fsync=never",
                         "--probe_interval=200ms"])
        self.addCleanup(self.stack.close)
        self.worker = self.stack.workers[0]
        self.router_call = Caller(self.stack.router.address)
        self.worker_call = Caller(self.worker.address)
        self.worker_stub = self.stack.worker_stub(self.worker)
        self.chat = self.stack.chat()
        self.vocab = self.worker_stub.Load(worker_pb2.LoadRequest()).vocab_size

    def seed_router(self):
        """Two conversations of two turns each under salt "seed"; returns their Conversation bytes."""
        seeds = {}
        for conv in ("seed-0", "seed-1"):
            for text in ("first", "second"):
                h.complete(self.chat, conv, messages=[("user", text)], salt="seed", max_tokens=3,
                           temperature=0.0)
            seeds[conv] = self.get_seed(conv)
        return seeds

    def get_seed(self, conv):
        return self.chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=conv, cache_salt="seed")).SerializeToString()

    def worker_turn(self, conv, salt, suffix, new_round, expected=None, history=None):
        req = worker_pb2.ExecuteRequest(key=worker_pb2.ConversationKey(conversation_id=conv, cache_salt=salt),
                                        request_id=f"{salt}/{conv}/{new_round}", new_round=new_round,
                                        suffix_token_ids=suffix)
        if expected is not None:
            req.expected.CopyFrom(expected)
        if history is not None:
            req.has_history = True
            req.history_token_ids.extend(history)
        req.sampling.temperature, req.sampling.max_tokens, req.sampling.ignore_eos = 0.0, 4, True
        started, tokens, committed = None, [], None
        for ev in self.worker_stub.Execute(req, timeout=60):
            kind = ev.WhichOneof("event")
            if kind == "started":
                started = ev.started
            elif kind == "tokens":
                tokens.extend(ev.tokens.token_ids)
            elif kind == "committed":
                committed = ev.committed
        self.assertIsNotNone(committed, f"{conv}: no CommitReport")
        return started, tokens, committed

    def seed_worker(self):
        """One committed turn per seeded worker conversation: (ledger tokens, state)."""
        seeds = {}
        for i in range(3):
            suffix = [(7 * i + k) % self.vocab for k in range(1, 9)]
            _, tokens, committed = self.worker_turn(f"wseed-{i}", "wseed", suffix, 1)
            seeds[i] = (suffix + tokens, committed.state)
        return seeds

    def read_log(self):
        with open(os.path.join(self.ledger_dir, "ledger.log"), "rb") as f:
            return f.read()

    def run_all(self):
        """Sends every request; returns (failures, outcome counters, keys per outcome)."""
        failures, counts = [], {}
        ok_commits = ok_deletes = 0
        rejected_keys, accepted_keys = set(), set()

        def one(index):
            target, method, streaming, data = generate(index, self.vocab)
            caller = self.router_call if target == "router" else self.worker_call
            code, details, messages = caller.call(method, streaming, data)
            return index, target, method, data, code, details, messages

        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            for index, target, method, data, code, details, messages in pool.map(one, range(REQUESTS)):
                name = method.rsplit("/", 1)[1]
                counts[(name, code.name)] = counts.get((name, code.name), 0) + 1
                allowed = ROUTER_CODES if target == "router" else WORKER_CODES
                problem = None
                if code not in allowed:
                    problem = f"undocumented status {code.name}"
                elif code != SC.OK and not details:
                    problem = f"{code.name} without a message"
                elif code == SC.OK and name == "Complete":
                    last = parse_or_none(chat_pb2.CompleteEvent, messages[-1]) if messages else None
                    if last is None or last.WhichOneof("event") != "completed":
                        problem = "an OK Complete stream did not end with TurnCompleted"
                    ok_commits += 1
                elif code == SC.OK and name == "Execute":
                    last = parse_or_none(worker_pb2.ExecuteEvent, messages[-1]) if messages else None
                    if last is None or last.WhichOneof("event") not in ("committed", "state_missing"):
                        problem = "an OK Execute stream ended without CommitReport or StateMissing"
                elif code == SC.OK and name == "DeleteConversation":
                    ok_deletes += 1
                if problem:
                    failures.append(f"request {index} ({name}, HC_FUZZ_SEED={SEED}): {problem}: "
                                    f"{details!r}; bytes[:80]={data[:80].hex()}")
                if name == "Complete" and not details.startswith("malformed request"):
                    req = parse_or_none(chat_pb2.CompleteRequest, data)
                    if req is not None and VALID_ID.fullmatch(req.conversation_id) and \
                            len(req.cache_salt.encode()) <= 1024:
                        key = (req.cache_salt, req.conversation_id)
                        (accepted_keys if code == SC.OK else rejected_keys).add(key)
        return failures, counts, ok_commits, ok_deletes, rejected_keys - accepted_keys

    def test_fuzzed_requests_get_documented_statuses_and_change_nothing(self):
        router_seeds = self.seed_router()
        worker_seeds = self.seed_worker()
        log_before = self.read_log()

        failures, counts, ok_commits, ok_deletes, only_rejected = self.run_all()
        for (name, code), n in sorted(counts.items()):
            print(f"  {name:20s} {code:20s} {n}", file=sys.stderr)
        self.assertTrue(self.stack.router.alive(), "the router died:\n" + self.stack.router.log())
        self.assertTrue(self.worker.alive(), "the worker died:\n" + self.worker.log())
        self.assertEqual(failures[:20], [], f"{len(failures)} bad answers")

        # The ledger: seeds untouched, the log only appended to, one record
        # per accepted turn or delete, and no trace of conversations that only
        # rejected requests named.
        for conv, before in router_seeds.items():
            self.assertEqual(self.get_seed(conv), before, f"{conv} changed")
        log_after = self.read_log()
        self.assertEqual(log_after[:len(log_before)], log_before, "records before the fuzz changed")
        self.assertEqual(ledger_frames(log_after[len(log_before):]), ok_commits + ok_deletes)
        absent = 0
        for salt, conv in sorted(only_rejected)[:100]:
            try:
                self.chat.GetConversation(chat_pb2.GetConversationRequest(conversation_id=conv, cache_salt=salt))
                self.fail(f"({salt!r}, {conv!r}) exists though every request for it was rejected")
            except grpc.RpcError as e:
                self.assertEqual(e.code(), SC.NOT_FOUND, e.details())
                absent += 1
        print(f"  {ok_commits} turns and {ok_deletes} deletes accepted; "
              f"{absent} rejected-only conversations checked absent", file=sys.stderr)

        # The worker: no turn left behind, every fuzzed conversation usable,
        # and the seeded states continue from the cache exactly as a recompute.
        h.wait_until(lambda: (lambda load: load.num_running == 0 and load.num_waiting == 0)(
            self.worker_stub.Load(worker_pb2.LoadRequest())), what="the worker to go idle")
        for conv in WORKER_POOL[:8]:
            self.worker_turn(conv, "wfuzz", [1, 2, 3], 1)
        for i, (history, state) in worker_seeds.items():
            started, tokens, _ = self.worker_turn(f"wseed-{i}", "wseed", history[state.num_tokens:] + [5, 6],
                                                  state.round + 1, expected=state)
            self.assertEqual(started.cached_tokens, state.num_tokens, f"wseed-{i} lost its state")
            _, fresh, _ = self.worker_turn(f"ref-{i}", "wseed", history + [5, 6], 1)
            self.assertEqual(tokens, fresh, f"wseed-{i}: cached continuation differs from a recompute")

        # Drain last (an empty DrainRequest is valid and stops the worker's
        # admission): garbage answers INVALID_ARGUMENT, anything parsable drains.
        drained = False
        for i in range(200):
            data = build_empty_message(random.Random(f"{SEED}:drain:{i}"))
            code, details, _ = self.worker_call.call("/hybridcache.v1.WorkerService/Drain", False, data)
            self.assertIn(code, (SC.OK, SC.INVALID_ARGUMENT), f"Drain {i}: {details}")
            drained |= code == SC.OK
        self.assertEqual(self.worker_stub.Load(worker_pb2.LoadRequest()).draining, drained)

        # Both stop gracefully with exit code 0; under a sanitizer build
        # (HC_ROUTER_BIN, make test-asan / test-tsan) a report makes it non-zero.
        for process in (self.stack.router, self.worker):
            code = process.stop()
            with open(process.log_path) as f:
                log = f.read()
            for mark in h.SANITIZER_MARKS:
                self.assertNotIn(mark, log, f"sanitizer report in {process.name}'s log:\n{log[-4000:]}")
            self.assertEqual(code, 0, f"{process.name} exit code {code}:\n{log[-4000:]}")


if __name__ == "__main__":
    unittest.main()
