#include "worker/runtime/host_cache_memory.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hc::runtime {

absl::StatusOr<std::unique_ptr<HostCacheMemory>> HostCacheMemory::Create(const KvLayout& kv,
                                                                         const MambaLayout& mamba,
                                                                         int num_ranks) {
  if (num_ranks <= 0) return absl::InvalidArgumentError("num_ranks must be positive");
  if (kv.dtype != DType::kF32 || mamba.conv_dtype != DType::kF32) {
    return absl::InvalidArgumentError("HostCacheMemory stores fp32 only");
  }
  if (kv.num_layers < 0 || kv.num_blocks < 0 || kv.block_size <= 0 ||
      (kv.num_layers > 0 && (kv.num_kv_heads <= 0 || kv.head_dim <= 0))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid KV layout: layers=", kv.num_layers, " blocks=", kv.num_blocks,
        " block_size=", kv.block_size, " kv_heads=", kv.num_kv_heads, " head_dim=", kv.head_dim));
  }
  if (mamba.num_layers < 0 || mamba.num_slots < 0 ||
      (mamba.num_layers > 0 &&
       (mamba.conv_dim <= 0 || mamba.conv_width < 1 || mamba.num_heads <= 0 ||
        mamba.head_dim <= 0 || mamba.state_size <= 0))) {
    return absl::InvalidArgumentError("invalid Mamba state layout");
  }
  return std::unique_ptr<HostCacheMemory>(new HostCacheMemory(kv, mamba, num_ranks));
}

HostCacheMemory::HostCacheMemory(const KvLayout& kv, const MambaLayout& mamba, int num_ranks)
    : kv_(kv), mamba_(mamba), num_ranks_(num_ranks) {
  kv_data_.resize(static_cast<size_t>(num_ranks) * kv.num_layers);
  for (auto& kv_pair : kv_data_) {
    for (auto& t : kv_pair) t.assign(kv.BlockElems() * kv.num_blocks, 0.0f);
  }
  conv_data_.resize(static_cast<size_t>(num_ranks) * mamba.num_layers);
  ssm_data_.resize(conv_data_.size());
  for (auto& t : conv_data_) t.assign(mamba.ConvSlotElems() * mamba.num_slots, 0.0f);
  for (auto& t : ssm_data_) t.assign(mamba.SsmSlotElems() * mamba.num_slots, 0.0f);
}

absl::Status HostCacheMemory::CopyKvBlock(BlockId src, BlockId dst, int num_tokens) {
  if (src < 0 || dst < 0 || src >= kv_.num_blocks || dst >= kv_.num_blocks || src == dst ||
      num_tokens <= 0 || num_tokens > kv_.block_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad KV block copy ", src, " -> ", dst, " of ", num_tokens, " tokens"));
  }
  const size_t block = kv_.BlockElems();
  const size_t n = static_cast<size_t>(num_tokens) * kv_.num_kv_heads * kv_.head_dim;
  for (auto& kv_pair : kv_data_) {
    for (auto& t : kv_pair) std::memcpy(&t[dst * block], &t[src * block], n * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status HostCacheMemory::CopyMambaSlot(SlotId src, SlotId dst) {
  if (src < 0 || dst < 0 || src >= mamba_.num_slots || dst >= mamba_.num_slots || src == dst) {
    return absl::InvalidArgumentError(absl::StrCat("bad Mamba slot copy ", src, " -> ", dst));
  }
  const size_t conv = mamba_.ConvSlotElems();
  const size_t ssm = mamba_.SsmSlotElems();
  for (auto& t : conv_data_) std::memcpy(&t[dst * conv], &t[src * conv], conv * sizeof(float));
  for (auto& t : ssm_data_) std::memcpy(&t[dst * ssm], &t[src * ssm], ssm * sizeof(float));
  return absl::OkStatus();
}

absl::Status HostCacheMemory::ZeroMambaSlot(SlotId slot) {
  if (slot < 0 || slot >= mamba_.num_slots) {
    return absl::InvalidArgumentError(absl::StrCat("bad Mamba slot ", slot));
  }
  const size_t conv = mamba_.ConvSlotElems();
  const size_t ssm = mamba_.SsmSlotElems();
  for (auto& t : conv_data_) std::fill_n(&t[slot * conv], conv, 0.0f);
  for (auto& t : ssm_data_) std::fill_n(&t[slot * ssm], ssm, 0.0f);
  return absl::OkStatus();
}

size_t HostCacheMemory::TotalBytes() const {
  size_t elems = 0;
  for (const auto& kv_pair : kv_data_) elems += kv_pair[0].size() + kv_pair[1].size();
  for (const auto& t : conv_data_) elems += t.size();
  for (const auto& t : ssm_data_) elems += t.size();
  return elems * sizeof(float);
}

}  // namespace hc::runtime
