// safetensors checkpoints: an mmap-backed reader (one file or a sharded
// checkpoint with model.safetensors.index.json) and a streaming writer.
//
// File format: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the raw little-endian tensor data (offsets relative to its start).
#ifndef HC_WORKER_MODEL_SAFETENSORS_H_
#define HC_WORKER_MODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "worker/model/tensor_source.h"

namespace hc::model {

// "F32", "BF16", "F16".
const char* DTypeName(runtime::DType dtype);

struct TensorSpec {
  std::string name;
  runtime::DType dtype = runtime::DType::kF32;
  std::vector<int64_t> shape;

  int64_t NumElements() const;
  size_t NumBytes() const { return static_cast<size_t>(NumElements()) * runtime::DTypeSize(dtype); }
};

// A TensorSource over safetensors files, memory-mapped read-only.
// Thread-safety: immutable after Open; concurrent Get/Has/Names are safe.
// Tensor data pointers are valid while the object lives; they are aligned to
// their dtype size when the writer kept data offsets aligned (ours and the
// Hugging Face writer do).
class SafetensorsCheckpoint : public TensorSource {
 public:
  // `path`: a .safetensors file, a model.safetensors.index.json, or a
  // directory holding model.safetensors.index.json (sharded), or
  // model.safetensors, or exactly one *.safetensors file.
  //
  // Errors name the file and, where one is involved, the tensor:
  //   NOT_FOUND         missing file / shard, or a tensor listed in the index
  //                     that its shard lacks
  //   INVALID_ARGUMENT  bad header length or JSON, unknown dtype, shape that
  //                     disagrees with data_offsets, overlapping tensors
  //   UNIMPLEMENTED     a known dtype we do not load (e.g. I64, F8_E4M3)
  //   DATA_LOSS         the file is shorter than its header says (truncated)
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& path);

  ~SafetensorsCheckpoint() override;

  absl::StatusOr<TensorView> Get(std::string_view name) const override;
  bool Has(std::string_view name) const override;
  std::vector<std::string> Names() const override;  // sorted

  // `__metadata__` of all files merged (first file wins on conflicts).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The files backing this checkpoint.
  std::vector<std::string> files() const;

 private:
  struct Mapping;
  struct Entry {
    TensorView view;
    int file = 0;
  };
  SafetensorsCheckpoint() = default;
  absl::Status AddFile(const std::string& path);

  std::vector<std::unique_ptr<Mapping>> mappings_;
  absl::flat_hash_map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Produces the bytes of one tensor: must fill exactly spec.NumBytes() bytes
// at `dst` (little-endian, row-major).
using TensorFiller = std::function<absl::Status(const TensorSpec& spec, char* dst)>;

// Writes one safetensors file. Tensors are laid out sorted by dtype size
// (largest first, stable otherwise) so every tensor's data is aligned to its
// element size; the header is padded to a multiple of 8 bytes. `fill` runs
// once per tensor, so peak memory is one tensor. Writes to `path` directly.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& specs,
                              const TensorFiller& fill,
                              const std::map<std::string, std::string>& metadata = {});

// Writes `specs` into `dir` as model-0000i-of-0000n.safetensors shards of at
// most `max_shard_bytes` each (a larger single tensor gets its own shard)
// plus model.safetensors.index.json. Returns the shard file names.
absl::StatusOr<std::vector<std::string>> WriteShardedSafetensors(
    const std::string& dir, const std::vector<TensorSpec>& specs, const TensorFiller& fill,
    size_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});

// Tensors held in memory (tests, converters).
// Thread-safety: Add* must not race with anything; const methods are safe.
class InMemoryTensorSource : public TensorSource {
 public:
  // REQUIRES: bytes.size() == product(shape) * DTypeSize(dtype).
  void Add(std::string name, runtime::DType dtype, std::vector<int64_t> shape, std::string bytes);
  void AddF32(std::string name, std::vector<int64_t> shape, const std::vector<float>& values);

  absl::StatusOr<TensorView> Get(std::string_view name) const override;
  bool Has(std::string_view name) const override;
  std::vector<std::string> Names() const override;

 private:
  struct Stored {
    runtime::DType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Stored, std::less<>> tensors_;
};

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_SAFETENSORS_H_
