"""Qwen3's chat template through real processes: hc-router + hc-worker on loopback serving
synthetic:bamba-qwen3-tiny (the tiny Bamba model with Qwen3's real template, compiled in as
"qwen3", and its special tokens <|im_start|>, <|im_end|> (EOS)).

The template strips the reasoning ("<think>...</think>") of assistant messages before the last
user query, so it is not prefix-stable: the router's probe (TextCodec::RewritesHistory) says so,
and the router asks the worker for a Mamba state snapshot at every prompt's last message
boundary. What that means through the whole stack:
- replies without reasoning (this random model's) render the same in later turns: every turn
  from the second continues the committed tokens (a cache hit covering the previous prompt and
  reply), no rewrite turns, yet the worker holds the conversation's snapshot;
- an assistant message that reasoned after the last user query (an agent's tool call) loses
  its reasoning when the next user message arrives: that turn is a rewrite turn, computed on
  the template's rendering exactly, and the turn after it hits the cache again;
- with the worker holding the conversation killed, the turn fails over and recomputes
  (cached_tokens 0), still exact, and the next turn hits again.
Every turn's prompt is the template's full rendering of the conversation (hc-tokenize --chat:
the same engine, differentially tested against jinja2), and its greedy reply equals a one-shot
completion of that rendering in a fresh conversation."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

MODEL = "synthetic:bamba-qwen3-tiny"
TOKENIZE_BIN = os.path.join(h.BIN, "hc-tokenize")
GREEDY = dict(temperature=0.0, max_tokens=6)
WORKER_ARGS = ["--kv_blocks=1024", "--mamba_slots=32"]
TURNS = ["Hello there", "How are you today?", "Tell me about the cache.", "And the state?",
         "Why is that?", "Thanks, bye."]
TOOL_CALL = ("<think>\nThe user wants the weather; I should call the tool.\n</think>\n\n"
             '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>')


def render(conversation):
    """Token ids of the chat template's rendering of `conversation` with the generation prompt."""
    line = json.dumps([{"role": r, "content": c} for r, c in conversation])
    out = subprocess.run([TOKENIZE_BIN, f"--model={MODEL}", "--chat"], input=line + "\n",
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.splitlines()[0])


class Conversation:
    """A conversation as the test expects the router to hold it: its messages and its committed
    token ids."""

    def __init__(self, cid):
        self.cid, self.messages, self.tokens = cid, [], []


class Qwen3StackTest(unittest.TestCase):
    def turn(self, chat, conv, messages, i, rewrite=False):
        """Runs one turn of `messages` and checks its context: on a rewrite turn (and the first)
        the template's whole rendering of the conversation; otherwise the committed tokens (the
        replies as sampled, whose text can re-tokenize differently) followed by the rendering's
        tail after the last reply. Its reply must equal a one-shot completion of that context in
        a fresh conversation. Returns (cached tokens, the previous committed tokens)."""
        conv.messages.extend(messages)
        rendered = render(conv.messages)
        started, tokens, _, _ = h.complete(chat, conv.cid, messages=messages, **GREEDY)
        if rewrite or not conv.tokens:
            context = rendered
        else:
            added = started.prompt_tokens - len(conv.tokens)
            self.assertGreater(added, 0, f"{conv.cid} turn {i}")
            context = conv.tokens + rendered[len(rendered) - added:]
        self.assertEqual(started.prompt_tokens, len(context), f"{conv.cid} turn {i}")
        _, fresh, _, _ = h.complete(chat, f"{conv.cid}-fresh-{i}", suffix_token_ids=context,
                                    **GREEDY)
        self.assertEqual(tokens, fresh, f"{conv.cid} turn {i}")
        got = chat.GetConversation(h.chat_pb2.GetConversationRequest(conversation_id=conv.cid))
        self.assertEqual(got.num_tokens, len(context) + len(tokens), f"{conv.cid} turn {i}")
        self.assertEqual([(m.role, m.content) for m in got.messages[:-1]], conv.messages)
        conv.messages.append(("assistant", got.messages[-1].content))
        previous, conv.tokens = conv.tokens, context + tokens
        return started.cached_tokens, previous, got

    def test_conversation_hits_the_cache_every_turn_and_equals_one_shot_completions(self):
        with h.Stack(num_workers=1, model=MODEL, worker_args=WORKER_ARGS) as stack:
            chat = stack.chat()
            conv = Conversation("c")
            for i, text in enumerate(TURNS):
                cached, previous, _ = self.turn(chat, conv, [("user", text)], i)
                # This model's replies do not reason, so the template renders them unchanged.
                self.assertNotIn("</think>", conv.messages[-1][1])
                # From the second turn a continuation: the hit covers the previous prompt and
                # all of its reply but the last sampled token (never fed to the model).
                self.assertGreaterEqual(cached, max(len(previous) - 1, 0), f"turn {i}")
                self.assertLessEqual(cached, len(previous), f"turn {i}")
            self.assertEqual(h.metric_value(stack.router.metrics(),
                                            "hc_router_rewrite_turns_total"), 0)
            # The router asked for snapshots all the same: the template can rewrite.
            self.assertEqual(h.metric_value(stack.workers[0].metrics(), "hc_worker_mamba_slots",
                                            {"state": "snapshot"}), 1)

            # An agent's turn: a tool call that reasoned after the last user query (rendered
            # with its reasoning), then the tool's answer.
            agent = Conversation("t")
            self.turn(chat, agent, [("user", "What is the weather in Paris?")], 0)
            cached, _, _ = self.turn(
                chat, agent, [("assistant", TOOL_CALL), ("tool", '{"celsius": 21}')], 1)
            self.assertGreater(cached, 0)
            # The next user query strips that reasoning: a rewrite turn, computed on the whole
            # rendering. The snapshot (at the end of the tool's answer) lies past the rewritten
            # message, so the worker can resume no later than where the two agree.
            cached, previous, got = self.turn(chat, agent, [("user", "Thanks!")], 2,
                                              rewrite=True)
            self.assertEqual(h.metric_value(stack.router.metrics(),
                                            "hc_router_rewrite_turns_total"), 1)
            self.assertEqual(agent.tokens[:cached], previous[:cached])
            self.assertEqual(got.messages[2].content, TOOL_CALL)  # kept as the client sent it
            # ... and the turn after it hits the cache again.
            cached, previous, _ = self.turn(chat, agent, [("user", "And tomorrow?")], 3)
            self.assertGreaterEqual(cached, len(previous) - 1)

    def test_killed_worker_recomputes_exactly_and_the_next_turn_hits_again(self):
        with h.Stack(num_workers=2, model=MODEL, worker_args=WORKER_ARGS,
                     router_args=["--probe_interval=100ms"]) as stack:
            chat = stack.chat()
            by_address = {w.address: w for w in stack.workers}
            conv, cached = Conversation("k"), []
            for i, text in enumerate(TURNS[:4]):
                c, _, got = self.turn(chat, conv, [("user", text)], i)
                cached.append(c)
                if i == 1:
                    by_address[got.worker_id].kill()  # its state and snapshot are gone with it
            self.assertGreater(cached[1], 0)
            self.assertEqual(cached[2], 0)  # failed over: recomputed from the history
            self.assertGreater(cached[3], 0)  # the new worker's state


if __name__ == "__main__":
    unittest.main()
