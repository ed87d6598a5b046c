// Plugin registry: discovery, listing, every refusal, option parsing, lifetime, hook failures.
#define BOOST_TEST_MODULE registry
#include <boost/test/unit_test.hpp>

#include "../support.hpp"

#include <torchfit/monitor.hpp>

namespace tf = torchfit;
namespace fs = std::filesystem;

namespace {
using test::error_of;
bool contains(const std::string& text, const std::string& part) {
  BOOST_TEST_INFO("text: " << text);
  return text.find(part) != std::string::npos;
}
tf::Registry with_test_plugins() {
  auto dirs = test::standard_plugin_dirs();
  dirs.emplace_back(TORCHFIT_TEST_PLUGIN_DIR);
  return tf::Registry(dirs);
}
using test::CaptureLogs;
BOOST_GLOBAL_FIXTURE(CaptureLogs);
}  // namespace

BOOST_AUTO_TEST_CASE(discovers_the_standard_plugins_without_creating_them) {
  tf::Registry reg(test::standard_plugin_dirs());
  std::map<std::string, tf::PluginKind> found;
  for (const auto& p : reg.plugins()) {
    found[p.info.name] = p.info.kind;
    BOOST_TEST(!p.info.version.empty());
    BOOST_TEST(!p.info.description.empty());
    BOOST_TEST(fs::exists(p.file));
    BOOST_TEST(p.info.abi_version == tf::kPluginAbiVersion);
  }
  BOOST_TEST(found.size() == 23u);
  BOOST_TEST((found.at("early_stopping") == tf::PluginKind::Callback));
  BOOST_TEST((found.at("model_checkpoint") == tf::PluginKind::Callback));
  BOOST_TEST((found.at("progress_bar") == tf::PluginKind::Callback));
  BOOST_TEST((found.at("nan_guard") == tf::PluginKind::Callback));
  BOOST_TEST((found.at("lr_monitor") == tf::PluginKind::Callback));
  BOOST_TEST((found.at("metrics") == tf::PluginKind::Metric));
  BOOST_TEST((found.at("dnn_binary") == tf::PluginKind::Model));
  BOOST_TEST((found.at("linear_regression") == tf::PluginKind::Model));
  BOOST_TEST((found.at("mlp") == tf::PluginKind::Model));
  BOOST_TEST((found.at("cnn") == tf::PluginKind::Model));
  BOOST_TEST((found.at("torchscript") == tf::PluginKind::Model));
  BOOST_TEST((found.at("unfreeze") == tf::PluginKind::Callback));
  for (const char* d : {"csv", "idx", "fashion_mnist"}) BOOST_TEST((found.at(d) == tf::PluginKind::Dataset));
  const auto metrics = reg.names(tf::PluginKind::Metric);
  for (const char* m : {"acc", "accuracy", "top_k_accuracy", "macro_f1", "confusion_matrix", "auc", "precision", "recall", "f1",
                        "mae", "mse", "rmse", "r2"}) {
    BOOST_TEST(std::count(metrics.begin(), metrics.end(), m) == 1);
  }
}

BOOST_AUTO_TEST_CASE(a_dataset_plugin_loads_its_data_and_transforms) {
  tf::Registry reg(test::standard_plugin_dirs());
  test::TempDir dir;
  // 6 images 4x4 of two classes, as the idx plugin reads them.
  auto images = torch::arange(96, torch::kLong).remainder(256).to(torch::kByte).reshape({6, 4, 4});
  tf::write_idx(dir.path / "images.idx", images, true);
  tf::write_idx(dir.path / "labels.idx", torch::tensor({0, 1, 0, 1, 1, 0}, torch::kByte));
  const auto& entry = reg.find("idx", tf::PluginKind::Dataset);
  auto options = reg.parse_options(entry, {"--images=" + (dir.path / "images.idx").string(),
                                           "--labels=" + (dir.path / "labels.idx").string(), "--classes=even,odd",
                                           "--flip=1", "--mean=0.5", "--std=0.25"});
  auto plugin = reg.make_dataset("idx", options);
  tf::DataRequest request;
  auto data = plugin->load(request);
  BOOST_REQUIRE(data);
  BOOST_TEST(data->size() == 6);
  BOOST_TEST((data->classes() == std::vector<std::string>{"even", "odd"}));
  auto sample = data->sample(1);
  BOOST_TEST((sample["image"].sizes() == torch::IntArrayRef{1, 4, 4}));
  BOOST_TEST(sample["label"].item<int64_t>() == 1);
  // Evaluation: to [0, 1], normalized. Training adds the flip (p = 1: always).
  auto eval = sample;
  tf::Rng rng(1);
  for (auto& t : plugin->transforms(false)) t(eval, rng);
  const auto expected = (images[1].to(torch::kFloat).unsqueeze(0) / 255 - 0.5) / 0.25;
  BOOST_TEST(torch::allclose(eval["image"], expected));
  auto train = sample;
  for (auto& t : plugin->transforms(true)) t(train, rng);
  BOOST_TEST(torch::allclose(train["image"], expected.flip({-1})));
  // Predict needs no labels; train does.
  auto unlabelled = reg.make_dataset("idx", reg.parse_options(entry, {"--images=" + (dir.path / "images.idx").string()}));
  request.purpose = tf::DataRequest::Purpose::Predict;
  BOOST_TEST(!unlabelled->load(request)->sample(0).has_targets());
  request.purpose = tf::DataRequest::Purpose::Train;
  BOOST_CHECK_THROW(unlabelled->load(request), tf::ConfigError);
  // Bad option values are refused as the options are parsed, naming the option.
  try {
    reg.make_dataset("idx", reg.parse_options(entry, {"--images=x", "--flip=2"}));
    BOOST_FAIL("flip 2 accepted");
  } catch (const tf::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("--idx.flip must be between 0 and 1, got 2") != std::string::npos);
  }
  // A missing Fashion-MNIST folder says which package to install.
  const auto& fashion = reg.find("fashion_mnist", tf::PluginKind::Dataset);
  try {
    reg.make_dataset("fashion_mnist", reg.parse_options(fashion, {"--folder=" + (dir.path / "none").string()}));
    BOOST_FAIL("a missing folder accepted");
  } catch (const tf::DataError& e) {
    BOOST_TEST(std::string(e.what()).find("apt-get install dataset-fashion-mnist") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(environment_path_is_searched) {
  ::setenv("TORCHFIT_PLUGIN_PATH", "/nonexistent:" TORCHFIT_TEST_PLUGIN_DIR, 1);
  auto dirs = tf::Registry::search_path();
  ::unsetenv("TORCHFIT_PLUGIN_PATH");
  tf::Registry reg(dirs);
  BOOST_TEST(reg.find("hook_recorder", tf::PluginKind::Callback).info.name == "hook_recorder");
}

BOOST_AUTO_TEST_CASE(wrong_abi_is_refused_naming_both_versions) {
  auto reg = with_test_plugins();
  const auto msg = error_of([&] { reg.find("wrong_abi", tf::PluginKind::Callback); });
  BOOST_TEST(contains(msg, "was built for plugin ABI " + std::to_string(tf::kPluginAbiVersion + 1) +
                               ", this torchfit speaks " + std::to_string(tf::kPluginAbiVersion)));
  BOOST_TEST(contains(msg, "rebuild it against this torchfit"));
}

BOOST_AUTO_TEST_CASE(a_library_that_is_no_plugin_is_skipped_but_named_when_asked_for) {
  auto reg = with_test_plugins();
  for (const auto& p : reg.plugins()) BOOST_TEST(p.info.name != "not_a_plugin");
  const auto msg = error_of([&] { reg.find("not_a_plugin", tf::PluginKind::Callback); });
  BOOST_TEST(contains(msg, "is not a torchfit plugin"));
}

BOOST_AUTO_TEST_CASE(a_refused_plugin_asked_for_by_another_name_is_listed_as_a_candidate) {
  // wrong_abi.so's declared name cannot be read (its info is not trusted): an unknown name
  // lists the refused plugins, one of which may be it.
  auto reg = with_test_plugins();
  const auto msg = error_of([&] { reg.find("old_abi", tf::PluginKind::Callback); });
  BOOST_TEST(contains(msg, "unknown callback 'old_abi'"));
  BOOST_TEST(contains(msg, "Refused plugin files, which may hold it: "));
  BOOST_TEST(contains(msg, "wrong_abi.so was built for plugin ABI"));
}

BOOST_AUTO_TEST_CASE(broken_files_on_the_path_are_skipped_with_the_loaders_reason) {
  // A truncated plugin (mapped, it would kill the process with SIGBUS), a text file, a library
  // whose dependency is missing, half a plugin, and one whose describe() throws: each is
  // skipped with its reason, and the plugins beside them still load.
  test::TempDir dir;
  const auto standard = test::standard_plugin_dirs().front();
  const auto whole = test::read_file(standard / "lr_monitor.so");
  BOOST_REQUIRE(whole.size() > 20000);
  test::write_file(dir.path / "truncated.so", whole.substr(0, 20000));
  test::write_file(dir.path / "text.so", std::string(4096, '#'));
  test::write_file(dir.path / "empty.so", "");
  fs::copy_file(standard / "lr_monitor.so", dir.path / "lr_monitor.so");
  tf::Registry reg({dir.path, fs::path(TORCHFIT_TEST_BROKEN_DIR)});
  std::map<std::string, std::string> reasons;
  for (const auto& s : reg.skipped()) reasons[s.file.filename().string()] = s.reason;
  BOOST_TEST(contains(reasons["truncated.so"], "cannot be loaded: the file is truncated or damaged"));
  BOOST_TEST(contains(reasons["text.so"], "invalid ELF header"));
  BOOST_TEST(contains(reasons["empty.so"], "cannot be loaded: "));
  BOOST_TEST(contains(reasons["missing_dep.so"], "libtorchfit_test_dep.so: cannot open shared object file"));
  BOOST_TEST(contains(reasons["abi_only.so"], "exports torchfit_plugin_abi but no torchfit_plugin_info"));
  BOOST_TEST(contains(reasons["exploding_describe.so"], "failed to describe itself: describe() exploded"));
  BOOST_TEST(reg.find("lr_monitor", tf::PluginKind::Callback).info.name == "lr_monitor");
  // Asked for, a broken one is refused by name and file.
  const auto msg = error_of([&] { reg.find("exploding_describe", tf::PluginKind::Callback); });
  BOOST_TEST(contains(msg, "callback plugin 'exploding_describe' (" +
                               (fs::path(TORCHFIT_TEST_BROKEN_DIR) / "exploding_describe.so").string() +
                               ") failed to describe itself: describe() exploded"));
}

BOOST_AUTO_TEST_CASE(unknown_name_suggests_and_lists_names_and_folders) {
  tf::Registry reg(test::standard_plugin_dirs());
  const auto msg = error_of([&] { reg.find("early_stoping", tf::PluginKind::Callback); });
  BOOST_TEST(contains(msg, "unknown callback 'early_stoping'; did you mean 'early_stopping'?"));
  BOOST_TEST(contains(msg, "Available callbacks: cosine_lr, csv_logger, early_stopping, event_log, lr_monitor, "
                           "model_checkpoint, multistep_lr, nan_guard, one_cycle_lr, plot, progress_bar, "
                           "reduce_lr_on_plateau, step_lr, unfreeze"));
  BOOST_TEST(contains(msg, "Searched: " + reg.dirs().front().string()));
  BOOST_TEST(contains(error_of([&] { reg.find("dnn_binary", tf::PluginKind::Callback); }),
                      "'dnn_binary' is a model plugin, not a callback plugin"));
}

BOOST_AUTO_TEST_CASE(duplicate_names_are_refused_naming_both_files) {
  auto dirs = test::standard_plugin_dirs();
  dirs.emplace_back(TORCHFIT_TEST_DUPLICATE_DIR);
  tf::Registry reg(dirs);
  const auto msg = error_of([&] { reg.find("early_stopping", tf::PluginKind::Callback); });
  BOOST_TEST(contains(msg, "two callback plugins provide 'early_stopping'"));
  BOOST_TEST(contains(msg, "plugins/early_stopping.so"));
  BOOST_TEST(contains(msg, "plugins-duplicate/duplicate_early_stopping.so"));
}

BOOST_AUTO_TEST_CASE(bad_plugin_options_name_the_option) {
  tf::Registry reg(test::standard_plugin_dirs());
  const auto& es = reg.find("early_stopping", tf::PluginKind::Callback);
  BOOST_TEST(contains(error_of([&] { reg.parse_options(es, {"--patience=soon"}); }), "--early_stopping.patience"));
  BOOST_TEST(contains(error_of([&] { reg.parse_options(es, {"--patients=3"}); }), "early_stopping"));
  BOOST_TEST(contains(error_of([&] { reg.make_callback("early_stopping", reg.parse_options(es, {"--mode=avg"})); }),
                      "early_stopping.mode must be min, max or auto, got 'avg'"));
  auto opts = reg.parse_options(es, {"--patience=3"});
  BOOST_TEST(opts["patience"].as<int64_t>() == 3);
  BOOST_TEST(opts["monitor"].as<std::string>() == "val_loss");
}

BOOST_AUTO_TEST_CASE(made_objects_keep_their_library_loaded) {
  std::shared_ptr<tf::Callback> cb;
  std::shared_ptr<tf::ModelPlugin> model;
  {
    tf::Registry reg(test::standard_plugin_dirs());
    const auto& entry = reg.find("early_stopping", tf::PluginKind::Callback);
    cb = reg.make_callback("early_stopping", reg.parse_options(entry));
    model = reg.make_model("linear_regression", reg.parse_options(reg.find("linear_regression", tf::PluginKind::Model)));
  }
  // The registry is gone; the objects and what they make still work.
  BOOST_TEST(cb->name() == "early_stopping");
  auto net = model->make_net();
  model.reset();
  BOOST_TEST(net.name() == "linear_regression");
  BOOST_TEST(net.forward(torch::zeros({1, 2})).sizes() == torch::IntArrayRef({1, 1}));
}

BOOST_AUTO_TEST_CASE(a_throwing_plugin_stops_training_cleanly_and_keeps_saved_checkpoints) {
  test::TempDir dir;
  auto reg = with_test_plugins();
  auto make = [&](const std::string& name, std::vector<std::string> args) {
    return reg.make_callback(name, reg.parse_options(reg.find(name, tf::PluginKind::Callback), args));
  };
  const auto ckpt = dir / "ckpt";
  const auto hooks = dir / "hooks.txt";
  tf::Callbacks callbacks = {make("model_checkpoint", {"--ckpt-path=" + ckpt.string(), "--save-best-only=false"}),
                             make("throwing", {"--hook=on_epoch_end", "--epoch=2"}),
                             make("hook_recorder", {"--file=" + hooks.string()})};
  tf::seed_everything(1);
  torch::nn::Linear net(2, 1);
  tf::Trainer trainer(net, torch::nn::MSELoss());
  auto data = test::regression_data(8, 1);
  const auto msg = error_of([&] {
    trainer.fit(tf::DataLoader(data, 4), tf::DataLoader(data, 4), tf::FitOptions().epochs(5).callbacks(callbacks));
  });
  BOOST_TEST(contains(msg, "callback 'throwing' failed in on_epoch_end: deliberate failure in on_epoch_end"));
  BOOST_TEST(trainer.history().size() == 2u);  // the failing epoch keeps its row
  const auto recorded = test::read_file(hooks);
  BOOST_TEST(contains(recorded, "on_exception: callback 'throwing' failed in on_epoch_end"));
  // model_checkpoint ran before the throwing plugin in epoch 2: the file is whole and loadable.
  tf::Net fresh = torch::nn::Linear(2, 1);
  BOOST_TEST(tf::load_weights(fresh, ckpt).logs.at("epoch") == 2);
}

BOOST_AUTO_TEST_CASE(a_plugin_with_options_in_one_call) {
  tf::Registry reg(tf::Registry::search_path());
  auto stop = reg.callback("early_stopping", {{"monitor", "val_acc"}, {"mode", "max"}, {"patience", "3"}});
  BOOST_REQUIRE(stop);
  BOOST_TEST(stop->name() == "early_stopping");
  const auto monitors = stop->monitors();
  BOOST_REQUIRE_EQUAL(monitors.size(), 1u);
  BOOST_TEST(monitors[0]->key() == "val_acc");
  BOOST_TEST(monitors[0]->higher_is_better());
  BOOST_TEST(reg.callback("progress_bar"));
  BOOST_TEST(reg.metric("acc", {{"threshold", "0.3"}}));
  BOOST_TEST(reg.model("dnn_binary", {{"per-ring", "50"}}));
  // A misspelt name: refused with the closest one and the list; a bad value: refused by name.
  try {
    reg.callback("early_stopping", {{"patiense", "3"}});
    BOOST_FAIL("expected a ConfigError");
  } catch (const tf::ConfigError& e) {
    BOOST_TEST(contains(e.what(), "plugin 'early_stopping' has no option 'patiense' (did you mean 'patience'?). "
                                  "Its options: monitor, mode, min-delta, patience"),
               e.what());
  }
  BOOST_CHECK_THROW(reg.callback("early_stopping", {{"patience", "-1"}}), tf::ConfigError);
  BOOST_CHECK_THROW(reg.callback("early_stopping", {{"mode", "mix"}}), tf::ConfigError);
}
