// The demo model plugins train to the seed's quality with the standard callbacks and metrics.
#define BOOST_TEST_MODULE models
#include <boost/test/unit_test.hpp>

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
