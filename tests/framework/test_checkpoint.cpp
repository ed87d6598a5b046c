// Weights checkpoints: round trip, atomic writes, and every kind of bad file refused clearly.
#define BOOST_TEST_MODULE checkpoint
#include <boost/test/unit_test.hpp>

#include "../support.hpp"

namespace tf = torchfit;

namespace {
tf::Net ring_net() {
  return torch::nn::Sequential(torch::nn::Linear(2, 4), torch::nn::ReLU(), torch::nn::Linear(4, 8), torch::nn::ReLU(),
                               torch::nn::Linear(8, 1));
}
std::string load_error(tf::Net net, const std::filesystem::path& path, const std::string& model = "") {
  try {
    tf::load_weights(net, path, model);
  } catch (const tf::CheckpointError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

BOOST_AUTO_TEST_CASE(round_trip_restores_every_weight_and_the_logs) {
  test::TempDir dir;
  auto a = ring_net();
  a.set_name("dnn_binary");
  tf::Logs logs;
  logs.set("epoch", 7);
  logs.set("val_acc", 0.9);
  tf::save_weights(a, dir / "ckpt", "", logs);
  auto b = ring_net();
  b.set_name("dnn_binary");
  auto info = tf::load_weights(b, dir / "ckpt");
  BOOST_TEST(info.model == "dnn_binary");
  BOOST_TEST(info.logs.at("epoch") == 7);
  for (size_t i = 0; i < a.parameters().size(); ++i) BOOST_TEST(torch::equal(a.parameters()[i], b.parameters()[i]));
  BOOST_TEST(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator()) == 1);
}

BOOST_AUTO_TEST_CASE(another_models_weights_are_refused_by_name_and_shape) {
  test::TempDir dir;
  tf::Net linear = torch::nn::Linear(2, 1);
  tf::save_weights(linear, dir / "lin", "linear_regression");
  const auto by_name = load_error(ring_net(), dir / "lin", "dnn_binary");
  BOOST_TEST(by_name.find("written for model 'linear_regression', not 'dnn_binary'") != std::string::npos);
  const auto by_shape = load_error(ring_net(), dir / "lin");
  BOOST_TEST(by_shape.find("0.weight [4, 2] is missing from it") != std::string::npos);
  BOOST_TEST(by_shape.find("weight [1, 2] is saved but not in the model") != std::string::npos);
  tf::Net wider = torch::nn::Linear(3, 1);
  BOOST_TEST(load_error(wider, dir / "lin").find("weight: saved [1, 2], model [1, 3]") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(damaged_files_are_refused_at_any_truncation) {
  test::TempDir dir;
  tf::save_weights(ring_net(), dir / "good");
  const auto bytes = test::read_file(dir / "good");
  for (size_t cut : {size_t{0}, size_t{1}, size_t{10}, bytes.size() / 4, bytes.size() / 2, bytes.size() - 30, bytes.size() - 1}) {
    test::write_file(dir / "cut", bytes.substr(0, cut));
    const auto msg = load_error(ring_net(), dir / "cut");
    BOOST_TEST_INFO("cut at " << cut);
    BOOST_TEST((msg.find("damaged") != std::string::npos || msg.find("empty") != std::string::npos ||
                msg.find("not a torchfit checkpoint") != std::string::npos));
  }
  std::string noise(4096, '\0');
  std::mt19937 rng(1);
  for (auto& c : noise) c = static_cast<char>(rng());
  test::write_file(dir / "noise", noise);
  BOOST_TEST(load_error(ring_net(), dir / "noise").find("cannot be read") != std::string::npos);
  BOOST_TEST(load_error(ring_net(), dir / "missing").find("does not exist") != std::string::npos);
  BOOST_TEST(load_error(ring_net(), dir.path).find("is a folder") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(newer_format_is_refused_with_both_versions) {
  test::TempDir dir;
  tf::save_weights(ring_net(), dir / "future");
  auto bytes = test::read_file(dir / "future");
  bytes[16] = 99;  // the envelope's format version (see docs/reliability.md)
  test::write_file(dir / "future", bytes);
  const auto msg = load_error(ring_net(), dir / "future");
  BOOST_TEST(msg.find("format version 99, newer than this torchfit reads (2)") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(failed_save_leaves_the_previous_file_and_no_temporaries) {
  test::TempDir dir;
  auto net = ring_net();
  tf::save_weights(net, dir / "ckpt");
  const auto before = test::read_file(dir / "ckpt");
  BOOST_CHECK_THROW(tf::save_weights(net, dir / "missing" / "ckpt"), tf::CheckpointError);
  BOOST_TEST(test::read_file(dir / "ckpt") == before);
  BOOST_TEST(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator()) == 1);
}

BOOST_AUTO_TEST_CASE(snapshot_and_restore_are_exact) {
  auto net = ring_net();
  auto snap = tf::snapshot_weights(net);
  auto original = net.parameters()[0].clone();
  {
    torch::NoGradGuard g;
    net.parameters()[0].add_(1.0);
  }
  tf::restore_weights(net, snap);
  BOOST_TEST(torch::equal(net.parameters()[0], original));
}

BOOST_AUTO_TEST_CASE(a_snapshot_taken_again_reuses_its_memory_and_holds_the_new_weights) {
  auto net = ring_net();
  tf::WeightSnapshot snap;
  tf::snapshot_weights(net, snap);
  const void* memory = snap[0].second.data_ptr();
  {
    torch::NoGradGuard g;
    for (auto& p : net.parameters()) p.add_(0.5);
  }
  tf::snapshot_weights(net, snap);
  BOOST_TEST(snap[0].second.data_ptr() == memory);
  const auto params = net.parameters();
  BOOST_REQUIRE(snap.size() == params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    BOOST_TEST(torch::equal(snap[i].second, params[i]));
    BOOST_TEST(snap[i].second.data_ptr() != params[i].data_ptr());  // a copy, not the net's own tensor
    BOOST_TEST(!snap[i].second.requires_grad());
  }
  {
    torch::NoGradGuard g;
    for (auto& p : net.parameters()) p.zero_();
  }
  tf::restore_weights(net, snap);
  BOOST_TEST(torch::equal(net.parameters()[0], snap[0].second));
  BOOST_TEST(net.parameters()[0].abs().sum().item<double>() > 0);

  // Another layout (here another net) gets memory of its own.
  tf::Net other = torch::nn::Sequential(torch::nn::Linear(3, 5));
  tf::snapshot_weights(other, snap);
  BOOST_REQUIRE(snap.size() == 2);
  BOOST_TEST(snap[0].second.sizes() == other.parameters()[0].sizes());
  BOOST_TEST(torch::equal(snap[1].second, other.parameters()[1]));

  // A reused snapshot saves and loads like any other.
  test::TempDir dir;
  tf::save_snapshot(snap, dir / "ckpt");
  tf::Net loaded = torch::nn::Sequential(torch::nn::Linear(3, 5));
  tf::load_weights(loaded, dir / "ckpt");
  BOOST_TEST(torch::equal(loaded.parameters()[0], other.parameters()[0]));
}

BOOST_AUTO_TEST_CASE(a_safetensors_header_with_numbers_that_are_no_sizes_is_refused) {
  // A shape entry too large for an integer (once undefined behaviour inside the JSON library,
  // found by fuzz_weights), a fraction, a negative offset: each refused by name.
  auto file = [](const std::string& shape, const std::string& offsets) {
    const std::string header = "{\"w\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return bytes + header + std::string(8, '\0');
  };
  BOOST_TEST(torchfit::parse_safetensors(file("[2]", "[0,8]"), "ok").at("w").numel() == 2);
  for (const auto& [shape, offsets] : std::vector<std::pair<std::string, std::string>>{
           {"[4999999999999999999999999999999]", "[0,8]"}, {"[1.5]", "[0,8]"}, {"[2]", "[-1,8]"}, {"2", "[0,8]"}}) {
    try {
      torchfit::parse_safetensors(file(shape, offsets), "bad");
      BOOST_FAIL("expected a CheckpointError for shape " + shape + ", offsets " + offsets);
    } catch (const torchfit::CheckpointError& e) {
      BOOST_TEST(std::string(e.what()).find("tensor 'w'") != std::string::npos, e.what());
    }
  }
}
