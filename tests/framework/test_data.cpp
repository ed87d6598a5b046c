// Data: the loader covers every sample once per epoch, shuffles repeatably; splits are exact.
#define BOOST_TEST_MODULE data
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <map>
#include <set>

#include "../support.hpp"

namespace tf = torchfit;

namespace {
tf::TensorDataset numbered(int64_t n) {
  auto ids = torch::arange(n, torch::kFloat).reshape({n, 1});
  return tf::TensorDataset(ids, ids * 10);
}
std::vector<int64_t> epoch_ids(const tf::DataLoader& loader, uint64_t epoch, std::vector<int64_t>* sizes = nullptr) {
  std::vector<int64_t> ids;
  for (const auto& b : loader.epoch(epoch)) {
    BOOST_TEST(torch::equal(b.target(), b.input() * 10));  // rows stay paired
    if (sizes) sizes->push_back(b.size());
    for (int64_t i = 0; i < b.size(); ++i) ids.push_back(b.input()[i][0].item<int64_t>());
  }
  return ids;
}
}  // namespace

BOOST_AUTO_TEST_CASE(every_sample_once_per_epoch_with_an_uneven_last_batch) {
  tf::DataLoader loader(numbered(10), tf::LoaderOptions(4).shuffle(true).seed(1));
  BOOST_TEST(loader.num_batches() == 3);
  for (uint64_t e = 0; e < 3; ++e) {
    std::vector<int64_t> sizes;
    auto ids = epoch_ids(loader, e, &sizes);
    BOOST_TEST(sizes == std::vector<int64_t>({4, 4, 2}), boost::test_tools::per_element());
    std::set<int64_t> unique(ids.begin(), ids.end());
    BOOST_TEST(ids.size() == 10u);
    BOOST_TEST(unique.size() == 10u);
  }
}

BOOST_AUTO_TEST_CASE(seeded_shuffle_repeats_and_changes_per_epoch) {
  tf::DataLoader a(numbered(50), tf::LoaderOptions(8).shuffle(true).seed(7));
  tf::DataLoader b(numbered(50), tf::LoaderOptions(8).shuffle(true).seed(7));
  tf::DataLoader c(numbered(50), tf::LoaderOptions(8).shuffle(true).seed(8));
  BOOST_TEST(epoch_ids(a, 3) == epoch_ids(b, 3), boost::test_tools::per_element());
  BOOST_TEST(epoch_ids(a, 0) != epoch_ids(a, 1));
  BOOST_TEST(epoch_ids(a, 0) != epoch_ids(c, 0));
}

BOOST_AUTO_TEST_CASE(an_epoch_of_a_temporary_loader_is_safe_to_iterate) {
  // The loader is gone after the range expression; the epoch holds its own copy (the
  // sanitizer build would catch a dangling one).
  std::vector<int64_t> sizes;
  for (const auto& b : tf::DataLoader(numbered(10), 4).shard(1, 2, false).epoch(0)) sizes.push_back(b.size());
  BOOST_TEST(sizes == std::vector<int64_t>({4, 1}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(without_shuffle_batches_are_in_order) {
  tf::DataLoader loader(numbered(5), 2);
  auto ids = epoch_ids(loader, 0);
  BOOST_TEST(ids == std::vector<int64_t>({0, 1, 2, 3, 4}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(drop_last_drops_only_the_partial_batch) {
  tf::DataLoader loader(numbered(10), tf::LoaderOptions(4).drop_last(true));
  BOOST_TEST(loader.num_batches() == 2);
  BOOST_TEST(epoch_ids(loader, 0).size() == 8u);
  BOOST_CHECK_THROW(tf::DataLoader(numbered(3), tf::LoaderOptions(4).drop_last(true)), tf::DataError);
}

BOOST_AUTO_TEST_CASE(unseeded_shuffle_follows_seed_everything) {
  tf::seed_everything(5);
  tf::DataLoader a(numbered(20), tf::LoaderOptions(4).shuffle(true));
  tf::seed_everything(5);
  tf::DataLoader b(numbered(20), tf::LoaderOptions(4).shuffle(true));
  BOOST_TEST(a.seed() == b.seed());
}

BOOST_AUTO_TEST_CASE(split_is_disjoint_complete_and_seeded) {
  auto parts = tf::random_split(numbered(10), std::vector<double>{0.7, 0.3}, 3);
  BOOST_TEST(parts.size() == 2u);
  BOOST_TEST(parts[0].size() == 7);
  BOOST_TEST(parts[1].size() == 3);
  std::set<int64_t> all;
  for (const auto& p : parts)
    for (int64_t i = 0; i < p.size(); ++i) all.insert(p.features()[i][0].item<int64_t>());
  BOOST_TEST(all.size() == 10u);
  auto again = tf::random_split(numbered(10), std::vector<double>{0.7, 0.3}, 3);
  BOOST_TEST(torch::equal(parts[0].features(), again[0].features()));
  auto other = tf::random_split(numbered(10), std::vector<double>{0.7, 0.3}, 4);
  BOOST_TEST(!torch::equal(parts[0].features(), other[0].features()));
  auto counts = tf::random_split(numbered(10), std::vector<int64_t>{2, 3, 5}, 1);
  BOOST_TEST(counts[2].size() == 5);
}

BOOST_AUTO_TEST_CASE(split_remainders_are_handed_out_like_pytorch) {
  auto parts = tf::random_split(numbered(10), std::vector<double>{1.0 / 3, 1.0 / 3, 1.0 / 3}, 1);
  BOOST_TEST(parts[0].size() == 4);
  BOOST_TEST(parts[1].size() == 3);
  BOOST_TEST(parts[2].size() == 3);
}

BOOST_AUTO_TEST_CASE(bad_splits_say_what_is_wrong) {
  try {
    tf::random_split(numbered(10), std::vector<double>{0.5, 0.4}, 1);
    BOOST_FAIL("expected DataError");
  } catch (const tf::DataError& e) {
    BOOST_TEST(std::string(e.what()).find("add up to 0.9") != std::string::npos);
  }
  BOOST_CHECK_THROW(tf::random_split(numbered(10), std::vector<int64_t>{5, 6}, 1), tf::DataError);
  BOOST_CHECK_THROW(tf::random_split(tf::TensorDataset(), std::vector<double>{1.0}, 1), tf::DataError);
}

// ---- batches of any structure, datasets, transforms and workers ----------------------------

namespace {
// Named fields: two inputs and a target, each row holding its own index.
tf::TensorDataset named(int64_t n) {
  auto ids = torch::arange(n, torch::kFloat);
  return tf::TensorDataset(tf::Fields()
                               .add_input("image", ids.reshape({n, 1, 1, 1}).expand({n, 1, 4, 4}).contiguous())
                               .add_input("side", ids.reshape({n, 1}) * 2)
                               .add_target("label", ids.to(torch::kLong)));
}

// Sample i is {"x": [i, i, i], "y": i}; sample `bad` has another shape; sample `throws` throws.
struct Numbers : tf::Dataset {
  int64_t n, bad = -1, throws = -1;
  mutable std::atomic<int64_t> calls{0};
  explicit Numbers(int64_t n) : n(n) {}
  int64_t size() const override { return n; }
  tf::Sample get(int64_t i) const override {
    ++calls;
    if (i == throws) throw std::runtime_error("cannot read record " + std::to_string(i));
    tf::Sample s;
    s.add_input("x", torch::full({i == bad ? 2 : 3}, static_cast<float>(i)));
    s.add_target("y", torch::tensor(i));
    return s;
  }
  std::string name() const override { return "numbers"; }
};

std::vector<torch::Tensor> all_batches(const tf::DataLoader& loader, uint64_t epoch, const std::string& field) {
  std::vector<torch::Tensor> out;
  for (const auto& b : loader.epoch(epoch)) out.push_back(b[field]);
  return out;
}

bool same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

using test::error_of;
}  // namespace

BOOST_AUTO_TEST_CASE(fields_are_read_by_name_and_position_and_say_what_is_there) {
  tf::Batch b(torch::ones({4, 2}), torch::zeros({4, 1}));
  BOOST_TEST(b.size() == 4);
  BOOST_TEST(b.count() == 2u);
  BOOST_TEST(b.name(0) == "x");
  BOOST_TEST(torch::equal(b["y"], b.target()));
  BOOST_TEST(torch::equal(b[0], b.input()));
  BOOST_TEST(b.count(tf::Role::Target) == 1u);
  const auto msg = error_of([&] { (void)b["label"]; });
  BOOST_TEST(msg.find("no field 'label'") != std::string::npos, msg);
  BOOST_TEST(msg.find("x [4, 2] Float, y [4, 1] Float (target)") != std::string::npos, msg);
  BOOST_TEST(error_of([&] { (void)b.input(1); }).find("no input 1") != std::string::npos);
  BOOST_TEST(error_of([&] { b.add_input("x", torch::ones({4})); }).find("two fields are named 'x'") != std::string::npos);
  BOOST_TEST(tf::Batch(torch::ones({3, 1})).has_targets() == false);
}

BOOST_AUTO_TEST_CASE(named_fields_stay_paired_through_shuffle_and_shards) {
  tf::DataLoader loader(named(23), tf::LoaderOptions(5).shuffle(true).seed(3));
  std::set<int64_t> seen;
  for (const auto& b : loader.shard(1, 2, false).epoch(4)) {
    BOOST_TEST(b.count() == 3u);
    BOOST_TEST(b.inputs().size() == 2u);
    BOOST_TEST(b["image"].sizes() == torch::IntArrayRef({b.size(), 1, 4, 4}));
    BOOST_TEST(torch::equal(b["side"].reshape({-1}), b["label"].to(torch::kFloat) * 2));
    BOOST_TEST(torch::equal(b["image"].amax({1, 2, 3}), b["label"].to(torch::kFloat)));
    for (int64_t i = 0; i < b.size(); ++i) seen.insert(b["label"][i].item<int64_t>());
  }
  BOOST_TEST(seen.size() == 11u);  // every other sample of 23: 11 of them on rank 1
  BOOST_CHECK_THROW(tf::TensorDataset(tf::Fields().add_input("a", torch::ones({3, 1})).add_target("b", torch::ones({4}))),
                    tf::DataError);
}

BOOST_AUTO_TEST_CASE(writing_into_a_batch_never_changes_the_dataset) {
  // Without shuffle a batch used to be a view of the dataset: an in-place change to it (a
  // callback "augmenting" ctx.inputs) silently changed the data for every later epoch.
  auto data = numbered(8);
  const auto before = data.features().clone();
  for (bool shuffle : {false, true}) {
    for (const auto& b : tf::DataLoader(data, tf::LoaderOptions(4).shuffle(shuffle).seed(1)).epoch(0)) {
      b.input().mul_(-1);
    }
    tf::DataLoader with_transform(data, tf::LoaderOptions(4).shuffle(shuffle).seed(1).transforms(
                                            {[](tf::Sample& s, tf::Rng&) { s["x"].add_(100); }}));
    for (const auto& b : with_transform.epoch(0)) b.input().mul_(-1);
  }
  BOOST_TEST(torch::equal(data.features(), before));
}

BOOST_AUTO_TEST_CASE(any_number_of_workers_gives_the_same_batches_in_order) {
  // A random transform: its draws depend on (seed, epoch, sample index), never on which thread
  // gathered the sample or when.
  auto noisy = tf::LoaderOptions(3).shuffle(true).seed(11).transforms({tf::transforms::gaussian_noise(1.0)});
  auto ds = std::make_shared<Numbers>(20);
  const auto ref = all_batches(tf::DataLoader(ds, noisy), 2, "x");
  BOOST_REQUIRE_EQUAL(ref.size(), 7u);
  for (int64_t workers : {1, 2, 5}) {
    for (int64_t prefetch : {1, 3}) {
      auto opts = noisy;
      BOOST_TEST_INFO("workers " << workers << ", prefetch " << prefetch);
      BOOST_TEST(same(all_batches(tf::DataLoader(ds, opts.workers(workers).prefetch(prefetch)), 2, "x"), ref));
    }
  }
  // Another epoch draws other noise; starting in the middle (a resume) gives the same rest.
  BOOST_TEST(!same(all_batches(tf::DataLoader(ds, noisy), 3, "x"), ref));
  auto opts = noisy;
  tf::DataLoader two(ds, opts.workers(2));
  const auto epoch = two.epoch(2);
  std::vector<torch::Tensor> rest;
  for (auto it = epoch.begin_at(4); it != epoch.end(); ++it) rest.push_back((*it)["x"]);
  BOOST_TEST(same(rest, std::vector<torch::Tensor>(ref.begin() + 4, ref.end())));
  BOOST_TEST(torch::equal(epoch.batch(5)["x"], ref[5]));
}

BOOST_AUTO_TEST_CASE(the_same_sample_is_augmented_the_same_way_whatever_the_batch) {
  auto ds = std::make_shared<Numbers>(12);
  auto by_sample = [&](int64_t batch_size, bool shuffle) {
    std::map<int64_t, torch::Tensor> out;
    tf::DataLoader loader(ds, tf::LoaderOptions(batch_size).shuffle(shuffle).seed(4).transforms(
                                  {tf::transforms::gaussian_noise(1.0)}));
    for (const auto& b : loader.epoch(1)) {
      for (int64_t i = 0; i < b.size(); ++i) out[b["y"][i].item<int64_t>()] = b["x"][i];
    }
    return out;
  };
  const auto a = by_sample(5, true), b = by_sample(2, false);
  BOOST_REQUIRE_EQUAL(a.size(), 12u);
  for (const auto& [id, x] : a) BOOST_TEST(torch::equal(x, b.at(id)), "sample " << id);
  BOOST_TEST(!torch::equal(a.at(0), a.at(1) - 1));  // each sample its own draw
}

BOOST_AUTO_TEST_CASE(ready_made_transforms_do_what_they_say) {
  tf::Rng rng(1);
  auto image = torch::arange(12, torch::kFloat).reshape({1, 3, 4});
  tf::Sample s;
  s.add_input("x", image.clone());
  tf::transforms::random_horizontal_flip(1.0)(s, rng);
  BOOST_TEST(torch::equal(s["x"], image.flip({-1})));
  tf::transforms::normalize({2.0}, {4.0})(s, rng);
  BOOST_TEST(torch::allclose(s["x"], (image.flip({-1}) - 2) / 4));
  s["x"] = image.clone();
  tf::transforms::random_horizontal_flip(0.0)(s, rng);
  BOOST_TEST(torch::equal(s["x"], image));
  // A crop with padding 1 is the image shifted by at most one pixel, zeros coming in.
  bool moved = false;
  for (int k = 0; k < 20; ++k) {
    s["x"] = image.clone();
    tf::transforms::random_crop(1)(s, rng);
    BOOST_TEST(s["x"].sizes() == image.sizes());
    bool found = false;
    for (int64_t dy = -1; dy <= 1; ++dy) {
      for (int64_t dx = -1; dx <= 1; ++dx) {
        auto shifted = torch::zeros_like(image);
        for (int64_t y = 0; y < 3; ++y)
          for (int64_t x = 0; x < 4; ++x)
            if (y + dy >= 0 && y + dy < 3 && x + dx >= 0 && x + dx < 4) shifted[0][y][x] = image[0][y + dy][x + dx];
        if (torch::equal(shifted, s["x"])) found = true;
      }
    }
    BOOST_TEST(found);
    moved = moved || !torch::equal(s["x"], image);
  }
  BOOST_TEST(moved);
  // Per-channel normalization wants one mean per channel.
  s["x"] = torch::ones({3, 2, 2});
  tf::transforms::normalize({1, 2, 3}, {1, 1, 1})(s, rng);
  BOOST_TEST(torch::equal(s["x"][2], torch::full({2, 2}, -2.0f)));
  s["x"] = torch::ones({2, 2, 2});
  BOOST_CHECK_THROW(tf::transforms::normalize({1, 2, 3}, {1, 1, 1})(s, rng), tf::DataError);
  BOOST_CHECK_THROW(tf::transforms::normalize({0}, {0}), tf::ConfigError);
  BOOST_CHECK_THROW(tf::transforms::normalize({std::nan("")}, {1}), tf::ConfigError);
}

BOOST_AUTO_TEST_CASE(samples_that_disagree_are_named) {
  auto ds = std::make_shared<Numbers>(10);
  ds->bad = 6;
  const auto msg = error_of([&] {
    for (const auto& b : tf::DataLoader(ds, 4).epoch(0)) (void)b;
  });
  BOOST_TEST(msg.find("field 'x' of sample 6 of numbers is x [2] Float but of sample 4 of numbers it is x [3] Float") !=
                 std::string::npos,
             msg);
}

BOOST_AUTO_TEST_CASE(a_sample_that_throws_in_a_worker_is_one_clear_error_and_nothing_hangs) {
  auto ds = std::make_shared<Numbers>(400);
  ds->throws = 37;
  for (int64_t workers : {0, 1, 3}) {
    BOOST_TEST_INFO("workers " << workers);
    int64_t delivered = 0;
    const auto msg = error_of([&] {
      for (const auto& b : tf::DataLoader(ds, tf::LoaderOptions(4).workers(workers)).epoch(0)) {
        (void)b;
        ++delivered;
      }
    });
    BOOST_TEST(msg == "numbers failed on sample 37: cannot read record 37");
    BOOST_TEST(delivered == 9);  // the batches before the failing one arrive, in order
    BOOST_CHECK_THROW(
        for (const auto& b : tf::DataLoader(ds, tf::LoaderOptions(4).workers(workers)).epoch(0)) (void)b, tf::DataError);
  }
  // Leaving an epoch early stops the workers: they gather a few batches ahead, not the epoch.
  ds->throws = -1;
  ds->calls = 0;
  {
    tf::DataLoader loader(ds, tf::LoaderOptions(4).workers(2).prefetch(2));
    for (const auto& b : loader.epoch(0)) {
      (void)b;
      break;
    }
  }
  BOOST_TEST(ds->calls.load() <= 4 * (1 + 2 * 2 + 2));  // the batch read, the prefetched ones, those in flight
}

BOOST_AUTO_TEST_CASE(libtorch_datasets_are_taken_as_they_are) {
  // A dataset written for LibTorch's own loader, and the same one with a per-example transform.
  struct Squares : torch::data::datasets::Dataset<Squares> {
    torch::data::Example<> get(size_t i) override {
      return {torch::full({2}, static_cast<float>(i * i)), torch::tensor(static_cast<int64_t>(i))};
    }
    torch::optional<size_t> size() const override { return 9; }
  };
  auto loader = tf::DataLoader(tf::from_torch(Squares(), "squares"), tf::LoaderOptions(4).shuffle(true).seed(2));
  BOOST_TEST(loader.num_batches() == 3);
  int64_t samples = 0;
  for (const auto& b : loader.epoch(0)) {
    BOOST_TEST(torch::equal(b["x"].select(1, 0), (b["y"] * b["y"]).to(torch::kFloat)));
    samples += b.size();
  }
  BOOST_TEST(samples == 9);
  auto mapped = tf::from_torch(Squares().map(torch::data::transforms::Lambda<torch::data::Example<>>(
                                   [](torch::data::Example<> e) { return torch::data::Example<>{e.data + 1, e.target}; })));
  BOOST_TEST(mapped->get(3)["x"][0].item<float>() == 10.0f);
  // And a model trains on it (fit only sees a loader).
  tf::Trainer trainer(torch::nn::Linear(2, 1), torch::nn::MSELoss());
  auto regression = tf::from_torch(Squares().map(torch::data::transforms::Lambda<torch::data::Example<>>(
      [](torch::data::Example<> e) { return torch::data::Example<>{e.data / 64, e.target.to(torch::kFloat).reshape({1}) / 8}; })));
  const auto h = trainer.fit(tf::DataLoader(regression, 3), tf::FitOptions().epochs(2).device(torch::kCPU));
  BOOST_TEST(h.size() == 2u);
}

BOOST_AUTO_TEST_CASE(subsets_and_splits_of_any_dataset) {
  auto ds = std::make_shared<Numbers>(10);
  auto parts = tf::random_split(std::shared_ptr<const tf::Dataset>(ds), std::vector<double>{0.7, 0.3}, 3);
  BOOST_TEST(parts[0]->size() == 7);
  BOOST_TEST(parts[1]->size() == 3);
  std::set<int64_t> all;
  for (const auto& p : parts) {
    for (const auto& b : tf::DataLoader(p, 2).epoch(0)) {
      for (int64_t i = 0; i < b.size(); ++i) all.insert(b["y"][i].item<int64_t>());
    }
  }
  BOOST_TEST(all.size() == 10u);
  // The same split as TensorDataset's, sample for sample.
  auto tensor_parts = tf::random_split(numbered(10), std::vector<double>{0.7, 0.3}, 3);
  auto sub = tf::subset(std::make_shared<tf::TensorDataset>(numbered(10)), {4, 0, 9});
  BOOST_TEST(torch::equal(tf::DataLoader(sub, 3).epoch(0).batch(0).input().reshape({-1}), torch::tensor({4.f, 0.f, 9.f})));
  BOOST_TEST(parts[1]->get(0)["y"].item<int64_t>() == tensor_parts[1].features()[0][0].item<int64_t>());
  BOOST_CHECK_THROW(tf::subset(ds, {10}), tf::DataError);
  BOOST_CHECK_THROW(tf::DataLoader(ds, tf::LoaderOptions(2).workers(-1)), tf::DataError);
  BOOST_CHECK_THROW(tf::DataLoader(ds, tf::LoaderOptions(2).prefetch(0)), tf::DataError);
}

// ---- streams ---------------------------------------------------------------------------------

namespace {
// Sample i is {"x": [i, i, i], "y": i}, read in order like lines of a file: a reader cannot
// seek, so open() skips. `ends` samples per epoch (unknown to the loader); `throws` throws.
struct Lines : tf::StreamDataset {
  int64_t ends, throws = -1;
  mutable std::atomic<int64_t> opens{0}, reads{0};
  explicit Lines(int64_t ends) : ends(ends) {}
  struct Reader : tf::StreamDataset::Reader {
    const Lines* lines;
    int64_t at = 0;
    explicit Reader(const Lines* l) : lines(l) {}
    std::optional<tf::Sample> next() override {
      if (at >= lines->ends) return std::nullopt;
      ++lines->reads;
      if (at == lines->throws) throw std::runtime_error("line " + std::to_string(at) + " is cut short");
      tf::Sample s;
      s.add_input("x", torch::full({3}, static_cast<float>(at)));
      s.add_target("y", torch::tensor(at));
      ++at;
      return s;
    }
  };
  std::unique_ptr<tf::StreamDataset::Reader> open(uint64_t, int64_t start) const override {
    ++opens;
    auto r = std::make_unique<Reader>(this);
    tf::skip(*r, start);
    return r;
  }
  std::string name() const override { return "lines"; }
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_stream_is_read_in_order_into_the_same_batches_for_any_worker_count) {
  // The same samples as a map-style dataset read in order, with a random transform: the
  // batches are equal (a stream's sample is seeded by its position, which in order is its index).
  auto noisy = tf::LoaderOptions(4).seed(6).transforms({tf::transforms::gaussian_noise(1.0)});
  const auto ref = all_batches(tf::DataLoader(std::make_shared<Numbers>(18), noisy), 1, "x");
  BOOST_REQUIRE_EQUAL(ref.size(), 5u);
  auto lines = std::make_shared<Lines>(18);
  for (int64_t workers : {0, 1, 3}) {
    for (int64_t prefetch : {1, 4}) {
      BOOST_TEST_INFO("workers " << workers << ", prefetch " << prefetch);
      auto opts = noisy;
      tf::DataLoader loader(lines, opts.workers(workers).prefetch(prefetch));
      BOOST_TEST(loader.num_batches() == -1);  // unknown until the stream ends
      lines->reads = 0;
      BOOST_TEST(same(all_batches(loader, 1, "x"), ref));
      BOOST_TEST(lines->reads.load() == 18);  // each sample read once, nothing read past the end
      // last() knows the final batch (reading ahead to find it); begin_at() and batch() resume.
      std::vector<bool> last;
      const auto epoch = loader.epoch(1);
      for (auto it = epoch.begin(); it != epoch.end(); ++it) {
        (void)*it;
        last.push_back(it.last());
      }
      BOOST_TEST(last == std::vector<bool>({false, false, false, false, true}));
      std::vector<torch::Tensor> rest;
      for (auto it = epoch.begin_at(3); it != epoch.end(); ++it) rest.push_back((*it)["x"]);
      BOOST_TEST(same(rest, std::vector<torch::Tensor>(ref.begin() + 3, ref.end())));
      BOOST_TEST(torch::equal(epoch.batch(2)["x"], ref[2]));
    }
  }
  // drop_last drops the partial batch; a batch size that divides the stream has no partial one.
  BOOST_TEST(all_batches(tf::DataLoader(lines, tf::LoaderOptions(4).drop_last(true).workers(2)), 0, "x").size() == 4u);
  BOOST_TEST(all_batches(tf::DataLoader(lines, tf::LoaderOptions(6).workers(2)), 0, "x").size() == 3u);
  BOOST_TEST(all_batches(tf::DataLoader(lines, tf::LoaderOptions(6)), 0, "x").size() == 3u);
}

BOOST_AUTO_TEST_CASE(a_generated_stream_seeks_at_once_and_a_known_size_is_checked) {
  auto make = [](uint64_t epoch, int64_t i) -> std::optional<tf::Sample> {
    if (i >= 10) return std::nullopt;
    tf::Rng rng(tf::Rng::seed_for(3, epoch, static_cast<uint64_t>(i)));
    tf::Sample s;
    s.add_input("x", torch::tensor({static_cast<float>(rng.uniform())}));
    s.add_target("y", torch::tensor(i));
    return s;
  };
  tf::DataLoader unknown(tf::generated_stream(make), tf::LoaderOptions(3).workers(2));
  tf::DataLoader sized(tf::generated_stream(make, "ten", 10), tf::LoaderOptions(3));
  BOOST_TEST(unknown.num_batches() == -1);
  BOOST_TEST(sized.num_batches() == 4);
  BOOST_TEST(sized.num_samples() == 10);
  BOOST_TEST(same(all_batches(unknown, 2, "x"), all_batches(sized, 2, "x")));
  BOOST_TEST(!same(all_batches(sized, 2, "x"), all_batches(sized, 3, "x")));  // each epoch its own data
  // A stream whose size() promises more than it gives is an error, not a short epoch.
  tf::DataLoader liar(tf::generated_stream(make, "liar", 12), tf::LoaderOptions(5).workers(1));
  BOOST_TEST(error_of([&] { all_batches(liar, 0, "x"); }) ==
             "liar ended after 10 samples in epoch 1, but its size() says 12");
  // A sized stream is read up to its size.
  tf::DataLoader six(tf::generated_stream(make, "six", 6), tf::LoaderOptions(4));
  BOOST_TEST(all_batches(six, 0, "y").back().size(0) == 2);
}

BOOST_AUTO_TEST_CASE(a_stream_that_fails_is_one_clear_error_and_nothing_hangs) {
  auto lines = std::make_shared<Lines>(400);
  lines->throws = 37;
  for (int64_t workers : {0, 1, 3}) {
    BOOST_TEST_INFO("workers " << workers);
    int64_t delivered = 0;
    const auto msg = error_of([&] {
      for (const auto& b : tf::DataLoader(lines, tf::LoaderOptions(4).workers(workers)).epoch(0)) {
        (void)b;
        ++delivered;
      }
    });
    BOOST_TEST(msg == "lines failed on sample 37 of epoch 1: line 37 is cut short");
    BOOST_TEST(delivered == 9);
  }
  // Leaving early stops the workers and the reading.
  lines->throws = -1;
  lines->reads = 0;
  {
    tf::DataLoader loader(lines, tf::LoaderOptions(4).workers(2).prefetch(2));
    for (const auto& b : loader.epoch(0)) {
      (void)b;
      break;
    }
  }
  BOOST_TEST(lines->reads.load() <= 4 * (1 + 2 * 2 + 2));
  // What a stream cannot do is refused by name.
  BOOST_TEST(error_of([&] { tf::DataLoader(lines, tf::LoaderOptions(4).shuffle(true)); }).find(
                 "lines is a stream, read in order: the loader cannot shuffle it") == 0);
  tf::DataLoader loader(lines, 4);
  BOOST_TEST(error_of([&] { loader.shard(0, 2, true); }).find("lines is a stream: data-parallel training shards "
                                                              "map-style datasets only") == 0);
  BOOST_TEST(error_of([&] { loader.dataset(); }) == "lines is a stream, not a map-style dataset");
  BOOST_TEST(loader.first_sample().describe() == Numbers(1).get(0).describe());
  auto empty = std::make_shared<Lines>(0);
  BOOST_TEST(error_of([&] { all_batches(tf::DataLoader(empty, 4), 0, "x"); }) == "lines has no samples in epoch 1");
  BOOST_TEST(error_of([&] { tf::DataLoader(empty, 4).first_sample(); }) == "lines has no samples (its first epoch is empty)");
  BOOST_TEST(error_of([&] { all_batches(tf::DataLoader(std::make_shared<Lines>(3), tf::LoaderOptions(4).drop_last(true)), 0, "x"); }) ==
             "lines has 3 samples in epoch 1, fewer than one batch of 4 with drop_last; lower the batch size");
}
