#include "common/tls.h"

#include <stdlib.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/server.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "hybridcache/v1/worker.grpc.pb.h"

namespace hc {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// The test PKI (tests/certs/make_test_certs.sh), made once for the suite.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/hc-tls-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    const std::string cmd = absl::StrCat(HC_TEST_CERTS_SCRIPT, " ", *dir_);
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    std::system(absl::StrCat("rm -rf ", *dir_).c_str());
    delete dir_;
  }
  static std::string File(const std::string& name) { return absl::StrCat(*dir_, "/", name); }

  void StartServer(const TlsServerConfig& tls) {
    ServerOptions options;
    options.drain_timeout = absl::Seconds(1);
    options.credentials = MakeServerCredentials(tls).value();
    server_ = GrpcServer::Start(options,
                                {{&service_, hybridcache::v1::WorkerService::service_full_name()}})
                  .value();
  }

  // A health Check through a channel made from `config`: the handshake's
  // outcome decides it (the server answers SERVING to anyone connected).
  grpc::Status CheckWith(const TlsChannelConfig& config, const std::string& host = "127.0.0.1") {
    ChannelSecurity security = MakeChannelSecurity(config).value();
    grpc::ChannelArguments args;
    security.Apply(&args);
    auto channel = grpc::CreateCustomChannel(absl::StrCat(host, ":", server_->port()),
                                             security.credentials, args);
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    HealthCheckResponse resp;
    return stub->Check(&ctx, HealthCheckRequest(), &resp);
  }

  TlsServerConfig ServerConfig(bool mutual) {
    TlsServerConfig c;
    c.cert_file = File("server.crt");
    c.key_file = File("server.key");
    if (mutual) c.client_ca_file = File("ca.crt");
    return c;
  }
  TlsChannelConfig ClientConfig(const std::string& identity = "") {
    TlsChannelConfig c;
    c.ca_file = File("ca.crt");
    if (!identity.empty()) {
      c.cert_file = File(identity + ".crt");
      c.key_file = File(identity + ".key");
    }
    return c;
  }

  static std::string* dir_;
  hybridcache::v1::WorkerService::Service service_;
  std::unique_ptr<GrpcServer> server_;
};

std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, NoFilesMeansPlaintext) {
  EXPECT_TRUE(MakeServerCredentials(TlsServerConfig()).ok());
  EXPECT_TRUE(MakeChannelSecurity(TlsChannelConfig()).ok());
  EXPECT_FALSE(TlsServerConfig().enabled());
  EXPECT_FALSE(TlsChannelConfig().enabled());
}

TEST_F(TlsTest, KeyOfAnotherCertificateIsRefusedAtStart) {
  TlsServerConfig c = ServerConfig(false);
  c.key_file = File("router-client.key");
  absl::Status s = MakeServerCredentials(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("does not belong"), std::string::npos) << s;

  TlsChannelConfig cc = ClientConfig("router-client");
  cc.key_file = File("server.key");
  EXPECT_EQ(MakeChannelSecurity(cc).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, MissingOrNonPemFilesAreRefusedAtStart) {
  TlsServerConfig c = ServerConfig(true);
  c.cert_file = File("absent.crt");
  EXPECT_EQ(MakeServerCredentials(c).status().code(), absl::StatusCode::kNotFound);
  c = ServerConfig(true);
  c.client_ca_file = File("server.key");  // a key, not a certificate
  absl::Status s = MakeServerCredentials(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no PEM certificate"), std::string::npos) << s;
  c = ServerConfig(false);
  c.key_file = File("server.crt");  // a certificate, not a key
  EXPECT_EQ(MakeServerCredentials(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, IncompleteConfigurationsAreInvalid) {
  TlsServerConfig c;
  c.client_ca_file = File("ca.crt");  // mutual TLS without a server certificate
  EXPECT_EQ(MakeServerCredentials(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = ServerConfig(false);
  c.key_file.clear();
  EXPECT_EQ(MakeServerCredentials(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = ServerConfig(false);
  c.refresh_interval = absl::Milliseconds(500);
  EXPECT_EQ(MakeServerCredentials(c).status().code(), absl::StatusCode::kInvalidArgument);
  TlsChannelConfig cc = ClientConfig();
  cc.cert_file = File("router-client.crt");  // without its key
  EXPECT_EQ(MakeChannelSecurity(cc).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, TlsPortAnswersVerifiedClientsAndRefusesPlaintext) {
  StartServer(ServerConfig(false));
  EXPECT_TRUE(CheckWith(ClientConfig()).ok());
  EXPECT_EQ(CheckWith(TlsChannelConfig()).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A client that trusts another CA refuses the server.
  TlsChannelConfig rogue_roots;
  rogue_roots.ca_file = File("rogue-ca.crt");
  EXPECT_EQ(CheckWith(rogue_roots).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// The certificate names 127.0.0.1 and localhost: a client expecting another
// name refuses it; the override lets a client dial an address the
// certificate does not name.
TEST_F(TlsTest, ClientVerifiesTheServerName) {
  StartServer(ServerConfig(false));
  TlsChannelConfig c = ClientConfig();
  c.server_name = "wrong.example";
  EXPECT_EQ(CheckWith(c).error_code(), grpc::StatusCode::UNAVAILABLE);
  c.server_name = "localhost";
  EXPECT_TRUE(CheckWith(c).ok());
  EXPECT_TRUE(CheckWith(ClientConfig(), "localhost").ok());
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutACertificateOfTheCa) {
  StartServer(ServerConfig(true));
  EXPECT_TRUE(CheckWith(ClientConfig("router-client")).ok());
  EXPECT_EQ(CheckWith(ClientConfig()).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(CheckWith(ClientConfig("rogue-client")).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(CheckWith(TlsChannelConfig()).error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace hc
