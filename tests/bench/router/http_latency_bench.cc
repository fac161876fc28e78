// Latency the HTTP front door (router/http) adds to a streamed turn, side by
// side with the gRPC API in one run: the same turns (a conversation's first
// turn, "hello", then its second, "hello" again after the reply; 8-token
// streamed replies from an in-process fake worker) sent
//   - directly to the worker (first turns only: the baseline),
//   - through the router over gRPC (ChatService.Complete),
//   - through the router over HTTP/SSE (POST /v1/chat/completions, stream,
//     on a kept-alive connection, as SDKs do): one-shot (first turns), and
//     with an X-Conversation-Id (the client sends the whole history; the
//     router runs a new conversation, and one that extends what it
//     committed, without asking the ledger first).
// Interleaved, so every path sees the same machine state; prints p50/p99 of
// each, the added latency and the ratio. Goal: HTTP p50 <= gRPC p50 + 0.2 ms.
#include <cstdio>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "router/http/openai_server.h"
#include "tests/bench/router/latency_turns.h"
#include "tests/unit/router/http/http_test_client.h"

namespace {

// The streamed reply's text, or nullopt when the reply is not a whole stream.
std::optional<std::string> StreamedText(const hc::router::http::testing::HttpTestClient::Reply& r) {
  if (r.status != 200 || r.body.find("data: [DONE]") == std::string::npos) {
    std::fprintf(stderr, "unexpected reply %d: %s\n", r.status, r.body.c_str());
    return std::nullopt;
  }
  std::string text;
  for (size_t at = r.body.find("data: {"); at != std::string::npos;
       at = r.body.find("data: {", at + 1)) {
    const size_t end = r.body.find("\n\n", at);
    const auto chunk = nlohmann::json::parse(r.body.substr(at + 6, end - at - 6));
    for (const auto& c : chunk["choices"]) {
      if (c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
    }
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hc::router;
  using bench::Percentile;
  const int turns = bench::SetUpLatencyBench(argc, argv);
  testing::RouterHarness h(1);
  ByteTextCodec codec;
  http::OpenAiServerOptions ho;
  ho.model_name = "bench";
  auto api = http::OpenAiServer::Start(ho, h.server().InProcessChannel(), &codec, &h.pool());
  if (!api.ok()) {
    std::fprintf(stderr, "%s\n", api.status().ToString().c_str());
    return 1;
  }
  http::testing::HttpTestClient client((*api)->port());
  bench::LatencyTurns run(h);
  const auto body = [](const nlohmann::json& messages) {
    return nlohmann::json{{"model", "bench"}, {"messages", messages}, {"stream", true}}.dump();
  };
  const nlohmann::json hello = {{"role", "user"}, {"content", "hello"}};

  // Milliseconds of one HTTP turn; its reply's text in `text`.
  const auto timed_post = [&client](const std::string& body, const std::string& headers,
                                    std::string* text) -> std::optional<double> {
    const absl::Time t0 = absl::Now();
    const auto reply = client.Post("/v1/chat/completions", body, headers);
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    std::optional<std::string> t = StreamedText(reply);
    if (!t.has_value()) return std::nullopt;
    *text = *std::move(t);
    return ms;
  };

  std::vector<double> direct, grpc1, grpc2, one_shot, conv1, conv2;
  for (int i = 0; i < turns + 200; ++i) {
    const std::string id = "bench-" + std::to_string(i);
    const std::string conv_header = absl::StrCat("X-Conversation-Id: ", id, "-h\r\n");
    std::string text, reply;
    const std::optional<double> d = run.Direct(id + "-d");
    const std::optional<double> g1 = run.Routed(id + "-g");
    const std::optional<double> o = timed_post(body(nlohmann::json::array({hello})), "", &text);
    const std::optional<double> c1 =
        timed_post(body(nlohmann::json::array({hello})), conv_header, &reply);
    const std::optional<double> g2 = run.Routed(id + "-g");
    if (!d || !g1 || !o || !c1 || !g2) {
      std::fprintf(stderr, "turn %d failed\n", i);
      return 1;
    }
    const nlohmann::json second =
        nlohmann::json::array({hello, {{"role", "assistant"}, {"content", reply}}, hello});
    const std::optional<double> c2 = timed_post(body(second), conv_header, &text);
    if (!c2) {
      std::fprintf(stderr, "second turn %d failed\n", i);
      return 1;
    }
    if (i >= 200) {  // warm-up done
      direct.push_back(*d);
      grpc1.push_back(*g1);
      grpc2.push_back(*g2);
      one_shot.push_back(*o);
      conv1.push_back(*c1);
      conv2.push_back(*c2);
    }
  }
  const auto print = [](const char* name, const std::vector<double>& v) {
    std::printf("%-44s p50 %.3f ms  p99 %.3f ms\n", name, Percentile(v, 0.5), Percentile(v, 0.99));
  };
  print("direct to worker:", direct);
  print("router, gRPC, first turn:", grpc1);
  print("router, gRPC, second turn:", grpc2);
  print("router, HTTP/SSE one-shot:", one_shot);
  print("router, HTTP/SSE X-Conversation-Id, first turn:", conv1);
  print("router, HTTP/SSE X-Conversation-Id, second turn:", conv2);
  const double g1 = Percentile(grpc1, 0.5), g2 = Percentile(grpc2, 0.5);
  const double o = Percentile(one_shot, 0.5), c1 = Percentile(conv1, 0.5),
               c2 = Percentile(conv2, 0.5);
  const bool met = o <= g1 + 0.2 && c1 <= g1 + 0.2 && c2 <= g2 + 0.2;
  std::printf(
      "SUMMARY HTTP/SSE vs gRPC per streamed turn (%d turns, 8 tokens each), p50: one-shot +%.3f "
      "ms (ratio %.2f), X-Conversation-Id first turn +%.3f ms (ratio %.2f), second turn +%.3f ms "
      "(ratio %.2f); router adds %.3f ms over direct on gRPC; goal HTTP p50 <= gRPC p50 + 0.2 "
      "ms: %s\n",
      turns, o - g1, o / g1, c1 - g1, c1 / g1, c2 - g2, c2 / g2, g1 - Percentile(direct, 0.5),
      met ? "met" : "NOT met");
  return 0;
}
