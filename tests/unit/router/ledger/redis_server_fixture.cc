#include "tests/unit/router/ledger/redis_server_fixture.h"

#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

namespace hc::router::testing {
namespace {

// redis-server's log line when its port is taken (it then exits).
constexpr char kPortTaken[] = "Address already in use";
constexpr char kReady[] = "Ready to accept connections";

}  // namespace

int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

RedisServer::RedisServer(std::vector<std::string> extra_args, RedisServerOptions options) {
  std::string binary = options.binary;
  if (binary.empty()) {
    const char* env = std::getenv("HC_REDIS_SERVER");
    binary = env != nullptr ? env : "/usr/bin/redis-server";
  }
  char tmpl[] = "/tmp/hc-redis-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    error_ = std::string("mkdtemp: ") + std::strerror(errno);
    return;
  }
  dir_ = tmpl;
  // The port is picked free, then bound by redis-server: another process may
  // take it in between. redis-server then says so and exits, and the next
  // attempt picks another port. A fixed port gets one attempt.
  const int attempts = options.port > 0 ? 1 : std::max(1, options.max_attempts);
  std::string log;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    const int port = options.port > 0    ? options.port
                     : options.pick_port ? options.pick_port()
                                         : FreeLoopbackPort();
    log.clear();
    switch (StartOnce(binary, port, extra_args, &log)) {
      case Start::kReady:
        port_ = port;
        return;
      case Start::kPortTaken:
        continue;
      case Start::kFailed:
        error_ = "redis-server (" + binary + ") did not start on port " + std::to_string(port) +
                 ": " + (log.empty() ? std::string("no output") : log);
        return;
    }
  }
  error_ = "redis-server (" + binary + ") found its port taken on each of " +
           std::to_string(attempts) + " attempt(s); last log: " + log;
}

RedisServer::Start RedisServer::StartOnce(const std::string& binary, int port,
                                          const std::vector<std::string>& extra_args,
                                          std::string* log) {
  if (port <= 0) {
    *log = "no free loopback port";
    return Start::kFailed;
  }
  // Readiness: redis-server logs "Ready to accept connections" on stdout;
  // read its log through a pipe until that line (or EOF: it failed).
  int fds[2];
  if (::pipe(fds) != 0) {
    *log = std::string("pipe: ") + std::strerror(errno);
    return Start::kFailed;
  }
  const std::string port_arg = std::to_string(port);
  std::vector<std::string> args = {
      binary, "--port", port_arg, "--bind",      "127.0.0.1", "--save",     "",      "--appendonly",
      "no",   "--dir",  dir_,     "--daemonize", "no",        "--loglevel", "notice"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);  // exec failures and early errors reach the log too
    ::close(fds[0]);
    ::close(fds[1]);
    ::execv(binary.c_str(), argv.data());
    const std::string why = "cannot execute " + binary + ": " + std::strerror(errno) + "\n";
    (void)!::write(2, why.data(), why.size());
    ::_exit(127);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    *log = std::string("fork: ") + std::strerror(errno);
    return Start::kFailed;
  }
  char buf[4096];
  while (log->find(kReady) == std::string::npos) {
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    log->append(buf, static_cast<size_t>(n));
  }
  // Redis ignores SIGPIPE, so later log lines to the closed pipe are harmless.
  ::close(fds[0]);
  if (log->find(kReady) == std::string::npos) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return log->find(kPortTaken) != std::string::npos ? Start::kPortTaken : Start::kFailed;
  }
  pid_ = pid;
  return Start::kReady;
}

void RedisServer::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void RedisServer::Pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void RedisServer::Resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

RedisServer::~RedisServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string RedisServer::Command(const std::string& a, const std::string& b,
                                 const std::string& c) const {
  std::vector<std::string> argv = {a};
  if (!b.empty()) argv.push_back(b);
  if (!c.empty()) argv.push_back(c);
  return AuthCommand("", argv);
}

std::string RedisServer::AuthCommand(const std::string& password,
                                     const std::vector<std::string>& args) const {
  timeval tv{2, 0};
  redisContext* ctx = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (ctx == nullptr || ctx->err) {
    if (ctx) redisFree(ctx);
    return "";
  }
  if (!password.empty()) {
    auto* a = static_cast<redisReply*>(redisCommand(ctx, "AUTH %s", password.c_str()));
    if (a != nullptr) freeReplyObject(a);
  }
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), nullptr));
  std::string out;
  if (r != nullptr) {
    if (r->type == REDIS_REPLY_INTEGER)
      out = std::to_string(r->integer);
    else if (r->str != nullptr)
      out.assign(r->str, r->len);
    freeReplyObject(r);
  }
  redisFree(ctx);
  return out;
}

}  // namespace hc::router::testing
