// The demo model plugins train to the seed's quality with the standard callbacks and metrics.
#define BOOST_TEST_MODULE models
#include <boost/test/unit_test.hpp>

#include <functional>
#include <map>

#include "../support.hpp"

namespace tf = torchfit;

namespace {
using test::CaptureLogs;
BOOST_GLOBAL_FIXTURE(CaptureLogs);

using test::registry;
template <typename Make>
auto with_options(const std::string& name, tf::PluginKind kind, std::vector<std::string> args, Make make) {
  return make(registry().parse_options(registry().find(name, kind), args));
}

struct Result {
  tf::History history;
  tf::Net net;
  tf::Logs val;
};

Result train(const std::string& model_name, std::vector<std::string> stop_args, uint64_t seed) {
  auto model = with_options(model_name, tf::PluginKind::Model, {},
                            [&](const auto& o) { return registry().make_model(model_name, o); });
  tf::seed_everything(seed);
  auto data = model->make_data(seed);
  auto net = model->make_net();
  auto defaults = model->default_optimizer();
  auto opt = std::make_shared<torch::optim::Adam>(net.parameters(), torch::optim::AdamOptions(defaults.lr));
  tf::Trainer trainer(net, model->make_loss(), registry().make_metrics(model->default_metrics()), opt);
  auto stop = with_options("early_stopping", tf::PluginKind::Callback, stop_args,
                           [&](const auto& o) { return registry().make_callback("early_stopping", o); });
  const auto bs = model->default_batch_size();
  auto h = trainer.fit(tf::DataLoader(data.train, tf::LoaderOptions(bs).shuffle(true).seed(seed)),
                       tf::DataLoader(data.val, bs), tf::FitOptions().epochs(100).callbacks({stop}));
  auto val = trainer.evaluate(tf::DataLoader(data.val, bs));
  return {h, net, val};
}
}  // namespace

BOOST_AUTO_TEST_CASE(ring_classifier_reaches_the_seeds_accuracy) {
  auto r = train("dnn_binary", {"--monitor=val_acc", "--mode=max", "--patience=10"}, 2);
  BOOST_TEST_MESSAGE("ring: val_acc " << r.val.at("val_acc") << " after " << r.history.size() << " epochs");
  BOOST_TEST(r.val.at("val_acc") >= 0.88);
  BOOST_TEST(r.history.columns().at(2) == "train_acc");
}

BOOST_AUTO_TEST_CASE(linear_regression_learns_the_seeds_line) {
  auto r = train("linear_regression", {"--patience=10"}, 2);
  auto params = r.net.module().named_parameters();
  auto w = params["weight"].flatten();
  auto b = params["bias"].item<double>();
  BOOST_TEST_MESSAGE("regression: w " << w << " b " << b << " val_mae " << r.val.at("val_mae"));
  BOOST_TEST(std::abs(w[0].item<double>() - 2.0) < 0.3);
  BOOST_TEST(std::abs(w[1].item<double>() + 3.0) < 0.3);
  BOOST_TEST(std::abs(b - 10.0) < 0.3);
  BOOST_TEST(r.val.at("val_mae") < 1.8);
}

BOOST_AUTO_TEST_CASE(demo_data_is_seeded_split_70_30) {
  auto model = with_options("dnn_binary", tf::PluginKind::Model, {},
                            [&](const auto& o) { return registry().make_model("dnn_binary", o); });
  auto a = model->make_data(5), b = model->make_data(5), c = model->make_data(6);
  BOOST_TEST(a.train.size() == 2800);
  BOOST_TEST(a.val.size() == 1200);
  BOOST_TEST(torch::equal(a.train.features(), b.train.features()));
  BOOST_TEST(!torch::equal(a.train.features(), c.train.features()));
  BOOST_TEST(a.train.targets().sum().item<double>() + a.val.targets().sum().item<double>() == 2000.0);
}

// ---- the mlp model, one small generated dataset per task ------------------------------------

namespace {

std::shared_ptr<tf::ModelPlugin> make_mlp(std::vector<std::string> args) {
  return with_options("mlp", tf::PluginKind::Model, args, [&](const auto& o) { return registry().make_model("mlp", o); });
}

// What the runner does with --data: targets through the model, adapt to the training split,
// then train; returns the validation logs of the best epoch's weights.
struct MlpRun {
  std::shared_ptr<tf::ModelPlugin> model;
  tf::Net net;
  tf::Logs val;
};

MlpRun train_mlp(std::vector<std::string> args, const torch::Tensor& x, const torch::Tensor& column, int64_t epochs) {
  auto model = make_mlp(std::move(args));
  auto targets = model->make_targets(column, "generated");
  auto parts = tf::random_split(tf::TensorDataset(x, targets), std::vector<double>{0.8, 0.2}, 1);
  model->adapt(parts[0]);
  tf::seed_everything(1);
  auto net = model->make_net();
  auto opt = std::make_shared<torch::optim::Adam>(net.parameters(), torch::optim::AdamOptions(1e-2));
  tf::Trainer trainer(net, model->make_loss(), registry().make_metrics(model->default_metrics()), opt);
  trainer.to(torch::kCPU);  // the checks below compare with CPU tensors
  trainer.fit(tf::DataLoader(parts[0], tf::LoaderOptions(64).shuffle(true).seed(1)), tf::DataLoader(parts[1], 256),
              tf::FitOptions().epochs(epochs));
  return {model, net, trainer.evaluate(tf::DataLoader(parts[1], 256))};
}

std::map<std::string, std::string> learned(const tf::ModelPlugin& model) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : model.learned_options()) out[k] = v;
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(mlp_binary_standardizes_with_the_training_split_and_keeps_it_in_the_checkpoint) {
  auto gen = tf::compat::make_generator(3);
  // Two Gaussian blobs in 4 features on very different scales (the case standardization is for).
  const int64_t n = 800;
  auto y = (torch::rand({n, 1}, gen) < 0.5).to(torch::kFloat);
  auto x = torch::randn({n, 4}, gen) + 2.5 * y;
  x = x * torch::tensor({1.0f, 1000.0f, 0.001f, 50.0f}) + torch::tensor({0.0f, 5e4f, -3.0f, 100.0f});
  auto r = train_mlp({"--task=binary", "--hidden=16", "--standardize"}, x, y, 15);
  BOOST_TEST_MESSAGE("mlp binary: " << r.val.to_string());
  BOOST_TEST(r.val.at("val_acc") >= 0.9);
  BOOST_TEST(r.val.at("val_auc") >= 0.95);
  BOOST_TEST(learned(*r.model) == (std::map<std::string, std::string>{{"inputs", "4"}}));

  // The statistics are the training split's (population std), held as buffers of the net.
  auto train = tf::random_split(tf::TensorDataset(x, y), std::vector<double>{0.8, 0.2}, 1)[0];
  auto buffers = r.net.module().named_buffers();
  BOOST_TEST(torch::allclose(buffers["standardize.mean"], train.features().mean(0), 1e-4, 1e-3));
  BOOST_TEST(torch::allclose(buffers["standardize.std"], train.features().std(0, false), 1e-4, 1e-3));

  // Saved with the weights: a net rebuilt from the recorded options (as evaluate/predict do,
  // with no data at hand) and loaded from the checkpoint gives the same outputs.
  test::TempDir dir;
  tf::save_weights(r.net, dir / "ckpt", "mlp");
  auto fresh_model = make_mlp({"--task=binary", "--hidden=16", "--standardize", "--inputs=4"});
  auto fresh = fresh_model->make_net();
  BOOST_TEST(!torch::allclose(fresh(x.narrow(0, 0, 8)), r.net(x.narrow(0, 0, 8))));
  tf::load_weights(fresh, dir / "ckpt");
  r.net.eval();
  fresh.eval();
  BOOST_TEST(torch::equal(fresh(x), r.net(x)));

  // Predictions: a probability and a class per row.
  auto p = r.model->to_predictions(r.net(x.narrow(0, 0, 5)));
  BOOST_TEST(p.columns == std::vector<std::string>({"probability", "class"}), boost::test_tools::per_element());
  BOOST_TEST(torch::equal(p.values.select(1, 1), (p.values.select(1, 0) >= 0.5).to(torch::kDouble)));
}

BOOST_AUTO_TEST_CASE(mlp_multiclass_learns_its_classes_from_the_labels) {
  auto gen = tf::compat::make_generator(4);
  const int64_t n = 900;
  auto label = torch::arange(n) % 3;
  auto angle = label.to(torch::kFloat) * (2 * M_PI / 3);
  auto x = torch::stack({3 * torch::cos(angle), 3 * torch::sin(angle)}, 1) + torch::randn({n, 2}, gen);
  auto r = train_mlp({"--task=multiclass", "--hidden=32,16"}, x, label.to(torch::kFloat).reshape({-1, 1}), 15);
  BOOST_TEST_MESSAGE("mlp multiclass: " << r.val.to_string());
  BOOST_TEST(r.val.at("val_accuracy") >= 0.9);
  BOOST_TEST(learned(*r.model) == (std::map<std::string, std::string>{{"inputs", "2"}, {"classes", "3"}}));
  r.net.eval();
  auto p = r.model->to_predictions(r.net(x.narrow(0, 0, 6)));
  BOOST_TEST(p.columns == std::vector<std::string>({"probability_0", "probability_1", "probability_2", "class"}),
             boost::test_tools::per_element());
  BOOST_TEST(torch::allclose(p.values.narrow(1, 0, 3).sum(1), torch::ones({6}, torch::kDouble)));
  BOOST_TEST(torch::equal(p.values.select(1, 3), p.values.narrow(1, 0, 3).argmax(1).to(torch::kDouble)));
}

BOOST_AUTO_TEST_CASE(mlp_regression_fits_a_plane) {
  auto gen = tf::compat::make_generator(5);
  auto x = 10 * torch::rand({600, 2}, gen) - 5;
  auto y = 2 * x.select(1, 0) - 3 * x.select(1, 1) + 10 + 0.5 * torch::randn({600}, gen);
  auto r = train_mlp({"--task=regression", "--hidden=32", "--standardize"}, x, y.reshape({-1, 1}), 60);
  BOOST_TEST_MESSAGE("mlp regression: " << r.val.to_string());
  BOOST_TEST(r.val.at("val_r2") >= 0.97);
  BOOST_TEST(r.val.at("val_mae") < 1.5);
  auto p = r.model->to_predictions(torch::zeros({3, 1}));
  BOOST_TEST(p.columns == std::vector<std::string>({"prediction"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(mlp_refuses_targets_it_cannot_learn_naming_the_row) {
  auto column = [](std::vector<float> v) { return torch::tensor(v).reshape({-1, 1}); };
  auto expect = [](const std::function<void()>& f, const std::string& part) {
    try {
      f();
      BOOST_ERROR("no error; expected: " << part);
    } catch (const tf::Error& e) {
      BOOST_TEST_INFO("message: " << e.what());
      BOOST_TEST(std::string(e.what()).find(part) != std::string::npos);
    }
  };
  expect([&] { make_mlp({"--task=binary"})->make_targets(column({0, 1, 2}), "f.csv"); },
         "'f.csv', data row 3: target 2 is not 0 or 1");
  expect([&] { make_mlp({"--task=multiclass"})->make_targets(column({0, 1.5f}), "f.csv"); },
         "data row 2: target 1.5 is not a class index");
  expect([&] { make_mlp({"--task=multiclass"})->make_targets(column({-1, 0}), "f.csv"); }, "data row 1: target -1");
  expect([&] { make_mlp({"--task=multiclass", "--classes=3"})->make_targets(column({0, 2, 3}), "f.csv"); },
         "data row 3: target 3 is beyond the model's 3 classes (0 to 2)");
  auto one_class = make_mlp({"--task=multiclass"});
  one_class->make_targets(column({0, 0}), "f.csv");
  expect([&] { one_class->adapt(tf::TensorDataset(torch::zeros({2, 3}), torch::zeros({2}, torch::kLong))); },
         "needs at least two classes");
  expect([&] { make_mlp({"--task=binary"})->make_net(); }, "learns its input width from the data");
  expect([&] { make_mlp({"--task=binary"})->make_data(1); }, "has no data of its own");
  expect([&] { make_mlp({"--task=binry"}); }, "did you mean 'binary'?");
  expect([&] { make_mlp({"--task=binary", "--hidden=8,0"}); }, "--hidden takes layer widths");
  // A validation label beyond the training split's is still a class: classes cover every file seen.
  auto model = make_mlp({"--task=multiclass"});
  model->make_targets(column({0, 1}), "train.csv");
  model->make_targets(column({3}), "val.csv");
  model->adapt(tf::TensorDataset(torch::zeros({2, 1}), torch::tensor({0, 1})));
  BOOST_TEST(learned(*model).at("classes") == "4");
}
