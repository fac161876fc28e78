// A TCP proxy on loopback that adds latency towards its target (benchmarks:
// a Redis server "2 ms away").
#ifndef HC_TESTS_BENCH_ROUTER_DELAY_PROXY_H_
#define HC_TESTS_BENCH_ROUTER_DELAY_PROXY_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace hc::router::bench {

// Forwards 127.0.0.1:port() to 127.0.0.1:target; bytes towards the target
// are delivered `delay` after they were read (a pure latency: chunks are not
// serialised behind each other's delay). Threads are detached and end with
// the process.
class DelayProxy {
 public:
  DelayProxy(int target, absl::Duration delay) : target_(target), delay_(delay) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    std::thread([this] { Accept(); }).detach();
  }
  int port() const { return port_; }

 private:
  struct Chunk {
    absl::Time due;
    std::string bytes;
  };
  struct Pipe {
    absl::Mutex mu;
    std::deque<Chunk> chunks ABSL_GUARDED_BY(mu);
    bool closed ABSL_GUARDED_BY(mu) = false;
  };

  void Accept() {
    while (true) {
      const int client = ::accept(listen_fd_, nullptr, nullptr);
      if (client < 0) return;
      const int server = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_));
      if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      auto* pipe = new Pipe();  // lives as long as the connection's threads
      std::thread([this, client, pipe] { ReadDelayed(client, pipe); }).detach();
      std::thread([server, pipe] { WriteDelayed(server, pipe); }).detach();
      std::thread([server, client] { Forward(server, client); }).detach();
    }
  }

  void ReadDelayed(int from, Pipe* pipe) {
    char buf[1 << 16];
    while (true) {
      const ssize_t n = ::read(from, buf, sizeof(buf));
      absl::MutexLock lock(&pipe->mu);
      if (n <= 0) {
        pipe->closed = true;
        return;
      }
      pipe->chunks.push_back(Chunk{absl::Now() + delay_, std::string(buf, static_cast<size_t>(n))});
    }
  }

  static void WriteDelayed(int to, Pipe* pipe) {
    while (true) {
      Chunk chunk;
      {
        absl::MutexLock lock(&pipe->mu);
        pipe->mu.Await(absl::Condition(
            +[](Pipe* p) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !p->chunks.empty() || p->closed; },
            pipe));
        if (pipe->chunks.empty()) {
          ::shutdown(to, SHUT_WR);
          return;
        }
        chunk = std::move(pipe->chunks.front());
        pipe->chunks.pop_front();
      }
      absl::SleepFor(chunk.due - absl::Now());  // the injected latency itself
      if (::write(to, chunk.bytes.data(), chunk.bytes.size()) < 0) return;
    }
  }

  static void Forward(int from, int to) {
    char buf[1 << 16];
    while (true) {
      const ssize_t n = ::read(from, buf, sizeof(buf));
      if (n <= 0 || ::write(to, buf, static_cast<size_t>(n)) < 0) {
        ::shutdown(to, SHUT_WR);
        return;
      }
    }
  }

  const int target_;
  const absl::Duration delay_;
  int listen_fd_ = -1;
  int port_ = 0;
};

}  // namespace hc::router::bench

#endif  // HC_TESTS_BENCH_ROUTER_DELAY_PROXY_H_
