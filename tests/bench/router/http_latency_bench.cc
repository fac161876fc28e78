// Latency the HTTP front door (router/http) adds to a streamed turn, side by
// side with the gRPC API in one run: the same turn (a new conversation,
// "hello", an 8-token streamed reply from an in-process fake worker) sent
//   - directly to the worker (the baseline),
//   - through the router over gRPC (ChatService.Complete),
//   - through the router over HTTP/SSE (POST /v1/chat/completions, stream,
//     on a kept-alive connection, as SDKs do), one-shot and with an
//     X-Conversation-Id (which adds the GetConversation that plans the turn).
// Interleaved, so every path sees the same machine state; prints p50/p99 of
// each and the added latency. Goal: HTTP p50 <= gRPC p50 + 0.2 ms.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "router/http/openai_server.h"
#include "tests/bench/router/latency_turns.h"

namespace hc::router {
namespace {
namespace v1 = hybridcache::v1;

// A minimal HTTP/1.1 client on one kept-alive connection: sends a POST and
// reads the chunked SSE reply through its last chunk.
class HttpClient {
 public:
  explicit HttpClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    HC_CHECK(connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) << "connect";
  }
  ~HttpClient() { close(fd_); }

  // True when the stream ended with data: [DONE].
  bool PostStream(const std::string& body, const std::string& extra_headers) {
    const std::string req = absl::StrCat(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n",
        extra_headers, "Content-Length: ", body.size(), "\r\n\r\n", body);
    if (write(fd_, req.data(), req.size()) != static_cast<ssize_t>(req.size())) return false;
    std::string in;
    char buf[16384];
    // The chunked reply ends with the zero-length chunk (an error reply is
    // not chunked: it ends with its JSON body).
    while (in.find("\r\n0\r\n\r\n") == std::string::npos &&
           !(in.find("chunked") == std::string::npos && in.size() > 4 && in.back() == '}')) {
      const ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) return false;
      in.append(buf, static_cast<size_t>(n));
    }
    if (in.find("data: [DONE]") != std::string::npos) return true;
    std::fprintf(stderr, "unexpected reply (%zu bytes): ...%s\n", in.size(),
                 in.substr(in.size() > 700 ? in.size() - 700 : 0).c_str());
    return false;
  }

 private:
  int fd_ = -1;
};

}  // namespace
}  // namespace hc::router

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
  HttpClient client((*api)->port());
  bench::LatencyTurns run(h);
  const std::string body =
      R"({"model":"bench","messages":[{"role":"user","content":"hello"}],"stream":true})";

  std::vector<double> direct, grpc_turn, http_one_shot, http_conv;
  for (int i = 0; i < turns + 200; ++i) {
    const std::string id = "bench-" + std::to_string(i);
    const std::optional<double> d = run.Direct(id + "-d");
    const std::optional<double> g = run.Routed(id + "-g");
    if (!d.has_value() || !g.has_value()) return 1;
    absl::Time t0 = absl::Now();
    if (!client.PostStream(body, "")) {
      std::fprintf(stderr, "one-shot HTTP turn %d failed\n", i);
      return 1;
    }
    const double o = absl::ToDoubleMilliseconds(absl::Now() - t0);
    t0 = absl::Now();
    if (!client.PostStream(body, absl::StrCat("X-Conversation-Id: ", id, "-h\r\n"))) {
      std::fprintf(stderr, "HTTP turn %d failed\n", i);
      return 1;
    }
    const double c = absl::ToDoubleMilliseconds(absl::Now() - t0);
    if (i >= 200) {  // warm-up done
      direct.push_back(*d);
      grpc_turn.push_back(*g);
      http_one_shot.push_back(o);
      http_conv.push_back(c);
    }
  }
  const auto print = [](const char* name, const std::vector<double>& v) {
    std::printf("%-34s p50 %.3f ms  p99 %.3f ms\n", name, Percentile(v, 0.5), Percentile(v, 0.99));
  };
  print("direct to worker:", direct);
  print("router, gRPC:", grpc_turn);
  print("router, HTTP/SSE one-shot:", http_one_shot);
  print("router, HTTP/SSE X-Conversation-Id:", http_conv);
  const double g50 = Percentile(grpc_turn, 0.5);
  std::printf(
      "SUMMARY HTTP/SSE vs gRPC per streamed turn (%d turns, 8 tokens each): one-shot p50 +%.3f "
      "ms, with X-Conversation-Id p50 +%.3f ms over gRPC (router adds %.3f ms over direct on "
      "gRPC); goal HTTP p50 <= gRPC p50 + 0.2 ms\n",
      turns, Percentile(http_one_shot, 0.5) - g50, Percentile(http_conv, 0.5) - g50,
      g50 - Percentile(direct, 0.5));
  return 0;
}
