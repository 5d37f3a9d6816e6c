// Checks and label access shared by the retrieval-statistics kernels.
#pragma once

#include <ATen/ATen.h>

#include "hamming_common.h"

namespace pyhash {

// Labels are int64 class ids [N] (relevant iff equal) or int64 bit masks [N, words] (relevant iff
// they share a bit); pyhash.metrics packs multi-hot rows into masks.
inline void check_retrieval_inputs(const at::Tensor& queries, const at::Tensor& database,
                                   const at::Tensor& query_labels,
                                   const at::Tensor& database_labels, int64_t topk) {
  check_pair(queries, database);
  TORCH_CHECK(topk >= 1, "topk must be >= 1, got ", topk);
  TORCH_CHECK(query_labels.scalar_type() == at::kLong && database_labels.scalar_type() == at::kLong,
              "labels must be int64 (class ids or packed label masks)");
  TORCH_CHECK(query_labels.dim() == database_labels.dim() && query_labels.dim() >= 1 &&
                  query_labels.dim() <= 2,
              "query and database labels must both be 1-D class ids or both 2-D label masks");
  TORCH_CHECK(query_labels.size(0) == queries.size(0), "query_labels has ", query_labels.size(0),
              " rows for ", queries.size(0), " queries");
  TORCH_CHECK(database_labels.size(0) == database.size(0), "database_labels has ",
              database_labels.size(0), " rows for ", database.size(0), " database codes");
  if (query_labels.dim() == 2)
    TORCH_CHECK(query_labels.size(1) == database_labels.size(1),
                "label masks must have the same number of words");
  TORCH_CHECK(query_labels.device() == queries.device() &&
                  database_labels.device() == queries.device(),
              "labels must be on the same device as the codes");
}

// Host-side view (CPU kernels): contiguous int64 labels.
struct LabelView {
  at::Tensor storage;
  const int64_t* data;
  int64_t words;  // 0 for class ids
  explicit LabelView(const at::Tensor& labels)
      : storage(labels.contiguous()), data(storage.data_ptr<int64_t>()),
        words(labels.dim() == 2 ? labels.size(1) : 0) {}
  bool relevant(int64_t i, const LabelView& other, int64_t j) const {
    if (words == 0) return data[i] == other.data[j];
    for (int64_t w = 0; w < words; ++w)
      if (data[i * words + w] & other.data[j * words + w]) return true;
    return false;
  }
};

}  // namespace pyhash
