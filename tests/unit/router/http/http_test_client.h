// A minimal HTTP/1.1 client on one kept-alive loopback connection, for tests
// and benches of the router's HTTP front door: sends a POST, reads the whole
// reply (Content-Length or chunked, as evhttp sends them) and returns its
// status and de-chunked body.
#ifndef HC_TESTS_UNIT_ROUTER_HTTP_HTTP_TEST_CLIENT_H_
#define HC_TESTS_UNIT_ROUTER_HTTP_HTTP_TEST_CLIENT_H_

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace hc::router::http::testing {

class HttpTestClient {
 public:
  struct Reply {
    int status = 0;  // 0: the connection failed or closed early
    std::string body;
  };

  explicit HttpTestClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    HC_CHECK(connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) << "connect";
  }
  ~HttpTestClient() { close(fd_); }
  HttpTestClient(const HttpTestClient&) = delete;
  HttpTestClient& operator=(const HttpTestClient&) = delete;

  // `extra_headers`: whole lines, each ending in \r\n.
  Reply Post(const std::string& path, const std::string& body,
             const std::string& extra_headers = "") {
    const std::string req =
        absl::StrCat("POST ", path,
                     " HTTP/1.1\r\nHost: test\r\nContent-Type: "
                     "application/json\r\n",
                     extra_headers, "Content-Length: ", body.size(), "\r\n\r\n", body);
    if (write(fd_, req.data(), req.size()) != static_cast<ssize_t>(req.size())) return {};
    size_t head_end;
    while ((head_end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (!Read()) return {};
    }
    const std::string head = absl::AsciiStrToLower(in_.substr(0, head_end));
    Reply r;
    if (head.size() < 12 || !absl::SimpleAtoi(head.substr(9, 3), &r.status)) return {};
    size_t pos = head_end + 4;
    if (head.find("transfer-encoding: chunked") != std::string::npos) {
      while (true) {  // chunks: <hex size>\r\n<data>\r\n ... 0\r\n\r\n
        size_t line_end;
        while ((line_end = in_.find("\r\n", pos)) == std::string::npos) {
          if (!Read()) return {};
        }
        const size_t n = std::strtoul(in_.substr(pos, line_end - pos).c_str(), nullptr, 16);
        while (in_.size() < line_end + 2 + n + 2) {
          if (!Read()) return {};
        }
        r.body.append(in_, line_end + 2, n);
        pos = line_end + 2 + n + 2;
        if (n == 0) break;
      }
    } else {
      size_t length = 0;
      const size_t at = head.find("content-length: ");
      if (at != std::string::npos) length = std::strtoul(head.c_str() + at + 16, nullptr, 10);
      while (in_.size() < pos + length) {
        if (!Read()) return {};
      }
      r.body = in_.substr(pos, length);
      pos += length;
    }
    in_.erase(0, pos);
    return r;
  }

 private:
  bool Read() {
    char buf[16384];
    const ssize_t n = read(fd_, buf, sizeof(buf));
    if (n <= 0) return false;
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string in_;  // received, not yet returned
};

}  // namespace hc::router::http::testing

#endif  // HC_TESTS_UNIT_ROUTER_HTTP_HTTP_TEST_CLIENT_H_
