#include "router/http/openai_types.h"

#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace hc::router::http {
namespace {

namespace v1 = hybridcache::v1;

// Stop strings the ChatService accepts (chat.proto).
constexpr int kMaxStops = 16;

std::string TypeName(const Json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "a boolean";
  if (j.is_number()) return "a number";
  if (j.is_string()) return "a string";
  if (j.is_array()) return "an array";
  return "an object";
}

ApiError WrongType(const std::string& param, const Json& j, const std::string& expected) {
  return BadRequest(param, absl::StrCat("Invalid type for '", param, "': expected ", expected,
                                        ", but got ", TypeName(j), "."));
}

// Field readers: an absent or null field leaves the output as it is.
class Reader {
 public:
  explicit Reader(const Json& obj) : obj_(obj) {}
  const Json* Find(const char* name) const {
    auto it = obj_.find(name);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  bool String(const char* name, std::string* out, ApiError* e) const {
    const Json* j = Find(name);
    if (j == nullptr) return true;
    if (!j->is_string()) return (*e = WrongType(name, *j, "a string"), false);
    *out = j->get<std::string>();
    return true;
  }
  bool Bool(const char* name, bool* out, ApiError* e) const {
    const Json* j = Find(name);
    if (j == nullptr) return true;
    if (!j->is_boolean()) return (*e = WrongType(name, *j, "a boolean"), false);
    *out = j->get<bool>();
    return true;
  }
  // A number within [lo, hi].
  bool Number(const char* name, double lo, double hi, std::optional<double>* out,
              ApiError* e) const {
    const Json* j = Find(name);
    if (j == nullptr) return true;
    if (!j->is_number()) return (*e = WrongType(name, *j, "a number"), false);
    const double v = j->get<double>();
    if (!std::isfinite(v) || v < lo || v > hi) {
      *e = BadRequest(name, absl::StrCat("'", name, "' must be between ", lo, " and ", hi, "; got ",
                                         j->dump(), "."));
      return false;
    }
    *out = v;
    return true;
  }
  // An integer within [lo, hi].
  bool Integer(const char* name, int64_t lo, int64_t hi, std::optional<int64_t>* out,
               ApiError* e) const {
    const Json* j = Find(name);
    if (j == nullptr) return true;
    if (!j->is_number_integer()) return (*e = WrongType(name, *j, "an integer"), false);
    // nlohmann stores non-negative integers as unsigned.
    const bool in_range = j->is_number_unsigned()
                              ? j->get<uint64_t>() <= static_cast<uint64_t>(hi) &&
                                    (lo <= 0 || j->get<uint64_t>() >= static_cast<uint64_t>(lo))
                              : j->get<int64_t>() >= lo && j->get<int64_t>() <= hi;
    if (!in_range) {
      *e = BadRequest(name, absl::StrCat("'", name, "' must be between ", lo, " and ", hi, "; got ",
                                         j->dump(), "."));
      return false;
    }
    *out = j->is_number_unsigned() ? static_cast<int64_t>(j->get<uint64_t>()) : j->get<int64_t>();
    return true;
  }

 private:
  const Json& obj_;
};

bool ParseBody(std::string_view body, Json* out, ApiError* e) {
  *out = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded()) {
    *e = BadRequest("",
                    "We could not parse the JSON body of your request: it is not valid JSON "
                    "(or not valid UTF-8).");
    return false;
  }
  if (!out->is_object()) {
    *e = BadRequest("", "The request body must be a JSON object.");
    return false;
  }
  return true;
}

// A message's content: a string or an array of text parts.
bool ParseContent(const Json& j, const std::string& param, std::string* out, ApiError* e) {
  if (j.is_string()) {
    *out = j.get<std::string>();
    return true;
  }
  if (!j.is_array()) return (*e = WrongType(param, j, "a string or an array of text parts"), false);
  out->clear();
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string p = absl::StrCat(param, "[", i, "]");
    const Json& part = j[i];
    if (!part.is_object()) return (*e = WrongType(p, part, "an object"), false);
    auto type = part.find("type");
    auto text = part.find("text");
    const bool text_type = type != part.end() && type->is_string() &&
                           (*type == "text" || *type == "input_text" || *type == "output_text");
    if (!text_type) {
      *e = BadRequest(p + ".type", "Only text content parts (type \"text\") are supported.");
      return false;
    }
    if (text == part.end() || !text->is_string()) {
      *e = WrongType(p + ".text", text == part.end() ? Json() : *text, "a string");
      return false;
    }
    out->append(text->get<std::string>());
  }
  return true;
}

bool ParseRole(const Json& j, const std::string& param, std::string* role, ApiError* e) {
  if (!j.is_string()) return (*e = WrongType(param, j, "a string"), false);
  *role = j.get<std::string>();
  if (*role == "developer") *role = "system";  // OpenAI's newer name for it
  if (*role != "system" && *role != "user" && *role != "assistant" && *role != "tool") {
    *e = BadRequest(param, absl::StrCat("Invalid value for '", param, "': '", j.get<std::string>(),
                                        "'. Supported values are: 'system', 'developer', "
                                        "'user', 'assistant' and 'tool'."));
    return false;
  }
  return true;
}

bool ParseMessageList(const Json& list, const char* name, TurnRequest* out, ApiError* e) {
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string p = absl::StrCat(name, "[", i, "]");
    const Json& m = list[i];
    if (!m.is_object()) return (*e = WrongType(p, m, "an object"), false);
    v1::ChatMessage msg;
    auto role = m.find("role");
    if (role == m.end())
      return (*e = BadRequest(p + ".role", "Missing required parameter: '" + p + ".role'."), false);
    std::string r;
    if (!ParseRole(*role, p + ".role", &r, e)) return false;
    msg.set_role(r);
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      *e = BadRequest(p + ".content", "Missing required parameter: '" + p + ".content'.");
      return false;
    }
    if (!ParseContent(*content, p + ".content", msg.mutable_content(), e)) return false;
    out->messages.push_back(std::move(msg));
  }
  return true;
}

// Fields both APIs share: model, sampling, stream, conversation_id, cache_salt.
bool ParseCommon(const Reader& r, const char* max_tokens_name, const ParseLimits& limits,
                 TurnRequest* out, ApiError* e) {
  if (r.Find("model") == nullptr) {
    *e = BadRequest("model", "Missing required parameter: 'model'.");
    return false;
  }
  if (!r.String("model", &out->model, e)) return false;
  std::optional<double> temperature, top_p;
  if (!r.Number("temperature", 0, 2, &temperature, e)) return false;
  if (!r.Number("top_p", 0, 1, &top_p, e)) return false;
  if (top_p.has_value() && *top_p <= 0) {
    *e = BadRequest("top_p", "'top_p' must be greater than 0.");
    return false;
  }
  if (temperature) out->sampling.set_temperature(static_cast<float>(*temperature));
  if (top_p) out->sampling.set_top_p(static_cast<float>(*top_p));
  const int64_t max_len =
      limits.max_model_len > 0 ? limits.max_model_len : std::numeric_limits<int32_t>::max();
  std::optional<int64_t> max_tokens, seed, top_k;
  if (!r.Integer(max_tokens_name, 1, max_len, &max_tokens, e)) return false;
  if (!r.Integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                 &seed, e)) {
    return false;
  }
  if (!r.Integer("top_k", 0, std::numeric_limits<int32_t>::max(), &top_k, e)) return false;
  if (max_tokens) out->sampling.set_max_tokens(static_cast<uint32_t>(*max_tokens));
  if (seed) out->sampling.set_seed(static_cast<uint64_t>(*seed));
  if (top_k) out->sampling.set_top_k(static_cast<uint32_t>(*top_k));
  // vLLM's extension: keep generating past EOS (benchmarks, tests).
  bool ignore_eos = false;
  if (!r.Bool("ignore_eos", &ignore_eos, e)) return false;
  out->sampling.set_ignore_eos(ignore_eos);
  if (!r.Bool("stream", &out->stream, e)) return false;
  if (!r.String("conversation_id", &out->conversation_id, e)) return false;
  if (!r.String("cache_salt", &out->cache_salt, e)) return false;
  std::string user;
  if (!r.String("user", &user, e)) return false;
  return true;
}

}  // namespace

ApiError BadRequest(std::string param, std::string message) {
  ApiError e;
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

std::string ErrorBody(const ApiError& error) {
  Json j = {{"error",
             {{"message", error.message},
              {"type", error.type},
              {"param", error.param.empty() ? Json() : Json(error.param)},
              {"code", error.code.empty() ? Json() : Json(error.code)}}}};
  return Dump(j);
}

ApiError FromGrpc(const grpc::Status& status) {
  ApiError e;
  e.message = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      e.status = 400;
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      e.status = 401;
      e.type = "authentication_error";
      e.code = "invalid_api_key";
      break;
    case grpc::StatusCode::PERMISSION_DENIED:
      e.status = 403;
      e.type = "permission_error";
      break;
    case grpc::StatusCode::NOT_FOUND:
      e.status = 404;
      e.code = "not_found";
      break;
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::FAILED_PRECONDITION:
      e.status = 409;
      e.code = "conversation_busy";
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      if (std::optional<absl::Duration> d = GrpcRetryDelay(status); d.has_value()) {
        e.status = 429;
        e.type = "rate_limit_error";
        e.code = "rate_limit_exceeded";
        e.retry_after_s = static_cast<int>(std::max<int64_t>(
            1, absl::ToInt64Seconds(*d + absl::Seconds(1) - absl::Nanoseconds(1))));
      } else if (absl::StrContains(status.error_message(), "tokens of context")) {
        e.status = 400;
        e.code = "context_length_exceeded";
      } else {
        e.status = 429;
        e.type = "rate_limit_error";
        e.code = "overloaded";
        e.retry_after_s = 1;
      }
      break;
    case grpc::StatusCode::UNAVAILABLE:
      e.status = 503;
      e.type = "server_error";
      e.code = "no_healthy_worker";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      e.status = 504;
      e.type = "timeout";
      break;
    default:
      e.status = 500;
      e.type = "server_error";
      break;
  }
  return e;
}

std::optional<TurnRequest> ParseChatRequest(std::string_view body, const ParseLimits& limits,
                                            ApiError* e) {
  Json j;
  if (!ParseBody(body, &j, e)) return std::nullopt;
  Reader r(j);
  TurnRequest out;
  const char* max_tokens_name =
      r.Find("max_completion_tokens") != nullptr ? "max_completion_tokens" : "max_tokens";
  if (!ParseCommon(r, max_tokens_name, limits, &out, e)) return std::nullopt;
  const Json* messages = r.Find("messages");
  if (messages == nullptr) {
    *e = BadRequest("messages", "Missing required parameter: 'messages'.");
    return std::nullopt;
  }
  if (!messages->is_array())
    return (*e = WrongType("messages", *messages, "an array"), std::nullopt);
  if (messages->empty()) {
    *e = BadRequest("messages", "'messages' must contain at least one message.");
    return std::nullopt;
  }
  if (!ParseMessageList(*messages, "messages", &out, e)) return std::nullopt;
  std::optional<int64_t> n;
  if (!r.Integer("n", 1, 1, &n, e)) return std::nullopt;
  if (const Json* stop = r.Find("stop"); stop != nullptr) {
    std::vector<std::string> stops;
    if (stop->is_string()) {
      stops.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const Json& s : *stop) {
        if (!s.is_string()) return (*e = WrongType("stop", s, "a string"), std::nullopt);
        stops.push_back(s.get<std::string>());
      }
    } else {
      return (*e = WrongType("stop", *stop, "a string or an array of strings"), std::nullopt);
    }
    if (stops.size() > kMaxStops) {
      *e = BadRequest("stop", absl::StrCat("At most ", kMaxStops, " stop sequences."));
      return std::nullopt;
    }
    for (std::string& s : stops) *out.sampling.add_stop() = std::move(s);
  }
  bool logprobs = false;
  if (!r.Bool("logprobs", &logprobs, e)) return std::nullopt;
  out.sampling.set_logprobs(logprobs);
  std::optional<int64_t> top_logprobs;
  if (!r.Integer("top_logprobs", 0, 20, &top_logprobs, e)) return std::nullopt;
  if (top_logprobs.has_value() && *top_logprobs > 0 && !logprobs) {
    *e = BadRequest("top_logprobs", "'top_logprobs' requires 'logprobs' to be true.");
    return std::nullopt;
  }
  out.sampling.set_top_logprobs(static_cast<uint32_t>(top_logprobs.value_or(0)));
  if (const Json* so = r.Find("stream_options"); so != nullptr) {
    if (!so->is_object()) return (*e = WrongType("stream_options", *so, "an object"), std::nullopt);
    Reader sr(*so);
    if (!sr.Bool("include_usage", &out.include_usage, e)) {
      e->param = "stream_options.include_usage";
      return std::nullopt;
    }
  }
  return out;
}

std::optional<TurnRequest> ParseResponsesRequest(std::string_view body, const ParseLimits& limits,
                                                 ApiError* e) {
  Json j;
  if (!ParseBody(body, &j, e)) return std::nullopt;
  Reader r(j);
  TurnRequest out;
  if (!ParseCommon(r, "max_output_tokens", limits, &out, e)) return std::nullopt;
  if (!r.String("previous_response_id", &out.previous_response_id, e)) return std::nullopt;
  if (!r.String("instructions", &out.instructions, e)) return std::nullopt;
  if (!r.Bool("store", &out.store, e)) return std::nullopt;
  const Json* input = r.Find("input");
  if (input == nullptr) {
    *e = BadRequest("input", "Missing required parameter: 'input'.");
    return std::nullopt;
  }
  if (input->is_string()) {
    v1::ChatMessage m;
    m.set_role("user");
    m.set_content(input->get<std::string>());
    out.messages.push_back(std::move(m));
  } else if (input->is_array()) {
    if (input->empty()) {
      *e = BadRequest("input", "'input' must contain at least one item.");
      return std::nullopt;
    }
    if (!ParseMessageList(*input, "input", &out, e)) return std::nullopt;
  } else {
    return (*e = WrongType("input", *input, "a string or an array of input items"), std::nullopt);
  }
  return out;
}

TurnPlan PlanTurn(const google::protobuf::RepeatedPtrField<v1::ChatMessage>& committed,
                  const std::vector<v1::ChatMessage>& sent) {
  uint32_t p = 0;
  while (p < static_cast<uint32_t>(committed.size()) && p < sent.size() &&
         committed[static_cast<int>(p)].role() == sent[p].role() &&
         committed[static_cast<int>(p)].content() == sent[p].content()) {
    ++p;
  }
  TurnPlan plan;
  if (p == static_cast<uint32_t>(committed.size()) && p < sent.size()) {
    plan.kind = TurnPlan::Kind::kExtend;
    plan.keep = p;
    plan.suffix_begin = p;
    return plan;
  }
  // Divergence, or the sent history is a prefix of the committed one (a
  // regenerate): at least one message must be sent.
  const uint32_t keep = p == sent.size() ? p - 1 : p;
  if (keep == 0) return plan;  // kNew
  plan.kind = TurnPlan::Kind::kFork;
  plan.keep = keep;
  plan.suffix_begin = keep;
  return plan;
}

namespace {
Json TopLogprobEntry(const TokenLogprob& t) {
  Json bytes = Json::array();
  for (unsigned char c : t.token) bytes.push_back(static_cast<int>(c));
  // OpenAI's stand-in for an unknown log-probability (a re-tokenized token
  // that ends a reply cut at a stop string has none).
  return {{"token", t.token},
          {"logprob", std::isfinite(t.logprob) ? Json(t.logprob) : Json(-9999.0)},
          {"bytes", std::move(bytes)}};
}
}  // namespace

Json LogprobEntry(const TokenLogprob& t) {
  Json entry = TopLogprobEntry(t);
  Json top = Json::array();
  for (const TokenLogprob& alt : t.top) top.push_back(TopLogprobEntry(alt));
  entry["top_logprobs"] = std::move(top);
  return entry;
}

Json ChatUsage(const v1::Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens()},
          {"completion_tokens", usage.completion_tokens()},
          {"total_tokens", usage.prompt_tokens() + usage.completion_tokens()},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens()}}}};
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace hc::router::http
