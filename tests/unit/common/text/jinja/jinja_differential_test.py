#!/usr/bin/env python3
"""Differential test: hc::jinja against Python's jinja2 rendering exactly as
transformers' apply_chat_template does (transformers' render_jinja_template:
same environment, globals, tojson and arguments).

For every template in tests/data/chat_templates, 300 generated conversations
(system or not, 1-12 messages, tool calls and tool results where tools are
given, add_generation_prompt true/false, Unicode, special-token text and
template syntax inside contents, empty contents) are rendered by both; the
texts must be identical, and so must the failures (a raise_exception message
word for word). Deterministic: the generator is seeded per template.
"""
import argparse
import json
import os
import random
import subprocess
import sys

from transformers.utils.chat_template_utils import render_jinja_template
import jinja2

CASES_PER_TEMPLATE = 300
SPECIAL_TOKENS = {
    "bos_token": "<|bos|>",
    "eos_token": "<|eos|>",
    "unk_token": "<|unk|>",
    "pad_token": "<|pad|>",
}
PIECES = [
    "hello", "world", "What is 2+2?", "The answer is 4.", "  leading", "trailing  ",
    "\n", "\n\n", "\t", " ", "é", "naïve café", "中文字符", "日本語", "🎉", "👩‍💻", "مرحبا",
    "\u3000", "\u00a0", "\x1c", "<|end_of_text|>", "<|start_of_role|>", "<|im_end|>", "<|im_start|>",
    "<|eot_id|>", "<think>", "</think>", "/think", "/no_think", "<tool_call>", "<tool_response>",
    "</tool_response>", "{{ messages }}", "{% if %}", "'quoted'", '"double"', "back\\slash",
    "<SPECIAL_12>", "[INST]", "<｜User｜>", "a" * 40, "0", "None", "True",
]


def random_text(rng):
    if rng.random() < 0.08:
        return ""
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6)))


def random_tool(rng, i):
    props = {}
    for k in range(rng.randint(0, 3)):
        props[f"arg{k}"] = {"type": rng.choice(["string", "integer", "number", "boolean"]),
                            "description": random_text(rng)}
    fn = {"name": f"tool_{i}", "description": random_text(rng),
          "parameters": {"type": "object", "properties": props,
                         "required": sorted(props)[: rng.randint(0, len(props))]}}
    if rng.random() < 0.3:
        fn["strict"] = rng.choice([True, False, None, 1.5, 3])
    return {"type": "function", "function": fn}


def random_arguments(rng):
    args = {f"arg{k}": rng.choice([random_text(rng), rng.randint(-5, 1000), 0.25, 1e20, True, None,
                                   [1, "x"], {"nested": "é"}]) for k in range(rng.randint(0, 3))}
    return json.dumps(args, ensure_ascii=False) if rng.random() < 0.4 else args


def tool_call(rng, tools):
    name = rng.choice(tools)["function"]["name"] if tools else "lookup"
    call_id = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(9))
    return {"type": "function", "id": call_id,
            "function": {"name": name, "arguments": random_arguments(rng)}}


def random_case(rng):
    tools = [random_tool(rng, i) for i in range(rng.randint(1, 3))] if rng.random() < 0.3 else None
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": random_text(rng)})
    n = rng.randint(1, 12)
    if rng.random() < 0.1:  # anything goes: exercises the templates' own checks
        for _ in range(n):
            messages.append({"role": rng.choice(["user", "assistant", "system", "tool"]),
                             "content": random_text(rng)})
    else:
        role = "user"
        while len(messages) < n:
            if role == "assistant" and tools and rng.random() < 0.4:
                calls = [tool_call(rng, tools) for _ in range(rng.randint(1, 2))]
                msg = {"role": "assistant", "content": random_text(rng) if rng.random() < 0.5 else "",
                       "tool_calls": calls}
                messages.append(msg)
                for call in calls:
                    messages.append({"role": "tool", "tool_call_id": call["id"],
                                     "content": random_text(rng)})
                role = "assistant"
                continue
            content = random_text(rng)
            if role == "assistant" and rng.random() < 0.3:
                content = "<think>" + random_text(rng) + "</think>" + content
            messages.append({"role": role, "content": content})
            role = "assistant" if role == "user" else "user"
    context = {"messages": messages, "tools": tools, "documents": None,
               "add_generation_prompt": rng.random() < 0.5}
    if rng.random() < 0.3:
        context["enable_thinking"] = rng.random() < 0.5
    context.update(SPECIAL_TOKENS)
    return context


def python_render(source, context):
    kwargs = {k: v for k, v in context.items()
              if k not in ("messages", "tools", "documents", "add_generation_prompt")}
    try:
        rendered, _ = render_jinja_template(
            conversations=[context["messages"]], tools=context["tools"], documents=context["documents"],
            chat_template=source, add_generation_prompt=context["add_generation_prompt"], **kwargs)
        return {"text": rendered[0]}
    except jinja2.TemplateError as e:
        if type(e) is jinja2.TemplateError:  # raise_exception
            return {"error": str(e), "raised": True}
        return {"error": f"{type(e).__name__}: {e}"}
    except Exception as e:  # TypeError and the like: any error will do
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--templates", required=True)
    args = ap.parse_args()
    names = sorted(f for f in os.listdir(args.templates) if f.endswith(".jinja"))
    assert names, "no templates"
    failures = 0
    for name in names:
        path = os.path.join(args.templates, name)
        with open(path, encoding="utf-8") as f:
            source = f.read()
        rng = random.Random(name)
        contexts = [random_case(rng) for _ in range(CASES_PER_TEMPLATE)]
        expected = [python_render(source, c) for c in contexts]
        stdin = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in contexts)
        proc = subprocess.run([args.driver, path], input=stdin.encode(), capture_output=True,
                              check=True)
        got = [json.loads(line) for line in proc.stdout.decode().splitlines()]
        assert len(got) == len(contexts), (name, len(got))
        ok = errors = 0
        for i, (want, have) in enumerate(zip(expected, got)):
            same = ("text" in want and have.get("text") == want["text"]) or (
                "error" in want and "error" in have and
                (not want.get("raised") or have["error"] == want["error"]))
            if "error" in want:
                errors += 1
            if same:
                ok += 1
                continue
            failures += 1
            if failures <= 5:
                print(f"MISMATCH {name} case {i}\n  context: {json.dumps(contexts[i], ensure_ascii=False)}"
                      f"\n  jinja2:  {json.dumps(want, ensure_ascii=False)}"
                      f"\n  hc:      {json.dumps(have, ensure_ascii=False)}")
        print(f"{name}: {ok}/{len(contexts)} identical ({errors} expected errors)")
    if failures:
        print(f"FAILED: {failures} mismatches")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
