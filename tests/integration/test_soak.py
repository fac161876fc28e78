"""Soak: many clients send short sampled turns through a real hc-router to real
hc-workers, first to one worker, then to two with one SIGKILLed midway.

The router must never die; every turn ends OK or with a documented refusal
(UNAVAILABLE: the worker died under it; RESOURCE_EXHAUSTED: a bound was hit);
and the ledger must hold exactly the turns the clients were told committed,
in round order. At the end the router is stopped with SIGTERM and must exit
0: under a sanitizer build (HC_ROUTER_BIN, see `make test-asan` /
`make test-tsan`) a report makes that exit code non-zero.

Bounded: each phase runs for SOAK_SECONDS (default 12) or SOAK_TURNS turns per
client, whichever comes first.
"""
import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

grpc, chat_pb2 = h.grpc, h.chat_pb2

SECONDS = float(os.environ.get("SOAK_SECONDS", "12"))
TURNS = int(os.environ.get("SOAK_TURNS", "400"))
CLIENTS = 6
CONVERSATIONS_PER_CLIENT = 4
REFUSALS = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
WORKER_ARGS = ["--kv_blocks=2048", "--mamba_slots=64"]
ROUTER_ARGS = ["--probe_interval=200ms"]


class Client(threading.Thread):
    """Owns a few conversations; records every acknowledged turn by round."""

    def __init__(self, stack, index, stop_at):
        super().__init__(daemon=True)
        self.chat = stack.chat()
        self.rng = random.Random(index)
        self.ids = [f"soak-{index}-{c}" for c in range(CONVERSATIONS_PER_CLIENT)]
        self.told = {i: {} for i in self.ids}  # conversation -> round -> (user, reply)
        self.outcomes = {}
        self.unexpected = []
        self.stop_at = stop_at

    def run(self):
        for n in range(TURNS):
            if time.monotonic() >= self.stop_at:
                return
            conv = self.rng.choice(self.ids)
            text = f"turn {n} of {conv}: " + "".join(self.rng.choice("abcdefgh ") for _ in range(8))
            try:
                _, _, reply, done = h.complete(
                    self.chat, conv, messages=[("user", text)], timeout=60, max_tokens=16,
                    temperature=1.0, seed=self.rng.randrange(1 << 30))
                self.told[conv][done.committed_round] = (text, reply)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
                if code not in REFUSALS:
                    self.unexpected.append(f"{conv}: {code} {e.details()}")
            self.outcomes[code] = self.outcomes.get(code, 0) + 1


class SoakTest(unittest.TestCase):
    def run_clients(self, stack, seconds, midway=None):
        stop_at = time.monotonic() + seconds
        clients = [Client(stack, i, stop_at) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        if midway is not None:
            time.sleep(seconds / 2)  # the load runs on; this only places the fault in time
            midway()
        for c in clients:
            c.join(timeout=seconds + 120)
            self.assertFalse(c.is_alive(), "a client hung")
        return clients

    def check(self, stack, clients):
        self.assertTrue(stack.router.alive(), "the router died:\n" + stack.router.log())
        outcomes = {}
        for c in clients:
            self.assertEqual(c.unexpected, [], "turns ended with undocumented statuses")
            for code, n in c.outcomes.items():
                outcomes[code] = outcomes.get(code, 0) + n
        ok = outcomes.get(grpc.StatusCode.OK, 0)
        self.assertGreater(ok, 20, f"too few turns completed: {outcomes}")
        chat = stack.chat()
        for c in clients:
            for conv, rounds in c.told.items():
                if not rounds:
                    continue
                got = chat.GetConversation(chat_pb2.GetConversationRequest(conversation_id=conv))
                self.assertEqual(got.committed_round, len(rounds), conv)
                self.assertEqual(sorted(rounds), list(range(1, len(rounds) + 1)), conv)
                expected = []
                for r in sorted(rounds):
                    expected += [("user", rounds[r][0]), ("assistant", rounds[r][1])]
                self.assertEqual([(m.role, m.content) for m in got.messages], expected, conv)
        # A graceful stop exits 0; a sanitizer report makes it non-zero.
        code = stack.router.stop()
        with open(stack.router.log_path) as f:
            log = f.read()
        for mark in h.SANITIZER_MARKS:
            self.assertNotIn(mark, log, f"sanitizer report in the router's log:\n{log[-4000:]}")
        self.assertEqual(code, 0, f"router exit code {code}:\n{log[-4000:]}")
        return outcomes

    def test_one_worker_many_clients_short_sampled_turns(self):
        with h.Stack(num_workers=1, worker_args=WORKER_ARGS, router_args=ROUTER_ARGS) as stack:
            clients = self.run_clients(stack, SECONDS)
            outcomes = self.check(stack, clients)
            print(f"one worker: {outcomes}", file=sys.stderr)

    def test_two_workers_one_killed_midway(self):
        with h.Stack(num_workers=2, worker_args=WORKER_ARGS, router_args=ROUTER_ARGS) as stack:
            victim = stack.workers[0]
            # kill(): SIGKILL and wait for the exit, so the check below does not
            # race the kernel's delivery of the signal.
            clients = self.run_clients(stack, SECONDS, midway=victim.kill)
            self.assertFalse(victim.alive())
            outcomes = self.check(stack, clients)
            print(f"two workers, one killed: {outcomes}", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
