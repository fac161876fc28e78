"""Rewrite turns through real processes: hc-router + one hc-worker on loopback serving
synthetic:nemotron-nano-tiny (nemotron_h with NVIDIA-Nemotron-Nano-v2's real chat template and
special tokens <SPECIAL_10>, <SPECIAL_11>, <SPECIAL_12>). The template is not prefix-stable (it
writes "<think>\\n\\n" in the generation prompt but not before earlier replies), so every
continuing turn is a rewrite turn: a 6-turn conversation succeeds on every turn, each turn's
prompt is the template's full rendering of the conversation (hc-tokenize --chat: the same
engine, differentially tested against jinja2 as transformers renders), and its greedy reply
equals a one-shot completion of that rendered history in a fresh conversation.

Every turn from the second hits the cache: the worker resumes from its Mamba state snapshot at
the previous prompt's last message boundary (cached_tokens covers the previous prompt but its
generation prompt). With the worker holding the conversation killed between turns, the turn
fails over and recomputes (cached_tokens 0), still exact, and the next turn hits again."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

MODEL = "synthetic:nemotron-nano-tiny"
TOKENIZE_BIN = os.path.join(h.BIN, "hc-tokenize")
GREEDY = dict(temperature=0.0, max_tokens=6)
TURNS = ["Hello there", "How are you today?", "Tell me about the cache.", "And the state?",
         "Why is that?", "Thanks, bye."]


def render(conversation):
    """Token ids of the chat template's rendering of `conversation` with the generation prompt."""
    line = json.dumps([{"role": r, "content": c} for r, c in conversation])
    out = subprocess.run([TOKENIZE_BIN, f"--model={MODEL}", "--chat"], input=line + "\n",
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.splitlines()[0])


class RewriteStackTest(unittest.TestCase):
    def test_nemotron_conversation_continues_and_equals_one_shot_completions(self):
        with h.Stack(num_workers=1, model=MODEL,
                     worker_args=["--kv_blocks=1024", "--mamba_slots=32"]) as stack:
            chat = stack.chat()
            conversation = []
            prev_prompt, gaps = None, set()
            for i, text in enumerate(TURNS):
                conversation.append(("user", text))
                expected = render(conversation)
                started, tokens, _, done = h.complete(chat, "c", messages=[("user", text)],
                                                      **GREEDY)
                self.assertEqual(done.committed_round, i + 1, f"turn {i}")
                self.assertEqual(started.prompt_tokens, len(expected), f"turn {i}")
                self.check_cached(i, started.cached_tokens, prev_prompt, expected, gaps)
                prev_prompt = expected
                _, fresh, _, _ = h.complete(chat, f"fresh-{i}", suffix_token_ids=expected,
                                            **GREEDY)
                self.assertEqual(tokens, fresh, f"turn {i}")
                conv = chat.GetConversation(h.chat_pb2.GetConversationRequest(conversation_id="c"))
                self.assertEqual(conv.num_tokens, len(expected) + len(tokens), f"turn {i}")
                self.assertEqual(len(conv.messages), 2 * (i + 1))
                self.assertEqual(conv.messages[-2].content, text)
                conversation.append(("assistant", conv.messages[-1].content))
            metrics = stack.router.metrics()
            self.assertEqual(h.metric_value(metrics, "hc_router_rewrite_turns_total"),
                             len(TURNS) - 1)
            worker = stack.workers[0].metrics()
            self.assertEqual(h.metric_value(worker, "hc_worker_snapshot_lookups_total",
                                            {"result": "hit"}), len(TURNS) - 1)
            self.assertEqual(h.metric_value(worker, "hc_worker_mamba_slots",
                                            {"state": "snapshot"}), 1)

    def check_cached(self, i, cached, prev_prompt, expected, gaps):
        """From turn 2 on, the turn resumed at the previous prompt's last message boundary:
        cached tokens are shared with the previous prompt and cover all of it but its
        generation prompt, the same few tokens every turn."""
        if prev_prompt is None:
            self.assertEqual(cached, 0, f"turn {i}")
            return
        self.assertGreater(cached, 0, f"turn {i}")
        self.assertEqual(expected[:cached], prev_prompt[:cached], f"turn {i}")
        gap = len(prev_prompt) - cached
        self.assertTrue(0 < gap <= 16, f"turn {i}: {gap} tokens of the previous prompt recomputed")
        gaps.add(gap)
        self.assertEqual(len(gaps), 1, f"turn {i}: generation prompt lengths {gaps}")

    def test_killed_worker_recomputes_exactly_and_the_next_turn_hits_again(self):
        with h.Stack(num_workers=2, model=MODEL,
                     worker_args=["--kv_blocks=1024", "--mamba_slots=32"],
                     router_args=["--probe_interval=100ms"]) as stack:
            chat = stack.chat()
            by_address = {w.address: w for w in stack.workers}
            conversation = []
            cached = []
            for i, text in enumerate(TURNS[:4]):
                conversation.append(("user", text))
                expected = render(conversation)
                started, tokens, _, _ = h.complete(chat, "k", messages=[("user", text)],
                                                   **GREEDY)
                cached.append(started.cached_tokens)
                _, fresh, _, _ = h.complete(chat, f"kfresh-{i}", suffix_token_ids=expected,
                                            **GREEDY)
                self.assertEqual(tokens, fresh, f"turn {i}")
                conv = chat.GetConversation(h.chat_pb2.GetConversationRequest(conversation_id="k"))
                conversation.append(("assistant", conv.messages[-1].content))
                if i == 1:
                    by_address[conv.worker_id].kill()  # its snapshot is gone with it
            self.assertGreater(cached[1], 0)
            self.assertEqual(cached[2], 0)  # failed over: recomputed from the history
            self.assertGreater(cached[3], 0)  # the new worker's snapshot


if __name__ == "__main__":
    unittest.main()
