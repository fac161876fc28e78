// The hc-router and hcctl binaries end to end: start on port 0 (ports read
// from the log line), serve a turn to a fake worker through hcctl, drain on
// SIGTERM with exit 0, and restart from the same --ledger_dir with the
// conversation intact.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "hybridcache/v1/chat.grpc.pb.h"
#include "tests/unit/router/service/fake_worker.h"

namespace hc::router {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

struct Router {
  pid_t pid = -1;
  int log_fd = -1;
  std::string address;
  std::string metrics;
};

Router StartRouter(const std::string& worker, const std::string& ledger_dir,
                   const std::vector<std::string>& extra_flags = {}) {
  std::vector<std::string> args = {HC_ROUTER_BIN,           "--port=0",
                                   "--metrics_port=0",      "--workers=" + worker,
                                   "--model=bytes",         "--ledger_dir=" + ledger_dir,
                                   "--ledger_fsync=always", "--drain_timeout=2s"};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  Router r;
  r.pid = ::fork();
  if (r.pid == 0) {
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execv(HC_ROUTER_BIN, argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  r.log_fd = fds[0];
  std::string log;
  const std::regex line("hc-router listening on (\\S+) metrics (\\S+)");
  std::smatch m;
  char buf[1024];
  while (!std::regex_search(log, m, line)) {
    const ssize_t n = ::read(r.log_fd, buf, sizeof(buf));
    if (n <= 0) {
      ADD_FAILURE() << "hc-router exited before listening:\n" << log;
      return r;
    }
    log.append(buf, static_cast<size_t>(n));
  }
  r.address = m[1];
  r.metrics = m[2];
  return r;
}

int Stop(Router& r) {
  ::kill(r.pid, SIGTERM);
  int status = 0;
  ::waitpid(r.pid, &status, 0);
  ::close(r.log_fd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Runs hcctl; returns its exit code and stdout.
int Hcctl(const std::string& args, std::string* out) {
  const std::string cmd = "bash -c \"" + std::string(HC_HCCTL_BIN) + " " + args + " 2>&1\"";
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// GET http://<endpoint>/metrics over a plain socket.
std::string FetchMetrics(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  ::inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &addr.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "";
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return "";
  }
  std::string body;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) body.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return body;
}

TEST(RouterBinaryTest, ServesTurnsThroughHcctlDrainsOnSigtermAndKeepsTheLedgerDir) {
  testing::FakeWorker worker(testing::FakeWorkerOptions{});
  worker.Serve();
  char tmpl[] = "/tmp/hc-router-bin-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);

  Router r = StartRouter(worker.address(), dir);
  ASSERT_FALSE(r.address.empty());
  EXPECT_NE(r.metrics, "127.0.0.1:9090");
  std::string out;
  ASSERT_EQ(
      Hcctl("send --router " + r.address + " --conversation c1 --salt s --message hello", &out), 0)
      << out;
  EXPECT_NE(out.find("\xF0\x9F\x98\x80"), std::string::npos) << out;
  EXPECT_NE(out.find("round 1"), std::string::npos) << out;
  EXPECT_NE(out.find("cached 0"), std::string::npos) << out;
  ASSERT_EQ(
      Hcctl("send --router " + r.address + " --conversation c1 --salt s --message again", &out), 0)
      << out;
  EXPECT_NE(out.find("round 2"), std::string::npos) << out;
  EXPECT_EQ(out.find("cached 0"), std::string::npos) << out;  // the second turn hit the cache
  const std::string metrics = FetchMetrics(r.metrics);
  EXPECT_NE(metrics.find("hc_router_requests_total{code=\"OK\"} 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("hc_router_routing_decisions_total{decision=\"sticky\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("hc_router_workers{state=\"healthy\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("hc_router_time_to_first_token_seconds_count 2"), std::string::npos);
  EXPECT_EQ(Stop(r), 0);

  // A new router process replays the ledger from the directory.
  r = StartRouter(worker.address(), dir);
  ASSERT_EQ(Hcctl("get --router " + r.address + " --conversation c1 --salt s", &out), 0) << out;
  EXPECT_NE(out.find("round 2"), std::string::npos) << out;
  EXPECT_NE(out.find("user: again"), std::string::npos) << out;
  ASSERT_EQ(Hcctl("delete --router " + r.address + " --conversation c1 --salt s", &out), 0) << out;
  EXPECT_EQ(Hcctl("get --router " + r.address + " --conversation c1 --salt s", &out), 1);
  EXPECT_NE(out.find("NOT_FOUND"), std::string::npos) << out;
  // Interactive chat: one turn per stdin line.
  ASSERT_EQ(
      Hcctl("chat --router " + r.address + " --conversation c2 < <(printf 'first\\nsecond\\n')",
            &out),
      0)
      << out;
  EXPECT_NE(out.find("round 1"), std::string::npos) << out;
  EXPECT_NE(out.find("round 2"), std::string::npos) << out;
  EXPECT_EQ(Hcctl("send --router " + r.address + " --conversation 'bad id' --message x", &out), 1);
  EXPECT_NE(out.find("INVALID_ARGUMENT"), std::string::npos) << out;
  EXPECT_EQ(Stop(r), 0);
  std::filesystem::remove_all(dir);
}

// grpc.health.v1 Check of the router (service "" unless told otherwise).
HealthCheckResponse::ServingStatus RouterHealth(const std::string& address,
                                                const std::string& service = "") {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  HealthCheckRequest req;
  req.set_service(service);
  HealthCheckResponse resp;
  const grpc::Status s = stub->Check(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.status();
}

// Readiness: a router whose workers have not answered a probe yet must not
// look ready (Kubernetes would send it traffic it can only refuse); it turns
// SERVING once a worker has been healthy.
TEST(RouterBinaryTest, HealthIsNotServingUntilAWorkerHasBeenHealthy) {
  testing::FakeWorker worker(testing::FakeWorkerOptions{});
  worker.Serve();
  worker.SetLoadFails(true);  // up, but its probes fail: not healthy yet
  char tmpl[] = "/tmp/hc-router-bin-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);

  Router r = StartRouter(worker.address(), dir, {"--probe_interval=50ms"});
  ASSERT_FALSE(r.address.empty());
  // The first probe round ran before the port opened, and failed.
  EXPECT_EQ(RouterHealth(r.address), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(RouterHealth(r.address, hybridcache::v1::ChatService::service_full_name()),
            HealthCheckResponse::NOT_SERVING);
  // A turn sent meanwhile is not refused: with no healthy worker the router
  // tries the least recently failed one (whose Execute works here).
  std::string out;
  ASSERT_EQ(Hcctl("send --router " + r.address + " --conversation c1 --message hello", &out), 0)
      << out;
  EXPECT_NE(out.find("round 1"), std::string::npos) << out;

  worker.SetLoadFails(false);
  // Waits for the router's next probe rounds (every 50 ms); the deadline only
  // bounds a failure.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (RouterHealth(r.address) != HealthCheckResponse::SERVING &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(RouterHealth(r.address), HealthCheckResponse::SERVING);
  EXPECT_EQ(RouterHealth(r.address, hybridcache::v1::ChatService::service_full_name()),
            HealthCheckResponse::SERVING);
  EXPECT_EQ(Stop(r), 0);
  std::filesystem::remove_all(dir);
}

TEST(RouterBinaryTest, PerSaltCapRefusesANewConversationAndCountsItInTheMetrics) {
  testing::FakeWorker worker(testing::FakeWorkerOptions{});
  worker.Serve();
  char tmpl[] = "/tmp/hc-router-bin-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  Router r = StartRouter(worker.address(), dir,
                         {"--max_conversations_per_salt=1", "--conversation_ttl=1h"});
  ASSERT_FALSE(r.address.empty());
  std::string out;
  ASSERT_EQ(Hcctl("send --router " + r.address + " --conversation c1 --salt s --message hi", &out),
            0)
      << out;
  EXPECT_EQ(Hcctl("send --router " + r.address + " --conversation c2 --salt s --message hi", &out),
            1);
  EXPECT_NE(out.find("RESOURCE_EXHAUSTED"), std::string::npos) << out;
  EXPECT_NE(out.find("max_conversations_per_salt"), std::string::npos) << out;
  ASSERT_EQ(Hcctl("send --router " + r.address + " --conversation c2 --salt t --message hi", &out),
            0)
      << out;
  ASSERT_EQ(
      Hcctl("send --router " + r.address + " --conversation c1 --salt s --message again", &out), 0)
      << out;
  // The stats loop polls the ledger every 2 s: wait for the next poll.
  std::string metrics;
  for (absl::Time deadline = absl::Now() + absl::Seconds(30); absl::Now() < deadline;) {
    metrics = FetchMetrics(r.metrics);
    if (metrics.find("hc_router_conversations_refused_total 1") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_NE(metrics.find("hc_router_conversations_refused_total 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("hc_router_conversations_expired_total 0"), std::string::npos) << metrics;
  EXPECT_EQ(Stop(r), 0);
  std::filesystem::remove_all(dir);
}

// Reads the router's log until `needle` appears (false after `timeout`).
bool AwaitLog(Router& r, const std::string& needle, absl::Duration timeout) {
  std::string log;
  const absl::Time deadline = absl::Now() + timeout;
  char buf[1024];
  while (log.find(needle) == std::string::npos) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{r.log_fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0) continue;
    const ssize_t n = ::read(r.log_fd, buf, sizeof(buf));
    if (n <= 0) return false;
    log.append(buf, static_cast<size_t>(n));
  }
  return true;
}

TEST(RouterBinaryTest, ApiKeysFromTheKeysFileAreRequiredAndReloadedOnSighup) {
  testing::FakeWorker worker(testing::FakeWorkerOptions{});
  worker.Serve();
  char tmpl[] = "/tmp/hc-router-bin-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::string out;
  // hcctl hash-key makes the file's entries.
  ASSERT_EQ(Hcctl("hash-key first-key", &out), 0) << out;
  const std::string first_hash = out.substr(0, out.find('\n'));
  ASSERT_EQ(first_hash.size(), 64u) << out;
  const auto write_keys = [&](const std::string& hash) {
    std::ofstream(dir + "/keys.tmp")
        << R"({"keys": [{"sha256": ")" << hash << R"(", "tenant": "t", "salts": ["s"]}]})";
    std::filesystem::rename(dir + "/keys.tmp", dir + "/keys.json");
  };
  write_keys(first_hash);
  Router r =
      StartRouter(worker.address(), dir + "/ledger", {"--api_keys_file=" + dir + "/keys.json"});
  ASSERT_FALSE(r.address.empty());
  const std::string send = "send --router " + r.address + " --conversation c --salt s --message hi";
  EXPECT_EQ(Hcctl(send, &out), 1);
  EXPECT_NE(out.find("UNAUTHENTICATED: missing or invalid API key"), std::string::npos) << out;
  ASSERT_EQ(Hcctl("--api_key=first-key " + send, &out), 0) << out;
  EXPECT_EQ(Hcctl("--api_key=first-key " + send + " --salt other", &out), 1);
  EXPECT_NE(out.find("PERMISSION_DENIED"), std::string::npos) << out;

  // A new key file, then SIGHUP: the new key works, the old one no longer.
  ASSERT_EQ(Hcctl("hash-key second-key", &out), 0) << out;
  write_keys(out.substr(0, out.find('\n')));
  ::kill(r.pid, SIGHUP);
  ASSERT_TRUE(AwaitLog(r, "API keys reloaded (SIGHUP)", absl::Seconds(30)));
  EXPECT_EQ(Hcctl("--api_key=first-key " + send, &out), 1) << out;
  ASSERT_EQ(Hcctl("--api_key=second-key " + send, &out), 0) << out;
  // hcctl also takes the key from $HC_API_KEY.
  ::setenv("HC_API_KEY", "second-key", 1);
  EXPECT_EQ(Hcctl(send, &out), 0) << out;
  ::unsetenv("HC_API_KEY");
  EXPECT_EQ(Stop(r), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hc::router
