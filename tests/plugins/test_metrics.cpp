// The metrics plugin: every metric against values computed by hand, exact over uneven batches.
#define BOOST_TEST_MODULE metrics
#include <boost/test/unit_test.hpp>

#include "../support.hpp"

namespace tf = torchfit;
namespace tt = boost::test_tools;

namespace {
std::shared_ptr<tf::Metric> metric(const std::string& name, std::vector<std::string> args = {}) {
  static tf::Registry reg(test::standard_plugin_dirs());
  return reg.make_metric(name, reg.parse_options(reg.find(name, tf::PluginKind::Metric), args));
}
torch::Tensor col(std::vector<float> v) { return torch::tensor(v).reshape({-1, 1}); }

// Logits and labels: predicted positive when logit >= 0 (sigmoid >= 0.5).
//   logits  2.0  -1.0  0.5  -3.0  1.0   0.0  -0.5
//   labels  1     1    0     0    1     0     0
//   pred    1     0    1     0    1     1     0      -> tp 2, fp 2, fn 1, tn 2
const torch::Tensor kLogits = col({2.0f, -1.0f, 0.5f, -3.0f, 1.0f, 0.0f, -0.5f});
const torch::Tensor kLabels = col({1, 1, 0, 0, 1, 0, 0});

double in_batches(const std::shared_ptr<tf::Metric>& m, const torch::Tensor& p, const torch::Tensor& t) {
  m->reset();
  m->update(p.narrow(0, 0, 3), t.narrow(0, 0, 3));  // batches of 3, 3, 1
  m->update(p.narrow(0, 3, 3), t.narrow(0, 3, 3));
  m->update(p.narrow(0, 6, 1), t.narrow(0, 6, 1));
  return m->compute();
}
}  // namespace

BOOST_AUTO_TEST_CASE(binary_counts) {
  BOOST_TEST(in_batches(metric("acc"), kLogits, kLabels) == 4.0 / 7, tt::tolerance(1e-12));
  BOOST_TEST(in_batches(metric("precision"), kLogits, kLabels) == 2.0 / 4, tt::tolerance(1e-12));
  BOOST_TEST(in_batches(metric("recall"), kLogits, kLabels) == 2.0 / 3, tt::tolerance(1e-12));
  BOOST_TEST(in_batches(metric("f1"), kLogits, kLabels) == 4.0 / 7, tt::tolerance(1e-12));  // 2tp / (2tp+fp+fn)
  BOOST_TEST(metric("acc")->higher_is_better());
}

BOOST_AUTO_TEST_CASE(threshold_option_moves_the_cut) {
  // threshold 0.7: logit >= log(0.7/0.3) = 0.847 -> predictions 1 0 0 0 1 0 0: correct 1,1(no),1,1,1,1,1 = 6
  BOOST_TEST(in_batches(metric("acc", {"--threshold=0.7"}), kLogits, kLabels) == 6.0 / 7, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(auc_is_exact_with_ties) {
  // Positives' scores 2, -1, 1; negatives' 0.5, -3, 0, -0.5. Pairs where the positive wins:
  // 2 beats 4, -1 beats 1 (-3), 1 beats 4 -> 9 of 12.
  BOOST_TEST(in_batches(metric("auc"), kLogits, kLabels) == 9.0 / 12, tt::tolerance(1e-12));
  auto tied = metric("auc");
  tied->update(col({1, 1, 0, 0}), col({1, 0, 1, 0}));  // one tie across classes counts 1/2
  BOOST_TEST(tied->compute() == 0.5, tt::tolerance(1e-12));
  auto one_class = metric("auc");
  one_class->update(col({1, 2}), col({1, 1}));
  BOOST_TEST(std::isnan(one_class->compute()));
}

BOOST_AUTO_TEST_CASE(regression_errors) {
  auto p = col({1, 2, 3, 4, 5, 6, 7});
  auto t = col({1.5, 2, 2, 4, 8, 6, 6});  // errors -0.5, 0, 1, 0, -3, 0, 1
  BOOST_TEST(in_batches(metric("mae"), p, t) == 5.5 / 7, tt::tolerance(1e-9));
  BOOST_TEST(in_batches(metric("mse"), p, t) == 11.25 / 7, tt::tolerance(1e-9));
  BOOST_TEST(in_batches(metric("rmse"), p, t) == std::sqrt(11.25 / 7), tt::tolerance(1e-9));
  // r2 = 1 - SS_res / SS_tot; targets' mean 29.5/7.
  double mean = 29.5 / 7, ss_tot = 0;
  for (double v : {1.5, 2.0, 2.0, 4.0, 8.0, 6.0, 6.0}) ss_tot += (v - mean) * (v - mean);
  BOOST_TEST(in_batches(metric("r2"), p, t) == 1 - 11.25 / ss_tot, tt::tolerance(1e-9));
  BOOST_TEST(!metric("mae")->higher_is_better());
  BOOST_TEST(metric("r2")->higher_is_better());
}

BOOST_AUTO_TEST_CASE(multiclass_accuracy) {
  auto scores = torch::tensor({{0.1f, 0.9f, 0.0f}, {0.8f, 0.1f, 0.1f}, {0.2f, 0.2f, 0.6f}, {0.5f, 0.4f, 0.1f}});
  auto labels = torch::tensor({1, 0, 1, 1}, torch::kLong);
  auto m = metric("accuracy");
  m->update(scores.narrow(0, 0, 3), labels.narrow(0, 0, 3));
  m->update(scores.narrow(0, 3, 1), labels.narrow(0, 3, 1));
  BOOST_TEST(m->compute() == 0.5, tt::tolerance(1e-12));
}

// Seven samples, three classes; each row's scores are distinct (no ties in top-k).
//   true   0  1  1  2  2  1  2
//   pred   0  1  2  2  0  1  0     top-2 hits all but rows 2 and 6
// counts[t][p]: t0 [1 0 0], t1 [0 2 1], t2 [2 0 1]; support 1 3 3, predicted 3 2 2.
const torch::Tensor kScores = torch::tensor({{2.0f, 1.0f, 0.0f}, {0.0f, 3.0f, 1.0f}, {1.0f, 0.0f, 2.0f}, {0.0f, 1.0f, 5.0f},
                                             {4.0f, 0.0f, 1.0f}, {0.0f, 2.0f, 1.0f}, {3.0f, 2.0f, 1.0f}});
const torch::Tensor kClasses = torch::tensor({0, 1, 1, 2, 2, 1, 2}, torch::kLong);

BOOST_AUTO_TEST_CASE(top_k_accuracy_counts_the_class_among_the_k_best) {
  BOOST_TEST(in_batches(metric("top_k_accuracy", {"--top-k=2"}), kScores, kClasses) == 5.0 / 7, tt::tolerance(1e-12));
  BOOST_TEST(in_batches(metric("top_k_accuracy", {"--top-k=1"}), kScores, kClasses) == 4.0 / 7, tt::tolerance(1e-12));
  // The default k is 5: with three classes every sample counts.
  BOOST_TEST(in_batches(metric("top_k_accuracy"), kScores, kClasses) == 1.0, tt::tolerance(1e-12));
  BOOST_CHECK_THROW(metric("top_k_accuracy", {"--top-k=0"}), tf::ConfigError);
  BOOST_CHECK_THROW(metric("top_k_accuracy")->update(torch::zeros({4, 1}), torch::zeros({4, 1})), tf::DataError);
}

BOOST_AUTO_TEST_CASE(confusion_matrix_and_macro_f1_are_exact_over_batches) {
  auto cm = metric("confusion_matrix");
  BOOST_TEST(in_batches(cm, kScores, kClasses) == 4.0 / 7, tt::tolerance(1e-12));  // its value: the accuracy
  auto confusion = std::dynamic_pointer_cast<tf::ConfusionMetric>(cm);
  BOOST_REQUIRE(confusion);
  const auto counts = confusion->confusion_matrix();
  BOOST_TEST(torch::equal(counts, torch::tensor({{1, 0, 0}, {0, 2, 1}, {2, 0, 1}}, torch::kLong)));
  // Per class: P 1/3 1 1/2, R 1 2/3 1/3, F1 1/2 4/5 2/5.
  BOOST_TEST(in_batches(metric("macro_f1"), kScores, kClasses) == (0.5 + 0.8 + 0.4) / 3, tt::tolerance(1e-12));
  const tf::ClassReport report(counts, {"cat", "dog"});
  BOOST_TEST(report.rows.size() == 3u);
  BOOST_TEST(report.rows[0].name == "cat");
  BOOST_TEST(report.rows[2].name == "2");  // no name given: its index
  BOOST_TEST(report.rows[0].precision == 1.0 / 3, tt::tolerance(1e-12));
  BOOST_TEST(report.rows[1].recall == 2.0 / 3, tt::tolerance(1e-12));
  BOOST_TEST(report.rows[2].f1 == 0.4, tt::tolerance(1e-12));
  BOOST_TEST(report.rows[1].support == 3);
  BOOST_TEST(report.accuracy == 4.0 / 7, tt::tolerance(1e-12));
  BOOST_TEST(report.macro_recall == (1 + 2.0 / 3 + 1.0 / 3) / 3, tt::tolerance(1e-12));
  const auto text = report.to_string();
  BOOST_TEST(text.find("cat") != std::string::npos);
  BOOST_TEST(text.find("macro average") != std::string::npos);
  BOOST_TEST(report.json_members().find("\"confusion_matrix\": [[1, 0, 0], [0, 2, 1], [2, 0, 1]]") != std::string::npos);
  // A class that never occurs nor is predicted does not pull the macro average down.
  const tf::ClassReport sparse(torch::tensor({{2, 0, 0}, {0, 0, 0}, {1, 0, 1}}, torch::kLong));
  BOOST_TEST(sparse.macro_f1 == (0.8 + 2.0 / 3) / 2, tt::tolerance(1e-12));
  // One predicted but never true: its F1 is 0 and counts.
  const tf::ClassReport wrong(torch::tensor({{2, 0, 0}, {0, 0, 0}, {0, 1, 1}}, torch::kLong));
  BOOST_TEST(wrong.macro_f1 == (1.0 + 0.0 + 2.0 / 3) / 3, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(a_class_index_out_of_range_is_named) {
  auto cm = metric("confusion_matrix");
  cm->update(torch::zeros({2, 3}), torch::tensor({0, 3}, torch::kLong));
  try {
    cm->compute();
    BOOST_FAIL("expected DataError");
  } catch (const tf::DataError& e) {
    BOOST_TEST(std::string(e.what()).find("outside 0..2") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(reset_forgets_and_empty_is_nan) {
  auto m = metric("mae");
  m->update(col({1}), col({3}));
  m->reset();
  BOOST_TEST(std::isnan(m->compute()));
}

BOOST_AUTO_TEST_CASE(wrong_target_shapes_are_named) {
  try {
    metric("acc")->update(torch::zeros({4, 1}), torch::zeros({4}));
    BOOST_FAIL("expected DataError");
  } catch (const tf::DataError& e) {
    BOOST_TEST(std::string(e.what()).find("predictions have shape [4, 1] but targets have shape [4]") != std::string::npos);
  }
  BOOST_CHECK_THROW(metric("accuracy")->update(torch::zeros({4, 1}), torch::zeros({4, 1})), tf::DataError);
  BOOST_CHECK_THROW(metric("acc", {"--threshold=1.5"}), tf::ConfigError);
}

// The metrics copy pending batches into a row buffer sized from the first batch: batches that
// are larger, empty, non-contiguous or of another dtype, and more than a group's 64, must all
// count exactly once; a state saved in the middle of a group resumes to the same value.
BOOST_AUTO_TEST_CASE(uneven_batches_count_exactly_and_resume_mid_group) {
  torch::manual_seed(3);
  const auto preds = torch::randn({1000, 2}, torch::kDouble), targets = torch::randn({1000, 2}, torch::kDouble);
  const double expected = (preds - targets).abs().mean().item<double>();
  std::vector<std::pair<int64_t, int64_t>> batches;  // (start, length)
  int64_t at = 0;
  for (int64_t len : {3, 3, 500, 0}) batches.emplace_back(at, len), at += len;
  while (at < 1000) batches.emplace_back(at, 1), at += 1;  // 494 batches of one row: several groups
  auto feed = [&](const std::shared_ptr<tf::Metric>& m, size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      auto p = preds.narrow(0, batches[i].first, batches[i].second);
      auto t = targets.narrow(0, batches[i].first, batches[i].second);
      if (i % 7 == 0) p = p.t().contiguous().t();     // a non-contiguous batch
      if (i % 11 == 0) t = t.to(torch::kFloat).to(torch::kDouble);
      if (i == 200) p = p.to(torch::kFloat);           // another dtype mid-group
      m->update(p, t);
    }
  };
  auto whole = metric("mae");
  feed(whole, 0, batches.size());
  BOOST_TEST(whole->compute() == expected, tt::tolerance(1e-6));

  auto first = metric("mae");
  first->reset();
  feed(first, 0, 300);
  torch::serialize::OutputArchive saved;
  BOOST_TEST(first->state_dict(saved));
  std::ostringstream bytes;
  saved.save_to(bytes);
  auto second = metric("mae");
  torch::serialize::InputArchive loaded;
  std::istringstream in(bytes.str());
  loaded.load_from(in);
  second->load_state_dict(loaded);
  feed(second, 300, batches.size());
  feed(first, 300, batches.size());
  BOOST_TEST(second->compute() == first->compute());  // bit for bit
}
