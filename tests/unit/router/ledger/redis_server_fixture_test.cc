// The Redis test fixture itself: a port taken between picking it and
// redis-server binding it costs an attempt, not the test run; a server that
// cannot start is an error with its reason (the Redis tests then fail, never
// skip).
#include "tests/unit/router/ledger/redis_server_fixture.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace hc::router::testing {
namespace {

// A loopback port held (bound and listening) for the test's lifetime: the
// stand-in for another process that took the port first.
class TakenPort {
 public:
  TakenPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::listen(fd_, 1) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~TakenPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(RedisServerFixtureTest, APortTakenBeforeRedisBindsItIsRetriedOnAnotherPort) {
  TakenPort taken;
  ASSERT_GT(taken.port(), 0);
  int picks = 0;
  RedisServerOptions o;
  // The first pick loses the race (the port is taken); the second is free.
  o.pick_port = [&] { return ++picks == 1 ? taken.port() : FreeLoopbackPort(); };
  RedisServer server({}, o);
  ASSERT_TRUE(server.ok()) << server.error();
  EXPECT_EQ(picks, 2);
  EXPECT_NE(server.port(), taken.port());
  EXPECT_EQ(server.Command("PING"), "PONG");
  EXPECT_EQ(server.error(), "");
}

TEST(RedisServerFixtureTest, AlwaysTakenPortsFailAfterTheBoundedAttemptsWithTheReason) {
  TakenPort taken;
  ASSERT_GT(taken.port(), 0);
  int picks = 0;
  RedisServerOptions o;
  o.max_attempts = 3;
  o.pick_port = [&] {
    ++picks;
    return taken.port();
  };
  RedisServer server({}, o);
  EXPECT_FALSE(server.ok());
  EXPECT_EQ(picks, 3);
  EXPECT_NE(server.error().find("port taken on each of 3 attempt(s)"), std::string::npos)
      << server.error();
  EXPECT_NE(server.error().find("Address already in use"), std::string::npos) << server.error();
}

TEST(RedisServerFixtureTest, AFixedPortIsTriedOnce) {
  TakenPort taken;
  ASSERT_GT(taken.port(), 0);
  RedisServerOptions o;
  o.port = taken.port();
  o.pick_port = [] {
    ADD_FAILURE() << "a fixed port is not picked";
    return 0;
  };
  RedisServer server({}, o);
  EXPECT_FALSE(server.ok());
  EXPECT_NE(server.error().find("1 attempt(s)"), std::string::npos) << server.error();
}

TEST(RedisServerFixtureTest, AMissingBinaryIsAnErrorAtOnceNotARetry) {
  int picks = 0;
  RedisServerOptions o;
  o.binary = "/nonexistent/redis-server";
  o.pick_port = [&] {
    ++picks;
    return FreeLoopbackPort();
  };
  RedisServer server({}, o);
  EXPECT_FALSE(server.ok());
  EXPECT_EQ(picks, 1);
  EXPECT_NE(server.error().find("cannot execute /nonexistent/redis-server"), std::string::npos)
      << server.error();
}

}  // namespace
}  // namespace hc::router::testing
