"""Granite-4.0-H and Nemotron-H through real processes: hc-router + one hc-worker on
loopback serving the synthetic granite-moe-tiny and nemotron-tiny checkpoints (real tensor
names and config.json keys; the synthetic tokenizer and chat template). A multi-turn
conversation hits the cache on every turn, and cached raw-token turns equal one-shot
recompute."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

GREEDY = dict(temperature=0.0, ignore_eos=True)
PRESETS = ["synthetic:granite-moe-tiny", "synthetic:granite-tiny", "synthetic:nemotron-tiny"]


class ArchStackTest(unittest.TestCase):
    def test_multi_turn_hits_the_cache_and_equals_recompute(self):
        for model in PRESETS:
            with self.subTest(model=model), h.Stack(
                    num_workers=1, model=model,
                    worker_args=["--kv_blocks=1024", "--mamba_slots=32"]) as stack:
                chat = stack.chat()
                prev = 0
                for i, text in enumerate(["Hello there", "How are you today?", "And the state?"]):
                    started, tokens, _, done = h.complete(
                        chat, "msg", messages=[("user", text)], max_tokens=5, **GREEDY)
                    self.assertEqual(done.committed_round, i + 1)
                    self.assertEqual(len(tokens), 5)
                    if i > 0:
                        self.assertGreaterEqual(started.cached_tokens, prev - 1)
                    prev = started.prompt_tokens + len(tokens)
                history = []
                for i in range(4):
                    suffix = [(37 * i + 11 * k) % 900 + 10 for k in range(3 + 2 * i)]
                    _, tokens, _, _ = h.complete(chat, "raw", suffix_token_ids=suffix,
                                                 max_tokens=4, **GREEDY)
                    _, fresh, _, _ = h.complete(chat, f"fresh-{i}",
                                                suffix_token_ids=history + suffix, max_tokens=4,
                                                **GREEDY)
                    self.assertEqual(tokens, fresh, f"turn {i}")
                    history += suffix + tokens


if __name__ == "__main__":
    unittest.main()
