#include "common/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace hc {
namespace {

using grpc::experimental::FileWatcherCertificateProvider;

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyDeleter>;

BioPtr MemBio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// The first certificate of a PEM file (the leaf of a chain); INVALID_ARGUMENT
// when there is none.
absl::StatusOr<X509Ptr> ReadLeafCertificate(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) return pem.status();
  BioPtr bio = MemBio(*pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no PEM certificate in it"));
  }
  return cert;
}

absl::StatusOr<KeyPtr> ReadPrivateKey(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) return pem.status();
  BioPtr bio = MemBio(*pem);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no unencrypted PEM private key in it"));
  }
  return key;
}

// Both set, both parse, and the key is the certificate's.
absl::Status CheckKeyPair(const std::string& cert_file, const std::string& key_file,
                          absl::string_view what) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": a certificate and its private key go together; got only the ",
                     cert_file.empty() ? "key" : "certificate"));
  }
  absl::StatusOr<X509Ptr> cert = ReadLeafCertificate(cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<KeyPtr> key = ReadPrivateKey(key_file);
  if (!key.ok()) return key.status();
  const int match = X509_check_private_key(cert->get(), key->get());
  ERR_clear_error();
  if (match != 1) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": private key ", key_file,
                                                   " does not belong to certificate ", cert_file));
  }
  return absl::OkStatus();
}

absl::Status CheckCaFile(const std::string& path) { return ReadLeafCertificate(path).status(); }

absl::StatusOr<unsigned int> RefreshSeconds(absl::Duration interval) {
  if (interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS refresh interval ", absl::FormatDuration(interval),
                     ": must be at least 1s (certificate files are re-read every interval)"));
  }
  return static_cast<unsigned int>(absl::ToInt64Seconds(interval));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerConfig& config) {
  if (!config.enabled()) return grpc::InsecureServerCredentials();
  if (config.cert_file.empty() && config.key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client CA was given without a server certificate and key: mutual TLS needs both");
  }
  if (absl::Status s = CheckKeyPair(config.cert_file, config.key_file, "server TLS"); !s.ok()) {
    return s;
  }
  if (!config.client_ca_file.empty()) {
    if (absl::Status s = CheckCaFile(config.client_ca_file); !s.ok()) return s;
  }
  absl::StatusOr<unsigned int> refresh = RefreshSeconds(config.refresh_interval);
  if (!refresh.ok()) return refresh.status();
  // One provider watches the identity pair and, for mutual TLS, the client CA.
  auto provider = std::make_shared<FileWatcherCertificateProvider>(
      config.key_file, config.cert_file, config.client_ca_file, *refresh);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (config.client_ca_file.empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<ChannelSecurity> MakeChannelSecurity(const TlsChannelConfig& config) {
  ChannelSecurity out;
  if (!config.enabled()) {
    out.credentials = grpc::InsecureChannelCredentials();
    return out;
  }
  const bool identity = !config.cert_file.empty() || !config.key_file.empty();
  if (identity) {
    if (absl::Status s = CheckKeyPair(config.cert_file, config.key_file, "client TLS"); !s.ok()) {
      return s;
    }
  }
  if (!config.ca_file.empty()) {
    if (absl::Status s = CheckCaFile(config.ca_file); !s.ok()) return s;
  }
  absl::StatusOr<unsigned int> refresh = RefreshSeconds(config.refresh_interval);
  if (!refresh.ok()) return refresh.status();
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (identity || !config.ca_file.empty()) {
    options.set_certificate_provider(std::make_shared<FileWatcherCertificateProvider>(
        config.key_file, config.cert_file, config.ca_file, *refresh));
  }
  // Without a watched root, gRPC verifies against the system's default roots.
  if (!config.ca_file.empty()) options.watch_root_certs();
  if (identity) options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  out.credentials = grpc::experimental::TlsCredentials(options);
  out.server_name = config.server_name;
  if (out.credentials == nullptr) {
    return absl::InternalError("gRPC refused the TLS channel options");
  }
  return out;
}

void ChannelSecurity::Apply(grpc::ChannelArguments* args) const {
  if (!server_name.empty()) args->SetSslTargetNameOverride(server_name);
}

}  // namespace hc
