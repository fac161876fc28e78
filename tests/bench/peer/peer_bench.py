"""Side by side: HybridCache (hc-router --http_port + one hc-worker) and llama-server, the same
checkpoint (fp32; GGUF from convert_exact.py), the same workload through the same OpenAI
chat-completions client, one server at a time, at each thread count. Prints every figure for
both and the ratios (ours / llama.cpp for throughputs, llama.cpp / ours for latencies, so > 1
always means HybridCache is ahead).

Run by run.sh (make bench); stdlib only. docs/benchmarks.md describes the method.
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WORDS = ("the of and to in is was for on that with as by at from his it an were are which this "
         "be or has had first one their its new after who they have two her she been other when "
         "there all during into school time may years more most only over city some world would "
         "where later up such used many can state about national out known university united "
         "then made river water house garden window market bridge winter summer morning evening "
         "village mountain station library teacher doctor engine signal number letter question "
         "answer music paper stone forest island harbor castle church valley desert ocean").split()


def make_text(rng, words):
    out = []
    for i in range(words):
        w = rng.choice(WORDS)
        out.append(w.capitalize() if i % 13 == 0 else w)
        if i % 13 == 12:
            out[-1] += "."
    return " ".join(out)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """Processes of one server under test; stopped (SIGTERM, then SIGKILL) on close."""

    def __init__(self, name, http_port, log_dir):
        self.name, self.http_port, self.log_dir = name, http_port, log_dir
        self.procs = []

    def spawn(self, tag, args):
        log = open(os.path.join(self.log_dir, f"{self.name}-{tag}.log"), "w")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def wait_ready(self, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{self.name} exited {p.returncode} while starting; logs in "
                                       f"{self.log_dir}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; logs in {self.log_dir}")

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def start_ours(args, threads, log_dir):
    s = Server(f"hybridcache-t{threads}", free_port(), log_dir)
    wport = free_port()
    worker = [os.path.join(args.bin, "hc-worker"), f"--port={wport}", "--metrics_port=0",
              "--worker_id=peer", f"--model={args.checkpoint}", "--device=cpu",
              f"--kv_cache_bytes={args.kv_cache_mib << 20}", f"--mamba_slots={args.mamba_slots}"]
    worker += ours_thread_flags(args, threads)
    try:
        s.spawn("worker", worker)
        s.spawn("router", [os.path.join(args.bin, "hc-router"), f"--port={free_port()}",
                           "--metrics_port=0", f"--workers=127.0.0.1:{wport}",
                           f"--model={args.checkpoint}", f"--http_port={s.http_port}",
                           "--served_model_name=peer"])
        s.wait_ready()
    except Exception:
        s.close()
        raise
    return s


def ours_thread_flags(args, threads):
    """--threads when the worker has it (intra-op threads); else --tp (one thread per rank)."""
    if threads == 1:
        return ["--threads=1"] if args.ours_has_threads else []
    return [f"--threads={threads}"] if args.ours_has_threads else [f"--tp={threads}"]


def start_llama(args, threads, slots, cache_ram_mib, log_dir):
    s = Server(f"llama-t{threads}-np{slots}-cr{cache_ram_mib}", free_port(), log_dir)
    cmd = [os.path.join(args.llama_bin, "llama-server"), "-m", args.gguf, "--host", "127.0.0.1",
           "--port", str(s.http_port), "-t", str(threads), "-tb", str(threads),
           "-c", str(args.llama_ctx_per_slot * slots), "-np", str(slots),
           "--cache-ram", str(cache_ram_mib), "--no-webui", "-ctk", args.llama_kv_type,
           "-ctv", args.llama_kv_type] + args.llama_args.split()
    try:
        s.spawn("server", cmd)
        s.wait_ready()
    except Exception:
        s.close()
        raise
    return s


def chat(port, messages, max_tokens, conversation=None, stream=True, logprobs=False):
    """One chat completion. Returns dict: text, ttft_s, token_times, usage, logprobs."""
    body = {"model": "peer", "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if logprobs:
        body.update(logprobs=True, top_logprobs=1)
    headers = {"Content-Type": "application/json"}
    if conversation:
        headers["X-Conversation-Id"] = conversation
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.monotonic()
    start = t0
    c.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:500]!r}")
    if not stream:
        d = json.loads(r.read())
        choice = d["choices"][0]
        return {"text": choice["message"]["content"], "usage": d.get("usage") or {},
                "logprobs": (choice.get("logprobs") or {}).get("content") or []}
    text, times, usage = [], [], {}
    for raw in r:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        ev = json.loads(data)
        if "error" in ev:
            raise RuntimeError(f"stream error: {ev['error']}")
        if ev.get("usage"):
            usage = ev["usage"]
        for ch in ev.get("choices") or []:
            piece = (ch.get("delta") or {}).get("content")
            if piece:
                text.append(piece)
                times.append(time.monotonic() - t0)
    if not times:
        raise RuntimeError("no tokens streamed")
    return {"text": "".join(text), "ttft_s": times[0], "token_times": times, "usage": usage,
            "start": start}


def name_of(server):
    return "ours" if server.name.startswith("hybridcache") else "llama"


def single_conversation(server, args, tag):
    """First turn (long prompt, then decode), then later turns of +~64 tokens."""
    rng = random.Random(7)
    conv = f"peer-{tag}-{time.monotonic_ns()}" if name_of(server) == "ours" else None
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": make_text(rng, args.first_words)}]
    r = chat(server.http_port, msgs, args.decode_tokens, conv)
    n_prompt = r["usage"].get("prompt_tokens", 0)
    t = r["token_times"]
    out = {"prompt_tokens": n_prompt, "first_ttft_s": r["ttft_s"],
           "prefill_tok_s": n_prompt / r["ttft_s"],
           "decode_tok_s": (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else 0.0}
    later = []
    msgs.append({"role": "assistant", "content": r["text"]})
    for _ in range(args.later_turns):
        msgs.append({"role": "user", "content": make_text(rng, args.later_words)})
        r = chat(server.http_port, msgs, args.later_reply, conv)
        later.append(r["ttft_s"])
        msgs.append({"role": "assistant", "content": r["text"]})
    out["later_ttft_s"] = statistics.median(later)
    return out


def interleaved(server, args, tag):
    """N conversations, round-robin one turn each; returns TTFT p50 of turns 2.. ."""
    rngs = [random.Random(100 + c) for c in range(args.conversations)]
    hist = [[{"role": "system", "content": f"Conversation {c}."}]
            for c in range(args.conversations)]
    ids = [f"peer-{tag}-{time.monotonic_ns()}-{c}" for c in range(args.conversations)]
    later, cached = [], 0
    for turn in range(args.turns):
        for c in range(args.conversations):
            words = args.il_first_words if turn == 0 else args.later_words
            hist[c].append({"role": "user", "content": make_text(rngs[c], words)})
            r = chat(server.http_port, hist[c], args.il_reply,
                     ids[c] if name_of(server) == "ours" else None)
            hist[c].append({"role": "assistant", "content": r["text"]})
            if turn > 0:
                later.append(r["ttft_s"])
                cached += ((r["usage"].get("prompt_tokens_details") or {}).get("cached_tokens")
                           or 0)
    v = sorted(later)
    p90 = v[min(len(v) - 1, round(0.9 * (len(v) - 1)))]
    return {"p50_s": statistics.median(v), "p90_s": p90, "cached_tokens": cached}


def batch_decode(server, args):
    """args.batch concurrent one-shot streams (distinct ~250-token prompts): aggregate decode
    tokens/s over the window in which every stream is decoding (from the last stream's first
    token to the first stream's last token), i.e. continuous-batching decode throughput."""
    results = [None] * args.batch
    errors = []

    def run(i):
        try:
            rng = random.Random(500 + i)
            msgs = [{"role": "user", "content": make_text(rng, args.il_first_words)}]
            results[i] = chat(server.http_port, msgs, args.batch_tokens)
        except Exception as e:  # reported below: a failed stream fails the section
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.batch)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    stamps = [[r["start"] + x for x in r["token_times"]] for r in results]
    begin = max(s[0] for s in stamps)
    end = min(s[-1] for s in stamps)
    if end <= begin:
        raise RuntimeError("streams did not overlap: raise --batch_tokens")
    tokens = sum(1 for s in stamps for x in s if begin < x <= end)
    return {"decode_tok_s": tokens / (end - begin)}


def greedy_check(port_a, port_b, args):
    """Same prompt, greedy, logprobs: first differing token and max |dlogprob| before it."""
    rng = random.Random(3)
    msgs = [{"role": "user", "content": make_text(rng, 120)}]
    a = chat(port_a, msgs, args.check_tokens, stream=False, logprobs=True)
    b = chat(port_b, msgs, args.check_tokens, stream=False, logprobs=True)
    ta = [x["token"] for x in a["logprobs"]]
    tb = [x["token"] for x in b["logprobs"]]
    same = 0
    while same < min(len(ta), len(tb)) and ta[same] == tb[same]:
        same += 1
    dmax = max((abs(a["logprobs"][i]["logprob"] - b["logprobs"][i]["logprob"])
                for i in range(same)), default=float("nan"))
    return {"prompt_tokens": (a["usage"].get("prompt_tokens"), b["usage"].get("prompt_tokens")),
            "generated": (len(ta), len(tb)), "same_prefix": same, "max_dlogprob": dmax,
            "first_diff": None if same == min(len(ta), len(tb)) else (ta[same], tb[same])}


def mamba_state_mib(checkpoint, slots):
    """Bytes of the fp32 Mamba states our worker reserves (conv + SSM per Mamba layer)."""
    with open(os.path.join(checkpoint, "config.json")) as f:
        c = json.load(f)
    hidden = c["hidden_size"]
    d_inner = c.get("mamba_expand", 2) * hidden
    heads = c.get("mamba_n_heads", d_inner // c.get("mamba_d_head", 64))
    d_head = c.get("mamba_d_head", d_inner // heads)
    groups, d_state = c.get("mamba_n_groups", 1), c.get("mamba_d_state", 128)
    conv = (d_inner + 2 * groups * d_state) * (c.get("mamba_d_conv", 4) - 1)
    ssm = heads * d_head * d_state
    attn = set(c.get("attn_layer_indices") or [])
    layers = c["num_hidden_layers"] - len(attn)
    return slots * layers * (conv + ssm) * 4 / (1 << 20)


def ratio(num, den):
    return num / den if den else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="our build/bin")
    ap.add_argument("--llama_bin", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--gguf_stock", help="stock-converter GGUF: also show its greedy check")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--first_words", type=int, default=760)  # ~1.4K tokens with the template
    ap.add_argument("--later_words", type=int, default=32)  # ~64 tokens
    ap.add_argument("--decode_tokens", type=int, default=64)
    ap.add_argument("--later_turns", type=int, default=3)
    ap.add_argument("--later_reply", type=int, default=16)
    ap.add_argument("--conversations", type=int, default=8)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--il_first_words", type=int, default=125)
    ap.add_argument("--il_reply", type=int, default=16)
    ap.add_argument("--check_tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)  # concurrent streams of the batch section
    ap.add_argument("--batch_tokens", type=int, default=96)
    ap.add_argument("--sections", default="check,single,batch,interleaved",
                    help="comma-separated subset of check,single,batch,interleaved")
    ap.add_argument("--kv_cache_mib", type=int, default=64)
    ap.add_argument("--mamba_slots", type=int, default=16)
    ap.add_argument("--llama_ctx_per_slot", type=int, default=4096)
    # fp32 KV like ours (llama-server's default is f16, which alone moves logprobs by ~1e-3).
    ap.add_argument("--llama_kv_type", default="f32")
    ap.add_argument("--llama_args", default="", help="extra llama-server flags")
    args = ap.parse_args()
    # A SIGTERM (timeout, Ctrl-C of make) unwinds through the finally blocks that stop servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    help_text = subprocess.run([os.path.join(args.bin, "hc-worker"), "--helpfull"],
                               capture_output=True, text=True).stdout
    args.ours_has_threads = "--threads" in help_text
    log_dir = tempfile.mkdtemp(prefix="hc-peer-")
    cache_mib = args.kv_cache_mib + mamba_state_mib(args.checkpoint, args.mamba_slots)
    cache_ram = int(round(cache_mib))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; logs: {log_dir}")
    print(f"our cache memory: KV {args.kv_cache_mib} MiB + {args.mamba_slots} Mamba slots = "
          f"{cache_mib:.1f} MiB; llama-server --cache-ram {cache_ram} (MiB)")
    if not args.ours_has_threads:
        print("hc-worker has no --threads: its multi-core run uses --tp N (one thread per rank)")

    sections = set(args.sections.split(","))
    # Correctness first, at 1 thread: the exact conversion must agree token for token.
    ours = start_ours(args, 1, log_dir) if "check" in sections else None
    try:
        for label, gguf in (("exact", args.gguf), ("stock", args.gguf_stock)):
            if not gguf or ours is None:
                continue
            # Flash attention off: ggml's CPU flash attention rounds through f16 (|dlogprob| ~1e-3
            # even with f32 KV); the exactness check compares fp32 with fp32.
            saved = args.gguf, args.llama_args
            args.gguf, args.llama_args = gguf, args.llama_args + " -fa off"
            llama = start_llama(args, 1, 1, 0, log_dir)
            args.gguf, args.llama_args = saved
            try:
                g = greedy_check(ours.http_port, llama.http_port, args)
            finally:
                llama.close()
            verdict = "SAME" if g["first_diff"] is None and g["generated"][0] == g["generated"][1] \
                else f"DIFFER at token {g['same_prefix']} {g['first_diff']}"
            print(f"greedy check ({label} conversion): prompt tokens ours/llama "
                  f"{g['prompt_tokens'][0]}/{g['prompt_tokens'][1]}, {g['generated'][0]} tokens: "
                  f"{verdict}; max |dlogprob| over the common prefix {g['max_dlogprob']:.2e}")
    finally:
        if ours is not None:
            ours.close()

    for threads in [int(t) for t in args.threads.split(",")]:
        print(f"\n=== {threads} thread(s) ===")
        if "single" in sections:
            single_section(args, threads, log_dir)
        if "batch" in sections:
            bd = {}
            for who in ("ours", "llama"):
                s = start_ours(args, threads, log_dir) if who == "ours" else \
                    start_llama(args, threads, args.batch, 0, log_dir)
                try:
                    bd[who] = batch_decode(s, args)
                finally:
                    s.close()
            a, b = bd["ours"]["decode_tok_s"], bd["llama"]["decode_tok_s"]
            print(f"  {'decode tokens/s (batch ' + str(args.batch) + ', aggregate)':42s} ours "
                  f"{a:9.3f}   llama {b:9.3f}   ratio {ratio(a, b):6.2f}")
        if "interleaved" in sections:
            interleaved_section(args, threads, log_dir, cache_ram)
        sys.stdout.flush()


def single_section(args, threads, log_dir):
    """First turn, decode at batch 1, later turns: both servers, one conversation."""
    res = {}
    for who in ("ours", "llama"):
        s = start_ours(args, threads, log_dir) if who == "ours" else \
            start_llama(args, threads, 1, 0, log_dir)
        try:
            res[who] = single_conversation(s, args, f"t{threads}")
        finally:
            s.close()
    o, l = res["ours"], res["llama"]
    print(f"first turn: prompt tokens ours {o['prompt_tokens']} / llama {l['prompt_tokens']}")
    rows = [("first-turn TTFT (s)", o["first_ttft_s"], l["first_ttft_s"], False),
            ("prefill tokens/s", o["prefill_tok_s"], l["prefill_tok_s"], True),
            ("decode tokens/s (batch 1)", o["decode_tok_s"], l["decode_tok_s"], True),
            ("later-turn TTFT (s, +~64 tokens, median)", o["later_ttft_s"], l["later_ttft_s"],
             False)]
    for label, a, b, higher_better in rows:
        r = ratio(a, b) if higher_better else ratio(b, a)
        print(f"  {label:42s} ours {a:9.3f}   llama {b:9.3f}   ratio {r:6.2f}")


def interleaved_section(args, threads, log_dir, cache_ram):
    """8 interleaved conversations: ours, llama with --cache-ram, llama with 2 slots only."""
    il = {}
    s = start_ours(args, threads, log_dir)
    try:
        il["ours"] = interleaved(s, args, f"il{threads}")
    finally:
        s.close()
    for key, slots, cr in (("llama cache-ram", 2, cache_ram), ("llama 2 slots", 2, 0)):
        s = start_llama(args, threads, slots, cr, log_dir)
        try:
            il[key] = interleaved(s, args, f"il{threads}")
        finally:
            s.close()
    print(f"  {args.conversations} interleaved conversations, turns 2-{args.turns} TTFT:")
    for key, v in il.items():
        extra = f", cached tokens {v['cached_tokens']}" if key == "ours" else ""
        line = f"    {key:18s} p50 {v['p50_s']:7.3f} s  p90 {v['p90_s']:7.3f} s{extra}"
        if key != "ours":
            line += f"   ratio (llama/ours p50) {ratio(v['p50_s'], il['ours']['p50_s']):6.2f}"
        print(line)


if __name__ == "__main__":
    main()
