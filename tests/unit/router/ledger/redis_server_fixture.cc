#include "tests/unit/router/ledger/redis_server_fixture.h"

#include <fcntl.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace hc::router::testing {
namespace {

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

RedisServer::RedisServer(std::vector<std::string> extra_args) {
  const char* bin = std::getenv("HC_REDIS_SERVER");
  const std::string server = bin ? bin : "/usr/bin/redis-server";
  char tmpl[] = "/tmp/hc-redis-XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  port_ = FreePort();
  const std::string port = std::to_string(port_);
  // Readiness: redis-server logs "Ready to accept connections" on stdout;
  // read its log through a pipe until that line (or EOF: it failed).
  int fds[2];
  if (::pipe(fds) != 0) return;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, 2);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<std::string> args = {
        server, "--port", port, "--bind",      "127.0.0.1", "--save",     "",      "--appendonly",
        "no",   "--dir",  dir_, "--daemonize", "no",        "--loglevel", "notice"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(server.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    return;
  }
  std::string log;
  char buf[4096];
  while (log.find("Ready to accept connections") == std::string::npos) {
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    log.append(buf, static_cast<size_t>(n));
  }
  // Redis ignores SIGPIPE, so later log lines to the closed pipe are harmless.
  ::close(fds[0]);
  if (log.find("Ready to accept connections") == std::string::npos) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return;
  }
  pid_ = pid;
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
  std::filesystem::remove_all(dir_, ec);
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
