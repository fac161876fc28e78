"""Faults with real processes: workers SIGKILLed between turns and mid-stream,
and a router restarted on its file ledger. Each test owns its stack."""
import os
import signal
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

grpc, chat_pb2 = h.grpc, h.chat_pb2
GREEDY = dict(temperature=0.0, ignore_eos=True)
WORKER_ARGS = ["--kv_blocks=1024", "--mamba_slots=32"]
ROUTER_ARGS = ["--probe_interval=100ms"]


def get(chat, conv):
    return chat.GetConversation(chat_pb2.GetConversationRequest(conversation_id=conv))


def worker_at(stack, address):
    return next(w for w in stack.workers if w.address == address)


class FaultTest(unittest.TestCase):
    def test_worker_killed_between_turns_fails_over_with_the_same_tokens(self):
        with h.Stack(num_workers=2, worker_args=WORKER_ARGS, router_args=ROUTER_ARGS) as stack:
            chat = stack.chat()
            turns = [[11, 12, 13, 14], [21, 22, 23], [31, 32]]
            reference = [h.complete(chat, "ref", suffix_token_ids=t, max_tokens=5, **GREEDY)[1]
                         for t in turns]
            _, first, _, _ = h.complete(chat, "victim", suffix_token_ids=turns[0], max_tokens=5, **GREEDY)
            self.assertEqual(first, reference[0])
            holder = worker_at(stack, get(chat, "victim").worker_id)
            holder.kill()
            started, second, _, done = h.complete(chat, "victim", suffix_token_ids=turns[1],
                                                  max_tokens=5, **GREEDY)
            self.assertEqual(second, reference[1])
            self.assertEqual(done.committed_round, 2)
            self.assertEqual(started.cached_tokens, 0)  # recomputed from the ledger's tokens
            self.assertNotEqual(get(chat, "victim").worker_id, holder.address)
            started, third, _, _ = h.complete(chat, "victim", suffix_token_ids=turns[2],
                                              max_tokens=5, **GREEDY)
            self.assertEqual(third, reference[2])
            self.assertGreater(started.cached_tokens, 0)  # sticky on the new worker
            routing = h.metric_value(stack.router.metrics(), "hc_router_routing_decisions_total",
                                     {"decision": "failover"})
            self.assertGreaterEqual(routing, 1)

    def test_worker_killed_mid_stream_fails_the_turn_and_keeps_the_ledger(self):
        with h.Stack(num_workers=2, worker_args=WORKER_ARGS, router_args=ROUTER_ARGS) as stack:
            chat = stack.chat()
            h.complete(chat, "mid", suffix_token_ids=[5, 6, 7], max_tokens=3, **GREEDY)
            before = get(chat, "mid")
            holder = worker_at(stack, before.worker_id)
            req = chat_pb2.CompleteRequest(conversation_id="mid", suffix_token_ids=[8, 9])
            req.sampling.temperature, req.sampling.ignore_eos, req.sampling.max_tokens = 0.0, True, 3500
            call = chat.Complete(req, timeout=120)
            with self.assertRaises(grpc.RpcError) as err:
                for ev in call:
                    if ev.WhichOneof("event") == "chunk":
                        holder.signal(signal.SIGKILL)
            self.assertIn(err.exception.code(), (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                                                 grpc.StatusCode.UNKNOWN))
            after = get(chat, "mid")
            self.assertEqual((after.committed_round, after.num_tokens),
                             (before.committed_round, before.num_tokens))
            # The next turn runs on the surviving worker.
            h.wait_until(lambda: h.metric_value(stack.router.metrics(), "hc_router_workers",
                                                {"state": "healthy"}) == 1, what="the router to notice")
            _, _, _, done = h.complete(chat, "mid", suffix_token_ids=[8, 9], max_tokens=3, **GREEDY)
            self.assertEqual(done.committed_round, before.committed_round + 1)

    def test_router_restart_on_the_file_ledger_continues_conversations(self):
        ledger_dir = tempfile.mkdtemp(prefix="hc-ledger-")
        with h.Stack(num_workers=2, worker_args=WORKER_ARGS,
                     router_args=ROUTER_ARGS + [f"--ledger_dir={ledger_dir}", "--ledger_fsync=always"]) as stack:
            chat = stack.chat()
            outputs = []
            for t in ([5, 6, 7], [8, 9]):
                outputs.append(h.complete(chat, "durable", suffix_token_ids=t, max_tokens=4, **GREEDY)[1])
            before = get(chat, "durable")
            stack.router.kill()  # SIGKILL: no chance to flush anything more
            stack.start_router()
            chat = stack.chat()
            after = get(chat, "durable")
            self.assertEqual((after.committed_round, after.num_tokens, after.worker_id),
                             (before.committed_round, before.num_tokens, before.worker_id))
            started, _, _, done = h.complete(chat, "durable", suffix_token_ids=[10, 11], max_tokens=4, **GREEDY)
            self.assertEqual(done.committed_round, 3)
            self.assertGreater(started.cached_tokens, 0)  # the worker still holds round 2
            # Same tokens as a conversation that never saw a restart.
            ref = [h.complete(chat, "ref", suffix_token_ids=t, max_tokens=4, **GREEDY)[1]
                   for t in ([5, 6, 7], [8, 9])]
            self.assertEqual(outputs, ref)


if __name__ == "__main__":
    unittest.main()
