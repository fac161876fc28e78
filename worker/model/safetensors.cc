#include "worker/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace hc::model {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr char kIndexName[] = "model.safetensors.index.json";

std::string ShapeStr(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string Quoted(std::string_view s) { return absl::StrCat("'", std::string(s), "'"); }

// Known safetensors dtypes that we do not load.
bool IsKnownUnsupportedDType(const std::string& d) {
  static const char* kKnown[] = {"F64",     "I64", "I32",     "I16",     "I8",      "U8",
                                 "U16",     "U32", "U64",     "BOOL",    "F8_E4M3", "F8_E5M2",
                                 "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};
  for (const char* k : kKnown) {
    if (d == k) return true;
  }
  return false;
}

}  // namespace

const char* DTypeName(runtime::DType dtype) {
  switch (dtype) {
    case runtime::DType::kF32:
      return "F32";
    case runtime::DType::kBF16:
      return "BF16";
    case runtime::DType::kF16:
      return "F16";
  }
  return "?";
}

int64_t TensorSpec::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---- Reader ---------------------------------------------------------------------

struct SafetensorsCheckpoint::Mapping {
  std::string path;
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr != nullptr) munmap(addr, size);
  }
};

SafetensorsCheckpoint::~SafetensorsCheckpoint() = default;

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& path) {
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  std::error_code ec;
  std::string index_path;
  std::vector<std::string> files;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::exists(dir / kIndexName, ec)) {
      index_path = (dir / kIndexName).string();
    } else if (fs::exists(dir / "model.safetensors", ec)) {
      files.push_back((dir / "model.safetensors").string());
    } else {
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
      }
      if (files.size() != 1) {
        return absl::NotFoundError(absl::StrCat("no ", kIndexName, " or model.safetensors in ",
                                                path, " (found ", files.size(),
                                                " *.safetensors files)"));
      }
    }
  } else if (absl::EndsWith(path, ".json")) {
    index_path = path;
  } else {
    if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat("no such file: ", path));
    files.push_back(path);
  }

  if (index_path.empty()) {
    HC_RETURN_IF_ERROR(ckpt->AddFile(files[0]));
    return ckpt;
  }

  // Sharded: the index maps every tensor to its shard file.
  HC_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  auto index = json::Parse(text);
  if (!index.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", index.status().message()));
  }
  const json::Value* map = index->Find("weight_map");
  if (map == nullptr || !map->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": no \"weight_map\" object"));
  }
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, std::vector<std::string>> by_file;
  for (const auto& [name, file] : map->AsObject()) {
    if (!file.is_string() || file.AsString().empty() ||
        file.AsString().find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": tensor ", Quoted(name), " maps to an invalid shard name"));
    }
    by_file[file.AsString()].push_back(name);
  }
  for (const auto& [file, names] : by_file) {
    const std::string shard = (dir / file).string();
    if (!fs::exists(shard, ec)) {
      return absl::NotFoundError(absl::StrCat("shard ", shard, " (listed in ", index_path,
                                              " for tensor ", Quoted(names[0]), ") is missing"));
    }
    HC_RETURN_IF_ERROR(ckpt->AddFile(shard));
    for (const std::string& name : names) {
      auto it = ckpt->entries_.find(name);
      if (it == ckpt->entries_.end() || ckpt->mappings_[it->second.file]->path != shard) {
        return absl::NotFoundError(absl::StrCat("tensor ", Quoted(name), " is listed in ",
                                                index_path, " for shard ", file,
                                                " but that shard does not contain it"));
      }
    }
  }
  return ckpt;
}

namespace {

// A whole file mapped read-only; the caller owns (and unmaps) it.
struct MappedFile {
  void* addr = nullptr;
  size_t size = 0;
};

absl::StatusOr<MappedFile> MapReadOnly(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot stat ", path));
  }
  const size_t file_size = static_cast<size_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(path, ": truncated file (", file_size,
                                            " bytes, shorter than the 8-byte header length)"));
  }
  void* addr = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("cannot mmap ", path, ": ", strerror(errno)));
  }
  return MappedFile{.addr = addr, .size = file_size};
}

// The JSON header of a mapped file (at least 8 bytes) and where its data
// section starts.
absl::StatusOr<json::Value> ParseHeader(const std::string& path, const unsigned char* base,
                                        size_t file_size, size_t* data_start) {
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad header length ", header_len,
                                                   " (file has ", file_size,
                                                   " bytes; header limit ", kMaxHeaderBytes, ")"));
  }
  const std::string_view header(reinterpret_cast<const char*>(base + 8), header_len);
  auto root = json::Parse(header);
  if (!root.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": bad header: ", root.status().message()));
  }
  if (!root->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad header: not a JSON object"));
  }
  *data_start = 8 + header_len;
  return root;
}

absl::StatusOr<runtime::DType> ParseDType(const std::string& where, const std::string& d) {
  if (d == "F32") return runtime::DType::kF32;
  if (d == "BF16") return runtime::DType::kBF16;
  if (d == "F16") return runtime::DType::kF16;
  if (IsKnownUnsupportedDType(d)) {
    return absl::UnimplementedError(
        absl::StrCat(where, ": dtype ", d, " is not supported (F32, BF16, F16 are)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(where, ": unknown dtype \"", d, "\""));
}

// One tensor's header entry, checked against the data section
// [data, data + data_size): its view and its byte range in the section.
struct ParsedTensor {
  TensorView view;
  uint64_t begin = 0, end = 0;
};

absl::StatusOr<ParsedTensor> ParseTensor(const std::string& where, const json::Value& info,
                                         const unsigned char* data, size_t data_size) {
  const json::Value* dtype = info.Find("dtype");
  const json::Value* shape = info.Find("shape");
  const json::Value* offsets = info.Find("data_offsets");
  if (dtype == nullptr || !dtype->is_string() || shape == nullptr || !shape->is_array() ||
      offsets == nullptr || !offsets->is_array() || offsets->AsArray().size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": bad header entry (needs dtype, shape, data_offsets[2])"));
  }
  ParsedTensor t;
  const std::string& d = dtype->AsString();
  HC_ASSIGN_OR_RETURN(t.view.dtype, ParseDType(where, d));
  int64_t numel = 1;
  for (const json::Value& dim : shape->AsArray()) {
    if (!dim.is_int() || dim.AsInt64() < 0 || dim.AsInt64() > (int64_t{1} << 40) ||
        (dim.AsInt64() > 0 && numel > (int64_t{1} << 50) / dim.AsInt64())) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": bad shape dimension"));
    }
    t.view.shape.push_back(dim.AsInt64());
    numel *= dim.AsInt64();
  }
  const json::Value& b = offsets->AsArray()[0];
  const json::Value& en = offsets->AsArray()[1];
  if (!b.is_int() || !en.is_int() || b.AsInt64() < 0 || en.AsInt64() < b.AsInt64()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": bad data_offsets"));
  }
  t.begin = static_cast<uint64_t>(b.AsInt64());
  t.end = static_cast<uint64_t>(en.AsInt64());
  const uint64_t need = static_cast<uint64_t>(numel) * runtime::DTypeSize(t.view.dtype);
  if (t.end - t.begin != need) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": data_offsets span ", t.end - t.begin,
                                                   " bytes but shape ", ShapeStr(t.view.shape),
                                                   " of ", d, " needs ", need));
  }
  if (t.end > data_size) {
    return absl::DataLossError(
        absl::StrCat(where, ": truncated file: the tensor needs bytes [", t.begin, ", ", t.end,
                     ") of the data section, which holds only ", data_size, " bytes"));
  }
  t.view.data = data + t.begin;
  t.view.num_bytes = need;
  return t;
}

struct Span {
  uint64_t begin, end;
  std::string name;
};

// INVALID_ARGUMENT naming two tensors of `path` whose (non-empty) data overlap.
absl::Status CheckNoOverlap(const std::string& path, std::vector<Span> spans) {
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end && spans[i].end > spans[i].begin) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensors ", Quoted(spans[i - 1].name),
                                                     " and ", Quoted(spans[i].name), " overlap"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SafetensorsCheckpoint::AddFile(const std::string& path) {
  HC_ASSIGN_OR_RETURN(const MappedFile mapped, MapReadOnly(path));
  auto mapping = std::make_unique<Mapping>();
  mapping->path = path;
  mapping->addr = mapped.addr;
  mapping->size = mapped.size;
  const auto* base = static_cast<const unsigned char*>(mapped.addr);
  size_t data_start = 0;
  HC_ASSIGN_OR_RETURN(const json::Value root, ParseHeader(path, base, mapped.size, &data_start));
  const size_t data_size = mapped.size - data_start;
  const int file_index = static_cast<int>(mappings_.size());

  std::vector<Span> spans;
  std::vector<std::pair<std::string, Entry>> new_entries;
  for (const auto& [name, info] : root.AsObject()) {
    if (name == "__metadata__") {
      if (!info.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": __metadata__ is not an object"));
      }
      for (const auto& [k, v] : info.AsObject()) {
        if (v.is_string()) metadata_.emplace(k, v.AsString());
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor ", Quoted(name), " in ", path);
    HC_ASSIGN_OR_RETURN(ParsedTensor t, ParseTensor(where, info, base + data_start, data_size));
    spans.push_back({t.begin, t.end, name});
    new_entries.emplace_back(name, Entry{.view = std::move(t.view), .file = file_index});
  }
  HC_RETURN_IF_ERROR(CheckNoOverlap(path, std::move(spans)));
  for (auto& [name, e] : new_entries) {
    if (!entries_.emplace(name, std::move(e)).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", Quoted(name), " appears in more than one file (again in ", path, ")"));
    }
  }
  mappings_.push_back(std::move(mapping));
  return absl::OkStatus();
}

absl::StatusOr<TensorView> SafetensorsCheckpoint::Get(std::string_view name) const {
  auto it = entries_.find(absl::string_view(name.data(), name.size()));
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor ", Quoted(name), " not found in checkpoint ",
                                            mappings_.empty() ? "" : mappings_[0]->path));
  }
  return it->second.view;
}

bool SafetensorsCheckpoint::Has(std::string_view name) const {
  return entries_.contains(absl::string_view(name.data(), name.size()));
}

std::vector<std::string> SafetensorsCheckpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, e] : entries_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> SafetensorsCheckpoint::files() const {
  std::vector<std::string> out;
  for (const auto& m : mappings_) out.push_back(m->path);
  return out;
}

// ---- Writer ---------------------------------------------------------------------

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& specs,
                              const TensorFiller& fill,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorSpec*> order;
  for (const TensorSpec& s : specs) order.push_back(&s);
  std::stable_sort(order.begin(), order.end(), [](const TensorSpec* a, const TensorSpec* b) {
    return runtime::DTypeSize(a->dtype) > runtime::DTypeSize(b->dtype);
  });

  json::Value header = json::Value::MakeObject();
  if (!metadata.empty()) {
    json::Value meta = json::Value::MakeObject();
    for (const auto& [k, v] : metadata) meta.Set(k, json::Value::String(v));
    header.Set("__metadata__", std::move(meta));
  }
  uint64_t offset = 0;
  for (const TensorSpec* s : order) {
    if (header.Find(s->name) != nullptr || s->name == "__metadata__") {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name ", Quoted(s->name)));
    }
    json::Value t = json::Value::MakeObject();
    t.Set("dtype", json::Value::String(DTypeName(s->dtype)));
    json::Value shape = json::Value::MakeArray();
    for (int64_t d : s->shape) shape.Append(json::Value::Int(d));
    t.Set("shape", std::move(shape));
    json::Value offs = json::Value::MakeArray();
    offs.Append(json::Value::Int(static_cast<int64_t>(offset)));
    offset += s->NumBytes();
    offs.Append(json::Value::Int(static_cast<int64_t>(offset)));
    t.Set("data_offsets", std::move(offs));
    header.MutableObject().emplace_back(s->name, std::move(t));
  }
  std::string text = json::Serialize(header);
  text.append((8 - text.size() % 8) % 8, ' ');

  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", path, ": ", strerror(errno)));
  }
  auto fail = [&](std::string what) {
    std::fclose(f);
    return absl::InternalError(absl::StrCat("writing ", path, ": ", what));
  };
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((text.size() >> (8 * i)) & 0xFF);
  if (std::fwrite(len, 1, 8, f) != 8 ||
      std::fwrite(text.data(), 1, text.size(), f) != text.size()) {
    return fail(strerror(errno));
  }
  std::vector<char> buf;
  for (const TensorSpec* s : order) {
    buf.assign(s->NumBytes(), 0);
    absl::Status st = fill(*s, buf.data());
    if (!st.ok()) {
      std::fclose(f);
      return st;
    }
    if (std::fwrite(buf.data(), 1, buf.size(), f) != buf.size()) return fail(strerror(errno));
  }
  if (std::fflush(f) != 0 || fsync(fileno(f)) != 0) return fail(strerror(errno));
  if (std::fclose(f) != 0) return absl::InternalError(absl::StrCat("closing ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> WriteShardedSafetensors(
    const std::string& dir, const std::vector<TensorSpec>& specs, const TensorFiller& fill,
    size_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  std::vector<std::vector<TensorSpec>> shards;
  size_t current = 0;
  for (const TensorSpec& s : specs) {
    if (shards.empty() || (current > 0 && current + s.NumBytes() > max_shard_bytes)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(s);
    current += s.NumBytes();
  }
  std::vector<std::string> names;
  json::Value weight_map = json::Value::MakeObject();
  uint64_t total = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    HC_RETURN_IF_ERROR(WriteSafetensors(dir + "/" + name, shards[i], fill, metadata));
    for (const TensorSpec& s : shards[i]) {
      weight_map.MutableObject().emplace_back(s.name, json::Value::String(name));
      total += s.NumBytes();
    }
    names.push_back(name);
  }
  json::Value index = json::Value::MakeObject();
  json::Value meta = json::Value::MakeObject();
  meta.Set("total_size", json::Value::Int(static_cast<int64_t>(total)));
  index.Set("metadata", std::move(meta));
  index.Set("weight_map", std::move(weight_map));
  const std::string path = dir + "/" + kIndexName;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << json::Serialize(index, {.indent = 2}) << "\n";
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return names;
}

// ---- In-memory source -------------------------------------------------------------

void InMemoryTensorSource::Add(std::string name, runtime::DType dtype, std::vector<int64_t> shape,
                               std::string bytes) {
  TensorSpec spec{name, dtype, shape};
  HC_CHECK(bytes.size() == spec.NumBytes())
      << "InMemoryTensorSource::Add(" << name << "): " << bytes.size() << " bytes for shape "
      << ShapeStr(shape);
  tensors_[std::move(name)] = Stored{dtype, std::move(shape), std::move(bytes)};
}

void InMemoryTensorSource::AddF32(std::string name, std::vector<int64_t> shape,
                                  const std::vector<float>& values) {
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  Add(std::move(name), runtime::DType::kF32, std::move(shape), std::move(bytes));
}

absl::StatusOr<TensorView> InMemoryTensorSource::Get(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor ", Quoted(name), " not found"));
  }
  TensorView v;
  v.dtype = it->second.dtype;
  v.shape = it->second.shape;
  v.data = it->second.bytes.data();
  v.num_bytes = it->second.bytes.size();
  return v;
}

bool InMemoryTensorSource::Has(std::string_view name) const { return tensors_.count(name) > 0; }

std::vector<std::string> InMemoryTensorSource::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors_) names.push_back(name);
  return names;
}

}  // namespace hc::model
