"""Load generator: N concurrent conversations of M turns through the router,
with think time, run twice in one go — with the conversation cache (each turn
sends only its new tokens) and without it (each turn is a fresh conversation
carrying the whole history, so everything is recomputed). Reports TTFT p50/p99
per turn index, throughput and hit rate for both, and the ratios.

Uses raw-token turns (suffix_token_ids), so the two runs see identical
contexts. Starts its own stack unless --router is given.

Usage: loadgen.py [--router HOST:PORT] [--model synthetic:small] [--conversations 8]
                  [--turns 6] [--suffix 48] [--reply 16] [--think_ms 50] [--workers 2]
"""
import argparse
import os
import random
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "integration"))
from hc_client import Client  # noqa: E402


def percentile(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]


def run(client, args, use_cache, run_tag):
    """Returns per-turn TTFTs, total seconds, generated tokens, prompt and cached tokens."""
    ttft = [[] for _ in range(args.turns)]
    totals = {"generated": 0, "prompt": 0, "cached": 0}
    lock = threading.Lock()
    errors = []

    def conversation(c):
        rng = random.Random(c)
        history = []
        for t in range(args.turns):
            suffix = [rng.randrange(10, args.vocab) for _ in range(args.suffix)]
            try:
                if use_cache:
                    turn = client.complete(f"{run_tag}-c{c}", suffix_token_ids=suffix,
                                           max_tokens=args.reply, temperature=0.0, ignore_eos=True)
                else:
                    turn = client.complete(f"{run_tag}-c{c}-t{t}", suffix_token_ids=history + suffix,
                                           max_tokens=args.reply, temperature=0.0, ignore_eos=True)
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)
                return
            history += suffix + turn.token_ids
            with lock:
                ttft[t].append(turn.ttft_s)
                totals["generated"] += len(turn.token_ids)
                totals["prompt"] += turn.prompt_tokens
                totals["cached"] += turn.cached_tokens
            time.sleep(args.think_ms / 1000.0)  # think time between a reply and the next turn

    start = time.monotonic()
    threads = [threading.Thread(target=conversation, args=(c,)) for c in range(args.conversations)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return ttft, time.monotonic() - start, totals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--router")
    ap.add_argument("--model", default="synthetic:small")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--conversations", type=int, default=8)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--suffix", type=int, default=48)
    ap.add_argument("--reply", type=int, default=16)
    ap.add_argument("--think_ms", type=float, default=50)
    ap.add_argument("--vocab", type=int, default=1000, help="token ids are drawn below this")
    args = ap.parse_args()

    stack = None
    if args.router is None:
        import hc_harness as h
        stack = h.Stack(num_workers=args.workers, model=args.model,
                        worker_args=["--kv_cache_bytes=1073741824", "--mamba_slots=64"])
        args.router = stack.router.address
    try:
        client = Client(args.router, timeout=1800)
        tag = os.urandom(3).hex()
        print(f"loadgen: {args.conversations} conversations x {args.turns} turns, suffix {args.suffix}, "
              f"reply {args.reply}, think {args.think_ms} ms, router {args.router}")
        on = run(client, args, True, f"on-{tag}")
        off = run(client, args, False, f"off-{tag}")
    finally:
        if stack is not None:
            stack.close()

    print(f"\n{'turn':<5}{'p50 on':>10}{'p99 on':>10}{'p50 off':>10}{'p99 off':>10}{'p50 off/on':>12}")
    for t in range(args.turns):
        a, b = on[0][t], off[0][t]
        print(f"{t + 1:<5}{percentile(a, .5) * 1e3:>8.1f}ms{percentile(a, .99) * 1e3:>8.1f}ms"
              f"{percentile(b, .5) * 1e3:>8.1f}ms{percentile(b, .99) * 1e3:>8.1f}ms"
              f"{percentile(b, .5) / max(percentile(a, .5), 1e-9):>11.2f}x")
    for name, (_, secs, tot) in (("cache on ", on), ("cache off", off)):
        print(f"{name}: {secs:6.1f} s, {tot['generated'] / secs:7.1f} generated tok/s, "
              f"hit rate {tot['cached'] / max(tot['prompt'], 1):.3f}")
    last = args.turns - 1
    print(f"last-turn TTFT p50 ratio (off/on): "
          f"{percentile(off[0][last], .5) / max(percentile(on[0][last], .5), 1e-9):.2f}x; "
          f"wall-time ratio (off/on): {off[1] / on[1]:.2f}x")
    print(f"overall TTFT p50: on {statistics.median(sum(on[0], [])) * 1e3:.1f} ms, "
          f"off {statistics.median(sum(off[0], [])) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
