// Starts a throwaway redis-server on loopback (temp dir, no persistence) for
// the tests' lifetime, and stops it afterwards.
#ifndef HC_TESTS_UNIT_ROUTER_LEDGER_REDIS_SERVER_FIXTURE_H_
#define HC_TESTS_UNIT_ROUTER_LEDGER_REDIS_SERVER_FIXTURE_H_

#include <functional>
#include <string>
#include <vector>

namespace hc::router::testing {

// A loopback TCP port the kernel just gave out. Free when returned, but
// another process may bind it before the caller does (RedisServer retries).
int FreeLoopbackPort();

struct RedisServerOptions {
  // The server binary; empty: $HC_REDIS_SERVER, else /usr/bin/redis-server.
  std::string binary;
  // A fixed port, tried once (a restart on a known port); 0: pick one.
  int port = 0;
  // Picks the port of each attempt when `port` is 0; null: FreeLoopbackPort.
  std::function<int()> pick_port;
  // Attempts when redis-server reports its port taken (the window between
  // picking a free port and redis-server binding it); any other failure ends
  // the start at once.
  int max_attempts = 10;
};

class RedisServer {
 public:
  // Starts the server and waits until it accepts connections. ok() is false
  // when it could not start, and error() says why. `extra_args` are appended
  // to redis-server's command line (e.g. {"--requirepass", "secret"}).
  explicit RedisServer(std::vector<std::string> extra_args = {}, RedisServerOptions options = {});
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // kill -9 (no-op once stopped).
  void Kill();
  // SIGSTOP / SIGCONT: the server stops answering, its sockets stay open.
  void Pause();
  void Resume();
  bool ok() const { return pid_ > 0; }
  // Why the server did not start ("" once it has).
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  // Runs a command through redis-cli-free hiredis and returns the raw reply
  // string (bulk/status) or the integer as text.
  std::string Command(const std::string& a, const std::string& b = "",
                      const std::string& c = "") const;
  // AUTH with `password` first.
  std::string AuthCommand(const std::string& password, const std::vector<std::string>& argv) const;

 private:
  enum class Start { kReady, kPortTaken, kFailed };
  // One attempt on `port`; its log (or why it failed) in `*log`.
  Start StartOnce(const std::string& binary, int port, const std::vector<std::string>& extra_args,
                  std::string* log);

  int pid_ = -1;
  int port_ = 0;
  std::string dir_;
  std::string error_;
};

}  // namespace hc::router::testing

#endif  // HC_TESTS_UNIT_ROUTER_LEDGER_REDIS_SERVER_FIXTURE_H_
