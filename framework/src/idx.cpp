// IDX files through zlib: read gzip'd or plain (gzread handles both), written atomically.
#include "torchfit/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "torchfit/errors.hpp"
#include "torchfit/io.hpp"

namespace torchfit {

namespace {

namespace fs = std::filesystem;

struct IdxType {
  uint8_t code;
  torch::ScalarType type;
  size_t bytes;
  const char* name;
};
constexpr std::array<IdxType, 6> kTypes = {{{0x08, torch::kByte, 1, "uint8"},
                                            {0x09, torch::kChar, 1, "int8"},
                                            {0x0B, torch::kShort, 2, "int16"},
                                            {0x0C, torch::kInt, 4, "int32"},
                                            {0x0D, torch::kFloat, 4, "float32"},
                                            {0x0E, torch::kDouble, 8, "float64"}}};

const IdxType* type_of_code(uint8_t code) {
  for (const auto& t : kTypes) {
    if (t.code == code) return &t;
  }
  return nullptr;
}

const IdxType* type_of_tensor(torch::ScalarType type) {
  for (const auto& t : kTypes) {
    if (t.type == type) return &t;
  }
  return nullptr;
}

std::string hex_byte(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", b);
  return buf;
}

// IDX is big-endian; swaps each `width`-byte value in place on a little-endian host.
void to_from_big_endian(char* data, size_t count, size_t width) {
  if (width == 1) return;
  const uint16_t probe = 1;
  if (*reinterpret_cast<const uint8_t*>(&probe) == 0) return;  // big-endian host
  for (size_t i = 0; i < count; ++i) std::reverse(data + i * width, data + (i + 1) * width);
}

class GzReader {
 public:
  explicit GzReader(const fs::path& path) : path_(path) {
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) {
      std::error_code ec;
      if (!fs::exists(path, ec)) throw DataError("IDX file " + path.string() + " does not exist");
      throw DataError("cannot open IDX file " + path.string() + ": " + std::strerror(errno));
    }
    gzbuffer(file_, 1 << 18);
  }
  ~GzReader() {
    if (file_) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to `n` bytes into `out`; fewer only at the end of the data.
  size_t read(void* out, size_t n) {
    size_t done = 0;
    auto* p = static_cast<char*>(out);
    while (done < n) {
      const auto chunk = static_cast<unsigned>(std::min<size_t>(n - done, size_t{1} << 30));
      const int got = gzread(file_, p + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_, &code);
        throw DataError("IDX file " + path_.string() + " cannot be read: " + (msg ? msg : "zlib error"));
      }
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    return done;
  }
  // Why the data ended early: a damaged gzip stream says so; a plain file is just short.
  std::string why_short() {
    int code = 0;
    const char* msg = gzerror(file_, &code);
    return code != Z_OK && msg && *msg ? std::string(" (") + msg + ")" : std::string();
  }

 private:
  fs::path path_;
  gzFile file_ = nullptr;
};

}  // namespace

torch::Tensor read_idx(const fs::path& path) {
  const std::string where = "IDX file " + path.string();
  GzReader in(path);
  uint8_t magic[4] = {0, 0, 0, 0};
  const size_t got = in.read(magic, 4);
  if (got < 4) {
    throw DataError(where + " is too short to be an IDX file (" + std::to_string(got) +
                    " bytes; an IDX file starts with a 4-byte magic number)");
  }
  if (magic[0] != 0 || magic[1] != 0) {
    throw DataError(where + " is not an IDX file: it starts with " + hex_byte(magic[0]) + " " + hex_byte(magic[1]) +
                    ", an IDX file with 0x00 0x00");
  }
  const IdxType* type = type_of_code(magic[2]);
  if (!type) {
    throw DataError(where + " has the unknown value type " + hex_byte(magic[2]) +
                    " (IDX types: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)");
  }
  const int rank = magic[3];
  if (rank == 0) throw DataError(where + " has rank 0 (no dimensions)");
  std::vector<int64_t> sizes(static_cast<size_t>(rank));
  uint64_t count = 1;
  for (int d = 0; d < rank; ++d) {
    uint8_t b[4];
    if (in.read(b, 4) < 4) {
      throw DataError(where + " is truncated in its header: it ends before dimension " + std::to_string(d + 1) +
                      " of " + std::to_string(rank) + in.why_short());
    }
    const uint32_t n = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
    if (n > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
      throw DataError(where + " has a negative size in dimension " + std::to_string(d + 1));
    }
    sizes[static_cast<size_t>(d)] = n;
    if (n != 0 && count > (uint64_t{1} << 40) / n) {
      throw DataError(where + " claims more than 2^40 values; it is damaged or not an IDX file");
    }
    count *= n;
  }
  const uint64_t expected = count * type->bytes;
  // Read into memory as it comes, so that a header promising more than the file holds costs no
  // more than the file's data (never a huge allocation up front).
  std::string data;
  data.reserve(static_cast<size_t>(std::min<uint64_t>(expected, uint64_t{64} << 20)));
  std::vector<char> chunk(1 << 20);
  while (data.size() < expected) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk.size(), expected - data.size()));
    const size_t n = in.read(chunk.data(), want);
    data.append(chunk.data(), n);
    if (n < want) {
      throw DataError(where + " is truncated: its header says " + std::to_string(count) + " " + type->name +
                      " values (" + std::to_string(expected) + " bytes) after the header, the file has " +
                      std::to_string(data.size()) + in.why_short());
    }
  }
  char extra;
  if (in.read(&extra, 1) > 0) {
    throw DataError(where + " is longer than its header says (" + std::to_string(expected) +
                    " bytes of values expected); it is damaged or not what it seems");
  }
  to_from_big_endian(data.data(), static_cast<size_t>(count), type->bytes);
  auto out = torch::empty(sizes, torch::TensorOptions().dtype(type->type));
  if (expected > 0) std::memcpy(out.data_ptr(), data.data(), static_cast<size_t>(expected));
  return out;
}

void write_idx(const fs::path& path, const torch::Tensor& values, bool gzip) {
  if (!values.defined()) throw DataError("write_idx: no tensor to write to " + path.string());
  const IdxType* type = type_of_tensor(values.scalar_type());
  if (!type) {
    throw DataError("write_idx: IDX files hold uint8, int8, int16, int32, float32 or float64 values, not " +
                    std::string(c10::toString(values.scalar_type())) + " (" + path.string() + ")");
  }
  if (values.dim() < 1 || values.dim() > 255) {
    throw DataError("write_idx: an IDX file has 1 to 255 dimensions, the tensor has " + std::to_string(values.dim()));
  }
  std::string bytes;
  bytes.push_back(0);
  bytes.push_back(0);
  bytes.push_back(static_cast<char>(type->code));
  bytes.push_back(static_cast<char>(values.dim()));
  for (const int64_t n : values.sizes()) {
    if (n > std::numeric_limits<int32_t>::max()) throw DataError("write_idx: a dimension of " + std::to_string(n) + " is too large for IDX");
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((n >> shift) & 0xFF));
  }
  const auto cpu = values.to(torch::kCPU).contiguous();
  const size_t header = bytes.size();
  const size_t data_bytes = static_cast<size_t>(cpu.numel()) * type->bytes;
  bytes.resize(header + data_bytes);
  if (data_bytes > 0) std::memcpy(bytes.data() + header, cpu.data_ptr(), data_bytes);
  to_from_big_endian(bytes.data() + header, static_cast<size_t>(cpu.numel()), type->bytes);
  if (gzip) {
    z_stream z{};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      throw DataError("write_idx: zlib cannot start compressing");
    }
    std::string packed(deflateBound(&z, static_cast<uLong>(bytes.size())), '\0');
    z.next_in = reinterpret_cast<Bytef*>(bytes.data());
    z.avail_in = static_cast<uInt>(bytes.size());
    z.next_out = reinterpret_cast<Bytef*>(packed.data());
    z.avail_out = static_cast<uInt>(packed.size());
    const int rc = deflate(&z, Z_FINISH);
    packed.resize(z.total_out);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw DataError("write_idx: zlib failed to compress " + path.string());
    bytes.swap(packed);
  }
  atomic_write_bytes(path, bytes, "IDX file");
}

namespace {
// [N, H, W] or [N, C, H, W] images, as [N, C, H, W].
torch::Tensor images_from(const fs::path& images_path) {
  auto images = read_idx(images_path);
  if (images.dim() != 3 && images.dim() != 4) {
    throw DataError("IDX file " + images_path.string() + " holds " + std::to_string(images.dim()) +
                    "-D values; images are [N, H, W] or [N, C, H, W]");
  }
  if (images.size(0) == 0) throw DataError("IDX file " + images_path.string() + " holds no images");
  return (images.dim() == 3 ? images.unsqueeze(1) : images).contiguous();
}
}  // namespace

TensorDataset read_idx_images(const fs::path& images_path) {
  return TensorDataset(Fields().add_input("image", images_from(images_path)));
}

TensorDataset read_idx_images(const fs::path& images_path, const fs::path& labels_path) {
  auto images = images_from(images_path);
  auto labels = read_idx(labels_path);
  if (labels.dim() != 1) {
    throw DataError("IDX file " + labels_path.string() + " holds " + std::to_string(labels.dim()) +
                    "-D values; labels are [N]");
  }
  if (labels.is_floating_point()) {
    throw DataError("IDX file " + labels_path.string() + " holds floating-point values; labels are class indices");
  }
  if (images.size(0) != labels.size(0)) {
    throw DataError("the images (" + images_path.string() + ") are " + std::to_string(images.size(0)) +
                    " but the labels (" + labels_path.string() + ") " + std::to_string(labels.size(0)) +
                    "; they must be as many");
  }
  if (labels.lt(0).any().item<bool>()) {
    throw DataError("IDX file " + labels_path.string() + " holds a negative label; labels are class indices from 0");
  }
  return TensorDataset(Fields().add_input("image", images).add_target("label", labels.to(torch::kLong)));
}

}  // namespace torchfit
