// The reactor of one Complete stream (see chat_service.h for the protocol).
#ifndef HC_ROUTER_SERVICE_TURN_H_
#define HC_ROUTER_SERVICE_TURN_H_

#include "grpcpp/support/server_callback.h"
#include "hybridcache/v1/chat.pb.h"
#include "router/service/chat_service.h"

namespace hc::router {

// Starts the turn; the reactor deletes itself when both the client stream
// and its last worker call are done.
grpc::ServerWriteReactor<hybridcache::v1::CompleteEvent>* StartTurn(
    ChatServiceImpl::Deps* deps, grpc::CallbackServerContext* context,
    const hybridcache::v1::CompleteRequest* request);

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_TURN_H_
