// gRPC implementations of WorkerProber (health Check + Load, all workers in
// parallel on the callback API), the getaddrinfo Resolver, and worker channels.
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/tsan_annotations.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "router/routing/worker_pool.h"

namespace hc::router {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// Where the probes' callbacks synchronise with the thread that started them,
// for ThreadSanitizer only (common/tsan_annotations.h).
char g_probe_handoff;

// One probe: Check, then (when SERVING) Load. Owned by the batch.
struct ProbeCall {
  std::shared_ptr<Worker> worker;
  absl::Duration timeout;
  grpc::ClientContext check_ctx;
  grpc::ClientContext load_ctx;
  HealthCheckRequest check_req;
  HealthCheckResponse check_resp;
  hybridcache::v1::LoadRequest load_req;
  hybridcache::v1::LoadReport load_resp;
  absl::StatusOr<WorkerLoad> result = absl::UnavailableError("not probed");
};

class GrpcProber final : public WorkerProber {
 public:
  explicit GrpcProber(absl::Duration timeout) : timeout_(timeout) {}

  std::vector<absl::StatusOr<WorkerLoad>> ProbeAll(
      const std::vector<std::shared_ptr<Worker>>& workers) override {
    std::vector<std::unique_ptr<ProbeCall>> calls;
    absl::Mutex mu;
    size_t pending = workers.size();
    const auto done = [&](ProbeCall* call, absl::StatusOr<WorkerLoad> result) {
      call->result = std::move(result);
      absl::MutexLock lock(&mu);
      --pending;
    };
    for (const auto& w : workers) {
      auto call = std::make_unique<ProbeCall>();
      call->worker = w;
      calls.push_back(std::move(call));
    }
    for (auto& owned : calls) {
      ProbeCall* call = owned.get();
      if (call->worker->channel() == nullptr) {
        done(call, absl::FailedPreconditionError("worker without a channel"));
        continue;
      }
      const auto deadline = absl::ToChronoTime(absl::Now() + timeout_);
      call->check_ctx.set_deadline(deadline);
      call->load_ctx.set_deadline(deadline);
      call->check_req.set_service(hybridcache::v1::WorkerService::service_full_name());
      auto health = grpc::health::v1::Health::NewStub(call->worker->channel());
      // The callbacks run on gRPC threads. Each is built before the release
      // that precedes its call, so its captures (and the ProbeCall) are covered
      // by the edge gRPC provides invisibly to TSan (common/tsan_annotations.h).
      std::function<void(grpc::Status)> on_check = [call, done](grpc::Status s) {
        HC_TSAN_ACQUIRE(&g_probe_handoff);
        if (!s.ok()) return done(call, FromGrpcStatus(s));
        if (call->check_resp.status() != HealthCheckResponse::SERVING) {
          return done(call, absl::UnavailableError("not serving"));
        }
        std::function<void(grpc::Status)> on_load = [call, done](grpc::Status s) {
          HC_TSAN_ACQUIRE(&g_probe_handoff);
          if (!s.ok()) return done(call, FromGrpcStatus(s));
          const auto& r = call->load_resp;
          WorkerLoad l;
          l.num_running = r.num_running();
          l.num_waiting = r.num_waiting();
          l.max_waiting = r.max_waiting();
          l.free_kv_blocks = r.free_kv_blocks();
          l.total_kv_blocks = r.total_kv_blocks();
          l.free_mamba_slots = r.free_mamba_slots();
          l.total_mamba_slots = r.total_mamba_slots();
          l.draining = r.draining();
          l.max_model_len = r.max_model_len();
          l.vocab_size = r.vocab_size();
          done(call, l);
        };
        HC_TSAN_RELEASE(&g_probe_handoff);
        call->worker->stub()->async()->Load(&call->load_ctx, &call->load_req, &call->load_resp,
                                            std::move(on_load));
      };
      HC_TSAN_RELEASE(&g_probe_handoff);
      health->async()->Check(&call->check_ctx, &call->check_req, &call->check_resp,
                             std::move(on_check));
    }
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(
          +[](size_t* p) { return *p == 0; }, &pending));
    }
    std::vector<absl::StatusOr<WorkerLoad>> out;
    out.reserve(calls.size());
    for (auto& c : calls) out.push_back(std::move(c->result));
    return out;
  }

 private:
  const absl::Duration timeout_;
};

class DnsResolver final : public Resolver {
 public:
  absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host_port) override {
    const size_t colon = host_port.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("expected host:port, got ", host_port));
    }
    const std::string host = host_port.substr(0, colon);
    const std::string port = host_port.substr(colon + 1);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) return absl::UnavailableError(absl::StrCat(host, ": ", gai_strerror(rc)));
    std::vector<std::string> out;
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      char ip[NI_MAXHOST];
      if (::getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof(ip), nullptr, 0, NI_NUMERICHOST) !=
          0) {
        continue;
      }
      std::string address = a->ai_family == AF_INET6 ? absl::StrCat("[", ip, "]:", port)
                                                     : absl::StrCat(ip, ":", port);
      if (std::find(out.begin(), out.end(), address) == out.end()) out.push_back(address);
    }
    ::freeaddrinfo(res);
    std::sort(out.begin(), out.end());
    return out;
  }
};

}  // namespace

std::unique_ptr<WorkerProber> NewGrpcProber(absl::Duration timeout) {
  return std::make_unique<GrpcProber>(timeout);
}

std::unique_ptr<Resolver> NewDnsResolver() { return std::make_unique<DnsResolver>(); }

namespace {

grpc::ChannelArguments WorkerChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // Fast reconnects: a restarted worker is back within a probe interval.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  return args;
}

}  // namespace

std::shared_ptr<grpc::Channel> NewWorkerChannel(const std::string& address) {
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   WorkerChannelArguments());
}

std::function<std::shared_ptr<grpc::Channel>(const std::string&)> NewWorkerChannelFactory(
    ChannelSecurity security) {
  if (security.credentials == nullptr) security.credentials = grpc::InsecureChannelCredentials();
  return [security = std::move(security)](const std::string& address) {
    grpc::ChannelArguments args = WorkerChannelArguments();
    security.Apply(&args);
    return grpc::CreateCustomChannel(address, security.credentials, args);
  };
}

}  // namespace hc::router
