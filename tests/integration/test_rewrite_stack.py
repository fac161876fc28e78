"""Rewrite turns through real processes: hc-router + one hc-worker on loopback serving
synthetic:nemotron-nano-tiny (nemotron_h with NVIDIA-Nemotron-Nano-v2's real chat template and
special tokens <SPECIAL_10>, <SPECIAL_11>, <SPECIAL_12>). The template is not prefix-stable (it
writes "<think>\\n\\n" in the generation prompt but not before earlier replies), so every
continuing turn is a rewrite turn: a 6-turn conversation succeeds on every turn, each turn's
prompt is the template's full rendering of the conversation (hc-tokenize --chat: the same
engine, differentially tested against jinja2 as transformers renders), and its greedy reply
equals a one-shot completion of that rendered history in a fresh conversation."""
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
            for i, text in enumerate(TURNS):
                conversation.append(("user", text))
                expected = render(conversation)
                started, tokens, _, done = h.complete(chat, "c", messages=[("user", text)],
                                                      **GREEDY)
                self.assertEqual(done.committed_round, i + 1, f"turn {i}")
                self.assertEqual(started.prompt_tokens, len(expected), f"turn {i}")
                if i > 0:
                    # A rewrite: the worker's Mamba state is at the committed length, which the
                    # rendering no longer extends, so it recomputes from token 0.
                    self.assertEqual(started.cached_tokens, 0, f"turn {i}")
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


if __name__ == "__main__":
    unittest.main()
