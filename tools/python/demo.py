"""`make demo`: 3 conversations x 6 turns, interleaved, against a running stack.

Prints one row per turn and a summary: the hit rate (cached / prompt tokens)
and the mean time to first token of cached turns vs first turns.
Usage: demo.py [--router 127.0.0.1:50051]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hc_client import Client  # noqa: E402

SCRIPT = {
    "travel": ["Plan a weekend in Lisbon.", "What should I eat there?", "And on Sunday?",
               "How do I get to Sintra?", "Is it busy in May?", "Thanks, summarise the plan."],
    "code": ["Explain a KV cache.", "Why do Mamba layers need a state?", "What is copy-on-write?",
             "How is a turn committed?", "What happens on failure?", "Give me a one-line recap."],
    "story": ["Start a story about a lighthouse.", "Add a storm.", "Introduce a stranger.",
              "What does the stranger want?", "Resolve it.", "Give the story a title."],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", default="127.0.0.1:50051")
    ap.add_argument("--max_tokens", type=int, default=24)
    args = ap.parse_args()
    client = Client(args.router)
    run_id = os.urandom(3).hex()
    print(f"{'conversation':<14}{'round':>6}  {'worker':<18}{'prompt':>7}{'cached':>8}"
          f"{'TTFT ms':>9}{'commit ms':>11}  reply")
    first_ttft, cached_ttft, prompt, cached = [], [], 0, 0
    for turn in range(6):
        for name, lines in SCRIPT.items():
            t = client.send(f"demo-{name}-{run_id}", lines[turn], max_tokens=args.max_tokens,
                            temperature=0.0)
            prompt += t.prompt_tokens
            cached += t.cached_tokens
            (cached_ttft if turn > 0 else first_ttft).append(t.ttft_s)
            reply = t.text.replace("\n", " ")[:40]
            print(f"{name:<14}{t.round:>6}  {t.worker_id:<18}{t.prompt_tokens:>7}{t.cached_tokens:>8}"
                  f"{t.ttft_s * 1e3:>9.1f}{t.commit_s * 1e3:>11.2f}  {reply!r}")
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    print(f"\nhit rate: {cached / prompt:.1%} of {prompt} prompt tokens served from cache")
    print(f"mean TTFT: first turns {mean(first_ttft) * 1e3:.1f} ms, cached turns "
          f"{mean(cached_ttft) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
