// IDX files: the format of MNIST and Fashion-MNIST (images and labels), gzip'd or not.
#pragma once

#include <torch/torch.h>

#include <filesystem>

#include "torchfit/dataset.hpp"
#include "torchfit/export.hpp"

namespace torchfit {

/// Reads an IDX file (http://yann.lecun.com/exdb/mnist/: two zero bytes, a type byte, a rank
/// byte, the rank's sizes as big-endian int32, then the values row-major, big-endian), gzip'd or
/// not (zlib tells from the content, not the name). Returns a tensor of the file's shape and
/// type: uint8 (0x08), int8 (0x09), int16 (0x0B), int32 (0x0C), float32 (0x0D), float64 (0x0E).
/// Throws DataError naming the file for a missing or unreadable file, a wrong magic or type, a
/// file shorter or longer than its header says, or a damaged gzip stream.
TORCHFIT_EXPORT torch::Tensor read_idx(const std::filesystem::path& path);

/// Writes `values` as an IDX file (any of the types above, any rank from 1 to 255), gzip'd when
/// `gzip`; atomically (a temporary file renamed over `path`). For tests and converters.
TORCHFIT_EXPORT void write_idx(const std::filesystem::path& path, const torch::Tensor& values, bool gzip = false);

/// An image classification set from a pair of IDX files (MNIST's layout): the images, uint8
/// [N, H, W] (or [N, C, H, W]), become the input "image" as uint8 [N, C, H, W] (C = 1 for
/// [N, H, W]); the labels, [N], the target "label" as int64 class indices. In memory, as bytes
/// (60,000 28x28 images: 47 MB). Throws DataError when a file is bad (read_idx), the images are
/// not 3-D or 4-D, or the counts differ.
TORCHFIT_EXPORT TensorDataset read_idx_images(const std::filesystem::path& images, const std::filesystem::path& labels);
/// The images alone (data to predict on): the input "image", no target.
TORCHFIT_EXPORT TensorDataset read_idx_images(const std::filesystem::path& images);

}  // namespace torchfit
