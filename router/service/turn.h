// The reactor of one Complete stream (see chat_service.h for the protocol).
#ifndef HC_ROUTER_SERVICE_TURN_H_
#define HC_ROUTER_SERVICE_TURN_H_

#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "router/service/chat_service.h"

namespace hc::router {

// Starts the turn of `caller` (or, when authentication failed, a turn that
// finishes with its status) for a raw CompleteRequest (a malformed one
// finishes with INVALID_ARGUMENT); the reactor writes serialized CompleteEvents and deletes
// itself when the client stream, its worker calls, ledger operations and
// alarms are all done.
grpc::ServerWriteReactor<grpc::ByteBuffer>* StartTurn(ChatServiceImpl::Deps* deps,
                                                      grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      absl::StatusOr<Caller> caller);

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_TURN_H_
