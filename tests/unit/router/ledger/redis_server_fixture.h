// Starts a throwaway redis-server on loopback at a free port (temp dir, no
// persistence) for the tests' lifetime, and stops it afterwards.
#ifndef HC_TESTS_UNIT_ROUTER_LEDGER_REDIS_SERVER_FIXTURE_H_
#define HC_TESTS_UNIT_ROUTER_LEDGER_REDIS_SERVER_FIXTURE_H_

#include <string>
#include <vector>

namespace hc::router::testing {

class RedisServer {
 public:
  // Starts /usr/bin/redis-server (or $HC_REDIS_SERVER) and waits until it
  // accepts connections. ok() is false when it could not start.
  // `extra_args` are appended to redis-server's command line (e.g.
  // {"--requirepass", "secret"}).
  explicit RedisServer(std::vector<std::string> extra_args = {});
  ~RedisServer();
  // kill -9 (no-op once stopped).
  void Kill();
  // SIGSTOP / SIGCONT: the server stops answering, its sockets stay open.
  void Pause();
  void Resume();
  bool ok() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  // Runs a command through redis-cli-free hiredis and returns the raw reply
  // string (bulk/status) or the integer as text.
  std::string Command(const std::string& a, const std::string& b = "",
                      const std::string& c = "") const;
  // AUTH with `password` first.
  std::string AuthCommand(const std::string& password, const std::vector<std::string>& argv) const;

 private:
  int pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

}  // namespace hc::router::testing

#endif  // HC_TESTS_UNIT_ROUTER_LEDGER_REDIS_SERVER_FIXTURE_H_
