#include "worker/runtime/backend_cache_memory.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hc::runtime {

namespace {

// Why `kv` / `mamba` cannot back a cache, or OK. Blocks and slots are required
// even for a group without layers: the cache library addresses every token by
// block and every conversation by slot.
absl::Status ValidateLayouts(const KvLayout& kv, const MambaLayout& mamba) {
  if (kv.dtype != DType::kF32 && kv.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache dtype ", TorchDTypeName(kv.dtype),
                                                   " is not supported (float32 or bfloat16)"));
  }
  if (mamba.conv_dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("Mamba conv state dtype ", TorchDTypeName(mamba.conv_dtype),
                     " is not supported (the Mamba states are float32)"));
  }
  if (kv.num_blocks <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV layout needs at least one block: num_blocks=", kv.num_blocks));
  }
  if (mamba.num_slots <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Mamba layout needs at least one slot: num_slots=", mamba.num_slots));
  }
  if (kv.num_layers < 0 || kv.block_size <= 0 ||
      (kv.num_layers > 0 && (kv.num_kv_heads <= 0 || kv.head_dim <= 0))) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid KV layout: layers=", kv.num_layers, " block_size=", kv.block_size,
                     " kv_heads=", kv.num_kv_heads, " head_dim=", kv.head_dim));
  }
  if (mamba.num_layers < 0 ||
      (mamba.num_layers > 0 &&
       (mamba.conv_dim <= 0 || mamba.conv_width < 1 || mamba.num_heads <= 0 ||
        mamba.head_dim <= 0 || mamba.state_size <= 0))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid Mamba state layout: layers=", mamba.num_layers, " conv_dim=", mamba.conv_dim,
        " conv_width=", mamba.conv_width, " heads=", mamba.num_heads, " head_dim=", mamba.head_dim,
        " state_size=", mamba.state_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BackendCacheMemory>> BackendCacheMemory::Create(
    const KvLayout& kv, const MambaLayout& mamba, std::vector<Backend*> rank_backends) {
  if (rank_backends.empty()) {
    return absl::InvalidArgumentError("cache memory needs at least one rank backend");
  }
  for (size_t r = 0; r < rank_backends.size(); ++r) {
    if (rank_backends[r] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", r, " has no backend"));
    }
  }
  HC_RETURN_IF_ERROR(ValidateLayouts(kv, mamba));
  auto mem = std::unique_ptr<BackendCacheMemory>(
      new BackendCacheMemory(kv, mamba, std::move(rank_backends)));
  HC_RETURN_IF_ERROR(mem->Allocate());
  return mem;
}

absl::Status BackendCacheMemory::Allocate() {
  const size_t kv_bytes =
      kv_layout_.BlockElems() * kv_layout_.num_blocks * DTypeSize(kv_layout_.dtype);
  const size_t conv_bytes = mamba_layout_.ConvSlotElems() * mamba_layout_.num_slots * sizeof(float);
  const size_t ssm_bytes = mamba_layout_.SsmSlotElems() * mamba_layout_.num_slots * sizeof(float);
  // A zero-sized tensor (conv width 1) still gets a minimal allocation so the
  // accessors return valid pointers.
  auto make = [](Backend* b, size_t bytes, DeviceBuffer* out) -> absl::Status {
    HC_ASSIGN_OR_RETURN(*out, DeviceBuffer::Create(b, bytes > 0 ? bytes : sizeof(float)));
    return b->Memset(out->data(), 0, out->size());
  };
  kv_bufs_.resize(backends_.size());
  conv_bufs_.resize(backends_.size());
  ssm_bufs_.resize(backends_.size());
  for (size_t r = 0; r < backends_.size(); ++r) {
    Backend* b = backends_[r];
    kv_bufs_[r].resize(kv_layout_.num_layers);
    for (auto& pair : kv_bufs_[r]) {
      for (DeviceBuffer& t : pair) HC_RETURN_IF_ERROR(make(b, kv_bytes, &t));
    }
    conv_bufs_[r].resize(mamba_layout_.num_layers);
    ssm_bufs_[r].resize(mamba_layout_.num_layers);
    for (int l = 0; l < mamba_layout_.num_layers; ++l) {
      HC_RETURN_IF_ERROR(make(b, conv_bytes, &conv_bufs_[r][l]));
      HC_RETURN_IF_ERROR(make(b, ssm_bytes, &ssm_bufs_[r][l]));
    }
    HC_RETURN_IF_ERROR(b->Synchronize());
  }
  return absl::OkStatus();
}

absl::Status BackendCacheMemory::CopyKvBlock(BlockId src, BlockId dst, int num_tokens) {
  const KvLayout& kv = kv_layout_;
  if (src < 0 || dst < 0 || src >= kv.num_blocks || dst >= kv.num_blocks || src == dst ||
      num_tokens <= 0 || num_tokens > kv.block_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad KV block copy ", src, " -> ", dst, " of ", num_tokens, " tokens"));
  }
  const size_t elem = DTypeSize(kv.dtype);
  const size_t block = kv.BlockElems() * elem;  // bytes
  const size_t bytes = static_cast<size_t>(num_tokens) * kv.num_kv_heads * kv.head_dim * elem;
  for (size_t r = 0; r < backends_.size(); ++r) {
    for (auto& pair : kv_bufs_[r]) {
      for (DeviceBuffer& t : pair) {
        HC_RETURN_IF_ERROR(backends_[r]->CopyDeviceToDevice(t.as<char>() + dst * block,
                                                            t.as<char>() + src * block, bytes));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status BackendCacheMemory::CopyMambaSlot(SlotId src, SlotId dst) {
  const MambaLayout& m = mamba_layout_;
  if (src < 0 || dst < 0 || src >= m.num_slots || dst >= m.num_slots || src == dst) {
    return absl::InvalidArgumentError(absl::StrCat("bad Mamba slot copy ", src, " -> ", dst));
  }
  const size_t conv = m.ConvSlotElems(), ssm = m.SsmSlotElems();
  for (size_t r = 0; r < backends_.size(); ++r) {
    for (int l = 0; l < m.num_layers; ++l) {
      float* c = conv_bufs_[r][l].as<float>();
      float* s = ssm_bufs_[r][l].as<float>();
      HC_RETURN_IF_ERROR(
          backends_[r]->CopyDeviceToDevice(c + dst * conv, c + src * conv, conv * sizeof(float)));
      HC_RETURN_IF_ERROR(
          backends_[r]->CopyDeviceToDevice(s + dst * ssm, s + src * ssm, ssm * sizeof(float)));
    }
  }
  return absl::OkStatus();
}

absl::Status BackendCacheMemory::ZeroMambaSlot(SlotId slot) {
  const MambaLayout& m = mamba_layout_;
  if (slot < 0 || slot >= m.num_slots) {
    return absl::InvalidArgumentError(absl::StrCat("bad Mamba slot ", slot));
  }
  const size_t conv = m.ConvSlotElems(), ssm = m.SsmSlotElems();
  for (size_t r = 0; r < backends_.size(); ++r) {
    for (int l = 0; l < m.num_layers; ++l) {
      HC_RETURN_IF_ERROR(backends_[r]->Memset(conv_bufs_[r][l].as<float>() + slot * conv, 0,
                                              conv * sizeof(float)));
      HC_RETURN_IF_ERROR(
          backends_[r]->Memset(ssm_bufs_[r][l].as<float>() + slot * ssm, 0, ssm * sizeof(float)));
    }
  }
  return absl::OkStatus();
}

size_t BackendCacheMemory::TotalBytes() const {
  size_t bytes = 0;
  for (const auto& rank : kv_bufs_) {
    for (const auto& pair : rank) bytes += pair[0].size() + pair[1].size();
  }
  for (const auto& rank : conv_bufs_) {
    for (const auto& t : rank) bytes += t.size();
  }
  for (const auto& rank : ssm_bufs_) {
    for (const auto& t : rank) bytes += t.size();
  }
  return bytes;
}

}  // namespace hc::runtime
