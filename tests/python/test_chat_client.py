"""A Python gRPC client (tools/python/hc_client.py, stubs generated from
proto/ at test time) holds a multi-turn conversation against a real stack."""
import os
import sys
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import hc_harness as h  # noqa: E402
from hc_client import Client  # noqa: E402


class ChatClientTest(unittest.TestCase):
    def test_multi_turn_conversation_from_python(self):
        with h.Stack(num_workers=2) as stack:
            client = Client(stack.router.address)
            previous = None
            for i, text in enumerate(["Hi! Who are you?", "What do you cache?", "Thanks."]):
                turn = client.send("py-conv", text, max_tokens=12, temperature=0.7, top_p=0.9, seed=7)
                self.assertEqual(turn.round, i + 1)
                self.assertEqual(len(turn.token_ids), 12)
                self.assertIsInstance(turn.text, str)
                if previous is not None:
                    self.assertGreaterEqual(turn.cached_tokens,
                                            previous.prompt_tokens + len(previous.token_ids) - 1)
                    self.assertEqual(turn.worker_id, previous.worker_id)  # sticky
                previous = turn
            conv = client.get("py-conv")
            self.assertEqual(conv.committed_round, 3)
            self.assertEqual([m.role for m in conv.messages], ["user", "assistant"] * 3)
            self.assertEqual(conv.messages[0].content, "Hi! Who are you?")
            # A seeded turn is reproducible: the same context and seed, another conversation.
            a = client.send("seed-a", "Same words", max_tokens=8, temperature=1.0, seed=42)
            b = client.send("seed-b", "Same words", max_tokens=8, temperature=1.0, seed=42)
            self.assertEqual(a.token_ids, b.token_ids)
            client.delete("py-conv")
            with self.assertRaises(h.grpc.RpcError) as err:
                client.get("py-conv")
            self.assertEqual(err.exception.code(), h.grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    unittest.main()
