// TLS for the gRPC servers and channels of hc-router, hc-worker and hcctl:
// one place that turns certificate file paths into gRPC credentials.
//
// Certificates are read from files and re-read every refresh_interval
// (gRPC's FileWatcherCertificateProvider): a certificate renewed on disk
// (cert-manager, a kubelet-updated Secret volume) is served to new handshakes
// without a restart, while connections already open, and their streams, keep
// the session they negotiated. A renewal that leaves the files unreadable or
// inconsistent keeps the last good pair (gRPC logs the error).
//
// The files are checked once when credentials are made (readable, PEM that
// OpenSSL parses, the key matching the certificate), so that a mistake is a
// clear start-up error instead of failing handshakes.
#ifndef HC_COMMON_TLS_H_
#define HC_COMMON_TLS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace hc {

// How often certificate files are re-read by default: well inside the hour a
// renewed certificate usually overlaps the old one, cheap (a few file reads).
inline constexpr absl::Duration kDefaultTlsRefreshInterval = absl::Seconds(60);

// A server's listening port. All paths empty: plaintext.
struct TlsServerConfig {
  std::string cert_file;  // PEM certificate chain, leaf first
  std::string key_file;   // PEM private key of cert_file's leaf
  // Non-empty: every client must present a certificate signed by one of these
  // PEM CA certificates, or the handshake fails (mutual TLS).
  std::string client_ca_file;
  // How often the files are re-read; whole seconds, at least 1.
  absl::Duration refresh_interval = kDefaultTlsRefreshInterval;

  bool enabled() const {
    return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty();
  }
};

// A client's channel. TLS when `tls` is set or any path is non-empty.
struct TlsChannelConfig {
  bool tls = false;
  // PEM CA certificates the server's certificate must chain to; empty: the
  // system's default roots.
  std::string ca_file;
  // Optional client certificate (both or neither), presented to servers that
  // require one.
  std::string cert_file;
  std::string key_file;
  // Non-empty: the name the server's certificate must carry, instead of the
  // host of the address dialled (e.g. workers dialled by pod IP whose
  // certificate names their Service).
  std::string server_name;
  absl::Duration refresh_interval = kDefaultTlsRefreshInterval;

  bool enabled() const {
    return tls || !ca_file.empty() || !cert_file.empty() || !key_file.empty() ||
           !server_name.empty();
  }
};

// Server credentials: TLS (mutual with client_ca_file) or, when !enabled(),
// insecure. INVALID_ARGUMENT naming the flag-level mistake (a key without a
// certificate, a client CA without a server certificate, a refresh interval
// under a second); NOT_FOUND / INVALID_ARGUMENT for unreadable or unparsable
// files, or a key that does not match its certificate.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerConfig& config);

// Channel credentials and the channel arguments that go with them (the
// server-name override). Errors as MakeServerCredentials.
struct ChannelSecurity {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string server_name;  // empty: the dialled host

  // Adds the server-name override, if any, to `args`.
  void Apply(grpc::ChannelArguments* args) const;
};
absl::StatusOr<ChannelSecurity> MakeChannelSecurity(const TlsChannelConfig& config);

}  // namespace hc

#endif  // HC_COMMON_TLS_H_
