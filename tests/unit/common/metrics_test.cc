#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"

namespace hc {
namespace {

// Plain HTTP/1.0 GET on loopback; returns the body.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string resp;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) resp.append(buf, n);
  close(fd);
  const size_t body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

// A client that sends its request a byte at a time (and stalls) must not keep
// a scrape from being answered, and is itself still served when it finishes.
TEST(MetricsTest, ASlowClientDoesNotStallAScrape) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge().Name("hc_test_up").Help("Up").Register(*registry).Add({}).Set(1);
  auto server = MetricsServer::Start("127.0.0.1", 0, registry).value();
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  std::vector<int> slow;
  for (int i = 0; i < 4; ++i) {
    slow.push_back(Connect(server->port()));
    ASSERT_EQ(write(slow.back(), request.data(), 5), 5);  // "GET /" and then nothing
  }
  // Scrapes complete while the slow clients hold their connections.
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(HttpGet(server->port(), "/metrics").find("hc_test_up 1"), std::string::npos);
  }
  // The slow clients finish their requests and are answered too.
  for (int fd : slow) {
    ASSERT_EQ(write(fd, request.data() + 5, request.size() - 5),
              static_cast<ssize_t>(request.size() - 5));
    std::string resp;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) resp.append(buf, n);
    close(fd);
    EXPECT_NE(resp.find("hc_test_up 1"), std::string::npos) << resp;
  }
}

TEST(MetricsTest, ScrapeServesRegisteredMetricsAndPassesPromtool) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& lookups = prometheus::BuildCounter()
                      .Name("hc_test_lookups_total")
                      .Help("Lookups by result")
                      .Register(*registry);
  lookups.Add({{"result", "hit"}}).Increment(3);
  lookups.Add({{"result", "miss"}}).Increment();
  prometheus::BuildGauge()
      .Name("hc_test_blocks")
      .Help("Blocks by state")
      .Register(*registry)
      .Add({{"state", "free"}})
      .Set(7);
  auto& hist = prometheus::BuildHistogram()
                   .Name("hc_test_commit_duration_seconds")
                   .Help("Commit latency")
                   .Register(*registry)
                   .Add({}, FastOpBuckets());
  hist.Observe(2e-5);

  auto server = MetricsServer::Start("127.0.0.1", 0, registry).value();
  ASSERT_GT(server->port(), 0);
  const std::string text = HttpGet(server->port(), "/metrics");
  EXPECT_NE(text.find("hc_test_lookups_total{result=\"hit\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("hc_test_blocks{state=\"free\"} 7"), std::string::npos);
  EXPECT_NE(text.find("hc_test_commit_duration_seconds_count 1"), std::string::npos);

  const std::string path = ::testing::TempDir() + "/metrics.txt";
  std::ofstream(path) << text;
  const std::string cmd = "promtool check metrics < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << "promtool check metrics failed:\n" << out;
}

TEST(MetricsTest, OtherPathsAndMethodsAreRefusedAndTheServerKeepsServing) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge().Name("hc_test_up").Help("Up").Register(*registry).Add({}).Set(1);
  auto server = MetricsServer::Start("127.0.0.1", 0, registry).value();
  EXPECT_EQ(HttpGet(server->port(), "/nothing"), "no such path: /nothing\n");
  EXPECT_NE(HttpGet(server->port(), "/metrics?x=1").find("hc_test_up 1"), std::string::npos);
  EXPECT_NE(HttpGet(server->port(), "/metrics").find("hc_test_up 1"), std::string::npos);
}

TEST(MetricsTest, UnbindableAddressIsUnavailable) {
  auto registry = std::make_shared<prometheus::Registry>();
  EXPECT_EQ(MetricsServer::Start("203.0.113.1", 0, registry).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(MetricsTest, BucketsAreIncreasing) {
  for (const auto& b : {LatencyBuckets(), FastOpBuckets()}) {
    ASSERT_FALSE(b.empty());
    for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
  }
  EXPECT_DOUBLE_EQ(FastOpBuckets().front(), 1e-6);
}

}  // namespace
}  // namespace hc
