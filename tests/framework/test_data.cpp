// Data: the loader covers every sample once per epoch, shuffles repeatably; splits are exact.
#define BOOST_TEST_MODULE data
#include <boost/test/unit_test.hpp>

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
    BOOST_TEST(torch::equal(b.targets, b.inputs * 10));  // rows stay paired
    if (sizes) sizes->push_back(b.size());
    for (int64_t i = 0; i < b.size(); ++i) ids.push_back(b.inputs[i][0].item<int64_t>());
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
