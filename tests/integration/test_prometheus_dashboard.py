"""The Grafana dashboard's hit-rate and commit-latency queries, evaluated by a
real Prometheus scraping a real router and two fresh workers, agree with what
the clients saw (tests/integration/prometheus_dashboard_test.sh does the
Prometheus part; this test provides the stack and the turns)."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hc_harness as h  # noqa: E402

TURNS = """
import os, sys
sys.path.insert(0, {harness_dir!r})
import hc_harness as h
chat = h.chat_pb2_grpc.ChatServiceStub(h.grpc.insecure_channel({router!r}))
with open(os.environ["HC_USAGE_FILE"], "a") as usage:
    for conv in ("d1", "d2", "d3"):
        for turn in range(3):
            _, _, _, done = h.complete(chat, conv, messages=[("user", "turn %d" % turn)],
                                       max_tokens=4, temperature=0.0, ignore_eos=True)
            usage.write("%d %d\\n" % (done.usage.prompt_tokens, done.usage.cached_tokens))
"""


class PrometheusDashboardTest(unittest.TestCase):
    def test_dashboard_queries_match_what_clients_saw(self):
        with h.Stack(num_workers=2) as stack:
            script = TURNS.format(harness_dir=os.path.dirname(os.path.abspath(__file__)),
                                  router=stack.router.address)
            cmd = [os.path.join(h.REPO, "tests/integration/prometheus_dashboard_test.sh"),
                   "--router", f"127.0.0.1:{stack.router.metrics_port}",
                   "--turns-cmd", f"{sys.executable} -c {_quote(script)}",
                   "--expect-turns", "9",
                   "--dashboard", os.path.join(h.REPO, "deploy/grafana/hybridcache.json")]
            for w in stack.workers:
                cmd += ["--worker", f"127.0.0.1:{w.metrics_port}"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=h.REPO)
            self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-4000:])


def _quote(s):
    import shlex
    return shlex.quote(s)


if __name__ == "__main__":
    unittest.main()
