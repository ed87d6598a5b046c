// IDX files: every type and rank round-trips, gzip'd or not; big-endian on disk; every damage named.
#define BOOST_TEST_MODULE idx
#include <boost/test/unit_test.hpp>

#include <torchfit/idx.hpp>

#include "../support.hpp"

namespace tf = torchfit;
namespace fs = std::filesystem;
using test::error_of;

namespace {
std::string bytes_of(const fs::path& p) { return test::read_file(p); }
void write_bytes(const fs::path& p, const std::string& bytes) { test::write_file(p, bytes); }
// An IDX header: magic with `type`, then the sizes.
std::string header(uint8_t type, std::vector<uint32_t> sizes) {
  std::string h{'\0', '\0', static_cast<char>(type), static_cast<char>(sizes.size())};
  for (uint32_t n : sizes) {
    for (int shift = 24; shift >= 0; shift -= 8) h.push_back(static_cast<char>((n >> shift) & 0xFF));
  }
  return h;
}
}  // namespace

BOOST_AUTO_TEST_CASE(every_type_and_rank_round_trips_gzipped_or_not) {
  test::TempDir dir;
  const std::vector<torch::ScalarType> types = {torch::kByte, torch::kChar, torch::kShort,
                                                torch::kInt,  torch::kFloat, torch::kDouble};
  for (const auto type : types) {
    for (const std::vector<int64_t>& shape : std::vector<std::vector<int64_t>>{{7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 3}}) {
      auto values = (torch::randn(shape) * 50).to(type);
      for (const bool gzip : {false, true}) {
        BOOST_TEST_INFO(c10::toString(type) << " " << shape.size() << "-D, gzip " << gzip);
        const auto path = dir / (gzip ? "v.idx.gz" : "v.idx");
        tf::write_idx(path, values, gzip);
        const auto bytes = bytes_of(path);
        BOOST_TEST((bytes.compare(0, 2, "\x1f\x8b") == 0) == gzip);  // gzip's magic, or IDX's
        const auto back = tf::read_idx(path);
        BOOST_TEST(back.scalar_type() == type);
        BOOST_TEST(back.sizes().vec() == shape);
        BOOST_TEST(torch::equal(back, values));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(values_are_big_endian_as_mnist_writes_them) {
  test::TempDir dir;
  write_bytes(dir / "i.idx", header(0x0C, {2}) + std::string("\x01\x02\x03\x04\xff\xff\xff\xfe", 8));
  const auto v = tf::read_idx(dir / "i.idx");
  BOOST_TEST(v[0].item<int32_t>() == 0x01020304);
  BOOST_TEST(v[1].item<int32_t>() == -2);
  // The gzip'd file is read the same whatever its name says.
  tf::write_idx(dir / "plain-name.idx", v, true);
  BOOST_TEST(torch::equal(tf::read_idx(dir / "plain-name.idx"), v));
}

BOOST_AUTO_TEST_CASE(damaged_files_are_named_with_what_was_expected) {
  test::TempDir dir;
  const auto p = dir / "x.idx";
  auto read_error = [&](const std::string& bytes) {
    write_bytes(p, bytes);
    return error_of([&] { tf::read_idx(p); });
  };
  const std::string name = "IDX file " + p.string();
  BOOST_TEST(error_of([&] { tf::read_idx(dir / "missing.idx"); }) ==
             "IDX file " + (dir / "missing.idx").string() + " does not exist");
  BOOST_TEST(read_error("") == name + " is too short to be an IDX file (0 bytes; an IDX file starts with a 4-byte magic number)");
  BOOST_TEST(read_error("PK\x03\x04 a zip") == name + " is not an IDX file: it starts with 0x50 0x4B, an IDX file with 0x00 0x00");
  BOOST_TEST(read_error(header(0x07, {1}) + "x").find(name + " has the unknown value type 0x07") == 0);
  BOOST_TEST(read_error(header(0x08, {3, 4}).substr(0, 10)) ==
             name + " is truncated in its header: it ends before dimension 2 of 2");
  BOOST_TEST(read_error(header(0x08, {3, 4}) + std::string(7, 'a')) ==
             name + " is truncated: its header says 12 uint8 values (12 bytes) after the header, the file has 7");
  BOOST_TEST(read_error(header(0x08, {2}) + "abc").find(name + " is longer than its header says") == 0);
  // A header that promises far more than the file holds is refused without allocating it.
  BOOST_TEST(read_error(header(0x0E, {0x7fffffff, 0x7fffffff}) + "abc") ==
             name + " claims more than 2^40 values; it is damaged or not an IDX file");
  BOOST_TEST(read_error(header(0x08, {1u << 30}) + "abc").find(name + " is truncated: its header says 1073741824") == 0);
  // A gzip'd file cut short: zlib's own complaint is added.
  tf::write_idx(dir / "full.gz", torch::randint(0, 255, {400, 28, 28}).to(torch::kByte), true);
  const auto gz = bytes_of(dir / "full.gz");
  const auto msg = read_error(gz.substr(0, gz.size() / 2));
  BOOST_TEST(msg.find(name + " is truncated: its header says 313600 uint8 values") == 0, msg);
  BOOST_TEST(msg.find("unexpected end of file") != std::string::npos, msg);
  // Damaged compressed bytes: an error, never a crash.
  auto flipped = gz;
  for (size_t i = 20; i < flipped.size(); i += 97) flipped[i] = static_cast<char>(~flipped[i]);
  write_bytes(p, flipped);
  BOOST_CHECK_THROW(tf::read_idx(p), tf::DataError);  // gzip's CRC catches what inflate does not
  // Writing what IDX cannot hold.
  BOOST_CHECK_THROW(tf::write_idx(dir / "b.idx", torch::ones({2}, torch::kBool)), tf::DataError);
  BOOST_CHECK_THROW(tf::write_idx(dir / "l.idx", torch::ones({2}, torch::kLong)), tf::DataError);
}

BOOST_AUTO_TEST_CASE(image_and_label_files_make_a_dataset_of_bytes_and_class_indices) {
  test::TempDir dir;
  const auto images = torch::randint(0, 256, {10, 28, 28}).to(torch::kByte);
  const auto labels = torch::arange(10).remainder(3).to(torch::kByte);
  tf::write_idx(dir / "images.gz", images, true);
  tf::write_idx(dir / "labels.gz", labels, true);
  const auto ds = tf::read_idx_images(dir / "images.gz", dir / "labels.gz");
  BOOST_TEST(ds.size() == 10);
  BOOST_TEST(ds.fields()["image"].sizes().vec() == std::vector<int64_t>({10, 1, 28, 28}));
  BOOST_TEST(ds.fields()["image"].scalar_type() == torch::kByte);
  BOOST_TEST(torch::equal(ds.fields()["image"].squeeze(1), images));
  BOOST_TEST(ds.fields()["label"].scalar_type() == torch::kLong);
  BOOST_TEST(torch::equal(ds.fields()["label"], labels.to(torch::kLong)));
  // What does not pair up is named.
  tf::write_idx(dir / "nine.gz", labels.narrow(0, 0, 9), true);
  BOOST_TEST(error_of([&] { tf::read_idx_images(dir / "images.gz", dir / "nine.gz"); }) ==
             "the images (" + (dir / "images.gz").string() + ") are 10 but the labels (" + (dir / "nine.gz").string() +
                 ") 9; they must be as many");
  BOOST_TEST(error_of([&] { tf::read_idx_images(dir / "labels.gz", dir / "labels.gz"); }).find("holds 1-D values; images are") !=
             std::string::npos);
  tf::write_idx(dir / "neg.gz", torch::full({10}, -1, torch::kChar), true);
  BOOST_TEST(error_of([&] { tf::read_idx_images(dir / "images.gz", dir / "neg.gz"); }).find("holds a negative label") !=
             std::string::npos);
}
