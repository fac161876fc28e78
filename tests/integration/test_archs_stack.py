"""Granite-4.0-H and Nemotron-H through real processes: hc-router + one hc-worker on
loopback serving the synthetic granite-moe-tiny, granite-tiny and nemotron-tiny checkpoints
(real tensor names and config.json keys; the granite-* ones ship Granite-4.0-H's own chat
template and tokenizer pipeline). A multi-turn conversation hits the cache on every turn, and
cached turns equal one-shot recompute. Also the scaled-down checkpoints of the released
config.json files in tests/data/real_configs (hc-checkpoint --from_config)."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402
chat_pb2 = h.chat_pb2

GREEDY = dict(temperature=0.0, ignore_eos=True)
PRESETS = ["synthetic:granite-moe-tiny", "synthetic:granite-tiny", "synthetic:nemotron-tiny"]


REAL_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                            "real_configs")


class ArchStackTest(unittest.TestCase):
    def test_multi_turn_hits_the_cache_and_equals_recompute(self):
        for model in PRESETS:
            with self.subTest(model=model):
                self.check_multi_turn(model)

    def test_scaled_released_configs_serve_multi_turn_exactly(self):
        # hc-checkpoint --from_config: the released config.json of tests/data/real_configs with
        # every key kept and sizes shrunk (NVIDIA-Nemotron-3-Nano stored in bf16, as released,
        # served as stored), through the router with its family's tokenizer and chat template.
        for name, layers, dtype in [("nemotron-3-nano-30b-a3b-bf16", 0, "bfloat16"),
                                    ("nemotron-h-56b-base-8k", 24, "float32"),
                                    ("bamba-9b", 0, "float32")]:
            ckpt = tempfile.mkdtemp(prefix=f"hc-scaled-{name}-")
            self.addCleanup(shutil.rmtree, ckpt, True)
            subprocess.run([os.path.join(h.BIN, "hc-checkpoint"), "--from_config",
                            os.path.join(REAL_CONFIGS, name), f"--out={ckpt}",
                            f"--scaled_layers={layers}", f"--dtype={dtype}"],
                           check=True, capture_output=True)
            with self.subTest(model=name):
                log = self.check_multi_turn(ckpt, prefix_stable=not name.startswith("nemotron"))
                self.assertIn(f"weights {dtype}", log)

    def check_multi_turn(self, model, prefix_stable=True):
        """Returns the worker's log. prefix_stable=False: the Nemotron-Nano-v2 template (the
        nemotron family's tokenizer) writes "<think>" in the generation prompt but not before
        earlier replies, so a later turn resumes at the previous prompt less its generation
        prompt (under 16 tokens; test_rewrite_stack.py checks that boundary exactly)."""
        with h.Stack(num_workers=1, model=model,
                     worker_args=["--kv_blocks=1024", "--mamba_slots=32"]) as stack:
            chat = stack.chat()
            prev = 0
            for i, text in enumerate(["Hello there", "How are you today?", "And the state?"]):
                started, tokens, _, done = h.complete(
                    chat, "msg", messages=[("user", text)], max_tokens=5, **GREEDY)
                self.assertEqual(done.committed_round, i + 1)
                self.assertEqual(len(tokens), 5)
                if i > 0 and prefix_stable:
                    self.assertGreaterEqual(started.cached_tokens, prev - 1)
                elif i > 0:
                    self.assertLessEqual(started.cached_tokens, prev_prompt)
                    self.assertGreater(started.cached_tokens, prev_prompt - 16)
                prev = started.prompt_tokens + len(tokens)
                prev_prompt = started.prompt_tokens
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
            return stack.workers[0].log()

    def test_granite_chat_with_its_own_template_hits_and_equals_recompute(self):
        # granite-tiny's tokenizer_config.json carries Granite-4.0-H's template (a default
        # system prompt before the first message); the router renders every continuing turn
        # whole and sends what it adds after the committed tokens. The same conversation
        # again, with the worker holding it killed before every later turn, is recomputed
        # from the ledger's tokens each time; greedy, both must answer the same. Once with
        # the fp32 preset, once with it written in bf16 (served as stored: --dtype auto).
        bf16 = tempfile.mkdtemp(prefix="hc-granite-bf16-")
        self.addCleanup(shutil.rmtree, bf16, True)
        subprocess.run([os.path.join(h.BIN, "hc-checkpoint"), "--arch=granitemoehybrid",
                        "--preset=tiny", f"--out={bf16}", "--dtype=bfloat16"], check=True,
                       capture_output=True)
        for model in ("synthetic:granite-tiny", bf16):
            with self.subTest(model=model):
                self.check_chat_hits_and_equals_recompute(model)

    def check_chat_hits_and_equals_recompute(self, model):
        turns = ["Hello there", "How are you today?", "Tell me more.", "And the state?"]
        with h.Stack(num_workers=len(turns), model=model,
                     worker_args=["--kv_blocks=1024", "--mamba_slots=32"]) as stack:
            chat = stack.chat()
            replies = {}
            for conv in ("cached", "recomputed"):
                committed, replies[conv] = 0, []
                for i, text in enumerate(turns):
                    if conv == "recomputed" and i > 0:
                        holder = chat.GetConversation(chat_pb2.GetConversationRequest(
                            conversation_id=conv)).worker_id
                        next(w for w in stack.workers if w.address == holder).kill()
                    started, tokens, _, done = h.complete(
                        chat, conv, messages=[("user", text)], max_tokens=4, **GREEDY)
                    self.assertEqual(done.committed_round, i + 1)
                    if i > 0 and conv == "cached":  # the history less the last sampled token
                        self.assertGreaterEqual(started.cached_tokens, committed - 1, f"turn {i}")
                    if conv == "recomputed":
                        self.assertEqual(started.cached_tokens, 0, f"turn {i}")
                    committed = started.prompt_tokens + len(tokens)
                    replies[conv].append((started.prompt_tokens, tokens))
            self.assertEqual(replies["cached"], replies["recomputed"])
            if model != "synthetic:granite-tiny":
                self.assertIn("weights bfloat16, KV cache bfloat16", stack.workers[-1].log())

if __name__ == "__main__":
    unittest.main()
