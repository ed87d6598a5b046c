// Trainer: hook order, stop requests, history, exact epoch values, errors, repeatability.
#define BOOST_TEST_MODULE trainer
#include <boost/test/unit_test.hpp>

#include <ATen/autocast_mode.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "../support.hpp"

namespace tf = torchfit;
using test::regression_data;

namespace {

// Records every hook by name.
struct Recorder : tf::Callback {
  std::vector<std::string> hooks;
  std::vector<int64_t> steps;  // global_step at each train batch end
  void on_fit_begin(tf::Context&) override { hooks.push_back("fit_begin"); }
  void on_fit_end(tf::Context&) override { hooks.push_back("fit_end"); }
  void on_epoch_begin(tf::Context&) override { hooks.push_back("epoch_begin"); }
  void on_epoch_end(tf::Context&) override { hooks.push_back("epoch_end"); }
  void on_train_epoch_begin(tf::Context&) override { hooks.push_back("train_epoch_begin"); }
  void on_train_epoch_end(tf::Context&) override { hooks.push_back("train_epoch_end"); }
  void on_train_batch_begin(tf::Context&) override { hooks.push_back("train_batch_begin"); }
  void on_train_batch_end(tf::Context& ctx) override {
    hooks.push_back("train_batch_end");
    steps.push_back(ctx.global_step);
  }
  void on_before_backward(tf::Context&) override { hooks.push_back("before_backward"); }
  void on_after_backward(tf::Context&) override { hooks.push_back("after_backward"); }
  void on_before_optimizer_step(tf::Context&) override { hooks.push_back("before_optimizer_step"); }
  void on_validation_begin(tf::Context&) override { hooks.push_back("validation_begin"); }
  void on_validation_end(tf::Context&) override { hooks.push_back("validation_end"); }
  void on_validation_batch_begin(tf::Context&) override { hooks.push_back("validation_batch_begin"); }
  void on_validation_batch_end(tf::Context&) override { hooks.push_back("validation_batch_end"); }
  void on_predict_begin(tf::Context&) override { hooks.push_back("predict_begin"); }
  void on_predict_end(tf::Context&) override { hooks.push_back("predict_end"); }
  void on_predict_batch_begin(tf::Context&) override { hooks.push_back("predict_batch_begin"); }
  void on_predict_batch_end(tf::Context&) override { hooks.push_back("predict_batch_end"); }
  void on_exception(tf::Context&, const std::exception& e) override { hooks.push_back(std::string("exception: ") + e.what()); }
};

// Mean absolute error with exact epoch sums (a test metric; the real ones live in the metrics plugin).
struct Mae : tf::Metric {
  torch::Tensor sum;
  int64_t n = 0;
  void update(const torch::Tensor& p, const torch::Tensor& t) override {
    auto s = (p - t).abs().sum().to(torch::kDouble);
    sum = sum.defined() ? sum + s : s;
    n += t.numel();
  }
  double compute() override { return sum.item<double>() / static_cast<double>(n); }
  void reset() override {
    sum = torch::Tensor();
    n = 0;
  }
  bool higher_is_better() const override { return false; }
};

// On the CPU also where a GPU is present (test_cuda covers CUDA): the tests compare with CPU tensors.
tf::Trainer make_trainer(tf::Metrics metrics = {}) {
  tf::seed_everything(3);
  torch::nn::Linear net(2, 1);
  tf::Trainer trainer(net, torch::nn::MSELoss(), std::move(metrics),
                      std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01)));
  trainer.to(torch::kCPU);
  return trainer;
}

using test::CaptureLogs;
BOOST_GLOBAL_FIXTURE(CaptureLogs);

}  // namespace

BOOST_AUTO_TEST_CASE(fit_runs_hooks_in_documented_order) {
  auto trainer = make_trainer();
  auto rec = std::make_shared<Recorder>();
  auto data = regression_data(6, 1);
  trainer.fit(tf::DataLoader(data, 3), tf::DataLoader(regression_data(2, 2), 2),
              tf::FitOptions().epochs(1).callbacks({rec}));
  const std::vector<std::string> batch = {"train_batch_begin", "before_backward", "after_backward",
                                          "before_optimizer_step", "train_batch_end"};
  std::vector<std::string> expected = {"fit_begin", "epoch_begin", "train_epoch_begin"};
  expected.insert(expected.end(), batch.begin(), batch.end());
  expected.insert(expected.end(), batch.begin(), batch.end());
  for (const char* h : {"train_epoch_end", "validation_begin", "validation_batch_begin", "validation_batch_end",
                        "validation_end", "epoch_end", "fit_end"}) {
    expected.push_back(h);
  }
  BOOST_TEST(rec->hooks == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(evaluate_and_predict_run_their_hooks) {
  auto trainer = make_trainer();
  auto rec = std::make_shared<Recorder>();
  trainer.evaluate(tf::DataLoader(regression_data(4, 1), 2), {rec});
  const std::vector<std::string> eval = {"validation_begin", "validation_batch_begin", "validation_batch_end",
                                         "validation_batch_begin", "validation_batch_end", "validation_end"};
  BOOST_TEST(rec->hooks == eval, boost::test_tools::per_element());
  rec->hooks.clear();
  auto out = trainer.predict(tf::DataLoader(tf::TensorDataset(torch::ones({3, 2})), 2), {rec});
  const std::vector<std::string> pred = {"predict_begin", "predict_batch_begin", "predict_batch_end",
                                         "predict_batch_begin", "predict_batch_end", "predict_end"};
  BOOST_TEST(rec->hooks == pred, boost::test_tools::per_element());
  BOOST_TEST(out.sizes() == torch::IntArrayRef({3, 1}));
}

BOOST_AUTO_TEST_CASE(accumulation_steps_every_k_batches_and_at_the_end) {
  auto trainer = make_trainer();
  auto rec = std::make_shared<Recorder>();
  trainer.fit(tf::DataLoader(regression_data(5, 1), 1), tf::FitOptions().epochs(1).accumulate(2).callbacks({rec}));
  // 5 batches, a step after batches 2, 4 and the last one.
  BOOST_TEST(rec->steps == std::vector<int64_t>({0, 1, 1, 2, 3}), boost::test_tools::per_element());
  BOOST_TEST(std::count(rec->hooks.begin(), rec->hooks.end(), "before_optimizer_step") == 3);
}

BOOST_AUTO_TEST_CASE(accumulating_k_batches_equals_one_batch_k_times_larger) {
  auto data = regression_data(16, 4);
  auto run = [&](int64_t batch, int64_t accumulate) {
    tf::seed_everything(11);
    torch::nn::Linear net(2, 1);
    tf::Trainer trainer(net, torch::nn::MSELoss(), {},
                        std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01)));
    trainer.fit(tf::DataLoader(data, batch), tf::FitOptions().epochs(2).accumulate(accumulate));
    return torch::cat({net->weight.flatten(), net->bias.flatten()});
  };
  auto big = run(8, 1);
  auto accumulated = run(4, 2);
  BOOST_TEST(torch::allclose(big, accumulated, 1e-5, 1e-6));
  BOOST_TEST(!torch::allclose(big, run(4, 1), 1e-5, 1e-6));  // the comparison can fail
}

BOOST_AUTO_TEST_CASE(clipping_bounds_the_gradient_norm) {
  struct NormProbe : tf::Callback {
    double max_norm = 0;
    void on_before_optimizer_step(tf::Context& ctx) override {
      double sq = 0;
      for (auto& p : ctx.net().parameters()) sq += p.grad().pow(2).sum().item<double>();
      max_norm = std::max(max_norm, std::sqrt(sq));
    }
  };
  auto probe = std::make_shared<NormProbe>();
  auto trainer = make_trainer();
  trainer.fit(tf::DataLoader(regression_data(32, 1), 8), tf::FitOptions().epochs(1).clip_grad_norm(0.5).callbacks({probe}));
  BOOST_TEST(probe->max_norm <= 0.5 + 1e-6);
  BOOST_TEST(probe->max_norm > 0.4);  // the data's gradients are far larger: clipping did happen

  // The norm clipped is the global one over every parameter group, as torch's
  // clip_grad_norm_(model.parameters()) is: weight and bias in two groups, each far above the
  // bound, end together at it (clipped group by group they would reach sqrt(2) times it).
  tf::seed_everything(3);
  torch::nn::Linear net(2, 1);
  std::vector<torch::optim::OptimizerParamGroup> groups{torch::optim::OptimizerParamGroup({net->weight}),
                                                        torch::optim::OptimizerParamGroup({net->bias})};
  auto sgd = std::make_shared<torch::optim::SGD>(groups, torch::optim::SGDOptions(0.01));
  tf::Trainer two_groups(net, torch::nn::MSELoss(), {}, sgd);
  auto global = std::make_shared<NormProbe>();
  two_groups.fit(tf::DataLoader(regression_data(32, 1), 8),
                 tf::FitOptions().epochs(1).clip_grad_norm(1e-3).callbacks({global}));
  BOOST_TEST(global->max_norm <= 1e-3 * (1 + 1e-5));
  BOOST_TEST(global->max_norm > 0.99e-3);
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(), -1.0}) {
    BOOST_CHECK_THROW(two_groups.fit(tf::DataLoader(regression_data(8, 1), 8), tf::FitOptions().clip_grad_norm(bad)),
                      tf::ConfigError);
    BOOST_CHECK_THROW(two_groups.fit(tf::DataLoader(regression_data(8, 1), 8), tf::FitOptions().clip_grad_value(bad)),
                      tf::ConfigError);
  }
}

BOOST_AUTO_TEST_CASE(clipping_by_value_bounds_every_gradient_element) {
  struct ValueProbe : tf::Callback {
    double max_abs = 0;
    void on_before_optimizer_step(tf::Context& ctx) override {
      for (auto& p : ctx.net().parameters()) max_abs = std::max(max_abs, p.grad().abs().max().item<double>());
    }
  };
  auto probe = std::make_shared<ValueProbe>();
  auto trainer = make_trainer();
  trainer.fit(tf::DataLoader(regression_data(32, 1), 8),
              tf::FitOptions().epochs(1).clip_grad_value(0.25).callbacks({probe}));
  BOOST_TEST(probe->max_abs <= 0.25);
  BOOST_TEST(probe->max_abs == 0.25);  // the raw gradients are far larger: clamping did happen
  BOOST_CHECK_THROW(trainer.fit(tf::DataLoader(regression_data(8, 1), 8), tf::FitOptions().clip_grad_value(-1)),
                    tf::ConfigError);
}

BOOST_AUTO_TEST_CASE(stop_request_ends_after_the_epoch) {
  struct StopAt : tf::Callback {
    void on_epoch_end(tf::Context& ctx) override {
      if (ctx.epoch == 2) ctx.request_stop("enough");
    }
  };
  auto trainer = make_trainer();
  auto h = trainer.fit(tf::DataLoader(regression_data(8, 1), 4), tf::FitOptions().epochs(5).callbacks({std::make_shared<StopAt>()}));
  BOOST_TEST(h.size() == 2u);
  BOOST_TEST(h.stop_reason() == "enough");
}

BOOST_AUTO_TEST_CASE(immediate_stop_ends_after_the_batch_without_a_partial_row) {
  struct StopNow : tf::Callback {
    int batches = 0;
    void on_train_batch_end(tf::Context& ctx) override {
      ++batches;
      if (ctx.epoch == 2 && ctx.batch_index == 0) ctx.request_stop("now", tf::StopWhen::Now);
    }
  };
  auto stop = std::make_shared<StopNow>();
  auto rec = std::make_shared<Recorder>();
  auto trainer = make_trainer();
  auto h = trainer.fit(tf::DataLoader(regression_data(8, 1), 4), tf::DataLoader(regression_data(4, 2), 4),
                       tf::FitOptions().epochs(5).callbacks({stop, rec}));
  BOOST_TEST(h.size() == 1u);
  BOOST_TEST(stop->batches == 3);
  BOOST_TEST(h.stop_reason() == "now");
  BOOST_TEST(rec->hooks.back() == "fit_end");
}

BOOST_AUTO_TEST_CASE(history_has_torchkeras_columns_and_completed_reason) {
  auto trainer = make_trainer({{"mae", std::make_shared<Mae>()}});
  struct Lr : tf::Callback {
    void on_train_epoch_end(tf::Context& ctx) override { ctx.logs.set("lr", 0.01); }
  };
  auto h = trainer.fit(tf::DataLoader(regression_data(10, 1), 4), tf::DataLoader(regression_data(5, 2), 2),
                       tf::FitOptions().epochs(3).callbacks({std::make_shared<Lr>()}));
  const std::vector<std::string> cols = {"epoch", "train_loss", "train_mae", "lr", "val_loss", "val_mae", "time"};
  BOOST_TEST(h.columns() == cols, boost::test_tools::per_element());
  BOOST_TEST(h.size() == 3u);
  BOOST_TEST(h[2].at("epoch") == 3.0);
  BOOST_TEST(h.stop_reason() == "completed 3 epochs");
}

BOOST_AUTO_TEST_CASE(epoch_values_are_exact_with_an_uneven_last_batch) {
  auto trainer = make_trainer({{"mae", std::make_shared<Mae>()}});
  auto data = regression_data(10, 5);  // batches of 4, 4, 2
  auto logs = trainer.evaluate(tf::DataLoader(data, 4));
  torch::NoGradGuard g;
  auto preds = trainer.net().forward(data.features());
  const double mse = torch::mse_loss(preds, data.targets()).item<double>();
  const double mae = (preds - data.targets()).abs().mean().item<double>();
  BOOST_TEST(logs.at("val_loss") == mse, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(logs.at("val_mae") == mae, boost::test_tools::tolerance(1e-6));
  // A mean of batch means would differ here: (m1 + m2 + m3) / 3 weights the last 2 samples double.
  auto sq = (preds - data.targets()).pow(2).flatten();
  const double mean_of_means = (sq.narrow(0, 0, 4).mean() + sq.narrow(0, 4, 4).mean() + sq.narrow(0, 8, 2).mean()).item<double>() / 3;
  BOOST_TEST(std::abs(mean_of_means - mse) > 1e-4);
}

BOOST_AUTO_TEST_CASE(predict_returns_outputs_in_order) {
  auto trainer = make_trainer();
  auto x = torch::randn({7, 2});
  auto out = trainer.predict(x, 3);
  torch::NoGradGuard g;
  BOOST_TEST(torch::allclose(out, trainer.net().forward(x)));
}

BOOST_AUTO_TEST_CASE(seeded_cpu_run_repeats_bit_for_bit) {
  auto run = [] {
    tf::seed_everything(21);
    torch::nn::Sequential net(torch::nn::Linear(2, 8), torch::nn::ReLU(), torch::nn::Linear(8, 1));
    tf::Trainer trainer(net, torch::nn::MSELoss());
    auto h = trainer.fit(tf::DataLoader(regression_data(64, 3), tf::LoaderOptions(8).shuffle(true)),
                         tf::DataLoader(regression_data(16, 4), 8), tf::FitOptions().epochs(3).seed(21));
    return std::make_pair(h, torch::cat({net->parameters()[0].flatten(), net->parameters()[3].flatten()}));
  };
  auto [h1, w1] = run();
  auto [h2, w2] = run();
  BOOST_TEST(torch::equal(w1, w2));
  for (size_t i = 0; i < h1.size(); ++i) {
    BOOST_TEST(h1[i].at("train_loss") == h2[i].at("train_loss"));
    BOOST_TEST(h1[i].at("val_loss") == h2[i].at("val_loss"));
  }
}

BOOST_AUTO_TEST_CASE(banner_names_the_device) {
  auto trainer = make_trainer();
  trainer.fit(tf::DataLoader(regression_data(4, 1), 4), tf::FitOptions().epochs(1));
  BOOST_TEST(test::captured_logs().find("<<<<<< cpu is used >>>>>>") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(hook_exception_names_callback_and_hook_and_reaches_on_exception) {
  struct Thrower : tf::Callback {
    void on_train_batch_end(tf::Context&) override { throw std::runtime_error("boom"); }
  };
  auto thrower = std::make_shared<Thrower>();
  thrower->set_name("thrower");
  auto rec = std::make_shared<Recorder>();
  auto trainer = make_trainer();
  try {
    trainer.fit(tf::DataLoader(regression_data(4, 1), 2), tf::FitOptions().epochs(1).callbacks({thrower, rec}));
    BOOST_FAIL("fit should have thrown");
  } catch (const tf::CallbackError& e) {
    BOOST_TEST(e.callback() == "thrower");
    BOOST_TEST(e.hook() == "on_train_batch_end");
    BOOST_TEST(std::string(e.what()).find("boom") != std::string::npos);
  }
  BOOST_TEST(rec->hooks.back().find("exception: callback 'thrower' failed in on_train_batch_end: boom") == 0);
}

BOOST_AUTO_TEST_CASE(shape_mismatch_names_both_shapes) {
  auto trainer = make_trainer();
  tf::TensorDataset bad(torch::randn({4, 2}), torch::randn({4}));
  try {
    trainer.fit(tf::DataLoader(bad, 4), tf::FitOptions().epochs(1));
    BOOST_FAIL("expected a DataError");
  } catch (const tf::DataError& e) {
    const std::string msg = e.what();
    BOOST_TEST(msg.find("[4, 1]") != std::string::npos);
    BOOST_TEST(msg.find("[4]") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(libtorch_errors_come_without_a_stack_dump) {
  auto trainer = make_trainer();
  tf::TensorDataset wrong_width(torch::randn({4, 3}), torch::randn({4, 1}));
  try {
    trainer.fit(tf::DataLoader(wrong_width, 2), tf::FitOptions().epochs(1));
    BOOST_FAIL("expected an error");
  } catch (const tf::Error& e) {
    const std::string msg = e.what();
    BOOST_TEST(msg.find("epoch 1, batch 0") != std::string::npos);
    BOOST_TEST(msg.find("Exception raised from") == std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(bad_inputs_are_refused_clearly) {
  BOOST_CHECK_THROW(tf::DataLoader(tf::TensorDataset(), 4), tf::DataError);
  BOOST_CHECK_THROW(tf::DataLoader(regression_data(4, 1), 0), tf::DataError);
  BOOST_CHECK_THROW(tf::TensorDataset(torch::randn({4, 2}), torch::randn({3, 1})), tf::DataError);
  torch::nn::Linear net(2, 1);
  BOOST_CHECK_THROW(tf::Trainer(net, torch::nn::MSELoss(), {{"mae", std::make_shared<Mae>()}, {"mae", std::make_shared<Mae>()}}),
                    tf::ConfigError);
  auto trainer = make_trainer();
  BOOST_CHECK_THROW(trainer.fit(tf::DataLoader(regression_data(4, 1), 2), tf::FitOptions().epochs(0)), tf::ConfigError);
  BOOST_CHECK_THROW(trainer.fit(tf::DataLoader(tf::TensorDataset(torch::randn({4, 2})), 2)), tf::DataError);
}

// ---- mixed precision and loss scaling ------------------------------------------------------

namespace {

// Trains Linear(2, 1) on the regression data for `epochs` from a fixed start; returns the weights.
torch::Tensor train_linear(tf::FitOptions options, int64_t epochs = 3) {
  tf::seed_everything(4);
  torch::nn::Linear net(2, 1);
  auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.05));
  tf::Trainer trainer(net, torch::nn::MSELoss(), {}, opt);
  trainer.to(torch::kCPU);
  trainer.fit(tf::DataLoader(regression_data(200, 1), tf::LoaderOptions(16).shuffle(true).seed(2)),
              tf::DataLoader(regression_data(50, 3), 50), options.epochs(epochs));
  return torch::cat({net->weight.detach().flatten(), net->bias.detach()});
}

// Puts an inf into the gradients of chosen steps (their global_step when the batch ends).
struct Overflow : tf::Callback {
  std::set<int64_t> at;
  void on_after_backward(tf::Context& ctx) override {
    if (at.erase(ctx.global_step)) ctx.net().parameters()[0].mutable_grad()[0][0] = INFINITY;  // once each
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(loss_scaling_is_exact_when_nothing_overflows) {
  // The scale is a power of two: multiplying and dividing by it changes no bit.
  const auto plain = train_linear(tf::FitOptions());
  auto scaler = std::make_shared<tf::GradScaler>();
  const auto scaled = train_linear(tf::FitOptions().grad_scaler(scaler));
  BOOST_TEST(torch::equal(plain, scaled));
  BOOST_TEST(scaler->skipped_steps() == 0);
  BOOST_TEST(scaler->scale_value() == 65536.0);
}

BOOST_AUTO_TEST_CASE(loss_scaling_skips_a_step_with_inf_gradients_and_backs_off) {
  auto overflow = std::make_shared<Overflow>();
  overflow->at = {5, 20};
  tf::GradScaler::Options o;
  o.growth_interval = 10;
  auto scaler = std::make_shared<tf::GradScaler>(o);
  tf::seed_everything(4);
  torch::nn::Linear net(2, 1);
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01));
  tf::Trainer trainer(net, torch::nn::MSELoss(), {}, opt);
  auto recorder = std::make_shared<Recorder>();
  trainer.fit(tf::DataLoader(regression_data(160, 1), 16),
              tf::FitOptions().epochs(3).grad_scaler(scaler).callbacks({overflow, recorder}));
  // 30 batches, 2 skipped: 28 steps; the weights stay finite.
  BOOST_TEST(recorder->steps.back() == 28);
  BOOST_TEST(scaler->skipped_steps() == 2);
  BOOST_TEST(torch::isfinite(net->weight).all().item<bool>());
  // Halved twice; the 10 good steps after the first skip doubled it once in between; 8 good
  // steps since the second (growth after 10).
  BOOST_TEST(scaler->scale_value() == 65536.0 * 0.5 * 2 * 0.5);
  BOOST_TEST(scaler->good_steps() == 8);
}

BOOST_AUTO_TEST_CASE(bf16_mixed_runs_forward_in_bfloat16_with_float32_weights) {
  struct Dtypes : tf::Callback {
    std::set<std::string> seen;
    void on_before_backward(tf::Context& ctx) override { seen.insert("train " + std::string(c10::toString(ctx.outputs[0].scalar_type()))); }
    void on_validation_batch_end(tf::Context& ctx) override { seen.insert("val " + std::string(c10::toString(ctx.outputs[0].scalar_type()))); }
  };
  auto dtypes = std::make_shared<Dtypes>();
  const auto w = train_linear(tf::FitOptions().precision(tf::Precision::BF16Mixed).callbacks({dtypes}), 40);
  BOOST_TEST((dtypes->seen == std::set<std::string>{"train BFloat16", "val BFloat16"}));
  BOOST_TEST(w.scalar_type() == torch::kFloat);
  // bfloat16 keeps 8 bits of mantissa: the line is learned to about 1%.
  BOOST_TEST_MESSAGE("bf16-mixed: w " << w);
  BOOST_TEST(std::abs(w[0].item<double>() - 2) < 0.1);
  BOOST_TEST(std::abs(w[1].item<double>() + 3) < 0.1);
  BOOST_TEST(std::abs(w[2].item<double>() - 10) < 0.5);
  // Autocast is off again after the fit.
#if TORCHFIT_TORCH_AT_LEAST(2, 4)
  BOOST_TEST(!at::autocast::is_autocast_enabled(at::kCPU));
#else
  BOOST_TEST(!at::autocast::is_cpu_enabled());
#endif
}

BOOST_AUTO_TEST_CASE(precision_names_and_float16_on_a_cpu) {
  BOOST_TEST((tf::parse_precision("bf16-mixed") == tf::Precision::BF16Mixed));
  BOOST_TEST((tf::parse_precision("32-true") == tf::Precision::Float32));
  try {
    tf::parse_precision("bf16");
    BOOST_ERROR("no error");
  } catch (const tf::ConfigError& e) {
    BOOST_TEST(std::string(e.what()) == "--precision must be 32, bf16-mixed or 16-mixed, got 'bf16'; did you mean "
                                        "'bf16-mixed'?");
  }
  try {
    train_linear(tf::FitOptions().precision(tf::Precision::FP16Mixed).device(torch::kCPU));
    BOOST_ERROR("no error");
  } catch (const tf::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("16-mixed precision needs a CUDA device") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(the_host_allocator_is_left_alone_when_the_environment_chooses) {
  const std::pair<const char*, const char*> choices[] = {{"TORCHFIT_HOST_ALLOCATOR", "system"},
                                                          {"MALLOC_TRIM_THRESHOLD_", "1000000"},
                                                          {"MALLOC_MMAP_THRESHOLD_", "1000000"},
                                                          {"MALLOC_TOP_PAD_", "0"},
                                                          {"GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000"}};
  for (const auto& [name, value] : choices) {
    ::setenv(name, value, 1);
    const auto tuning = tf::tune_host_allocator();
    ::unsetenv(name);
    BOOST_TEST(!tuning.applied, name);
#if defined(__GLIBC__)
    BOOST_TEST(tuning.reason.find(name) != std::string::npos, tuning.reason);
#endif
  }
}

// Under AddressSanitizer malloc is the sanitizer's, which takes no thresholds.
#if defined(__SANITIZE_ADDRESS__)
#define TORCHFIT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TORCHFIT_TEST_ASAN 1
#endif
#endif

#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 33) && !defined(TORCHFIT_TEST_ASAN)
BOOST_AUTO_TEST_CASE(the_tuned_host_allocator_keeps_large_buffers_on_the_heap) {
  const auto tuning = tf::tune_host_allocator();
  BOOST_TEST_REQUIRE(tuning.applied, tuning.reason);
  // mallinfo2().hblks counts the blocks malloc mapped from the system for a request.
  auto mapped_for = [](size_t bytes) {
    const auto before = mallinfo2().hblks;
    void* p = std::malloc(bytes);
    BOOST_REQUIRE(p != nullptr);
    static_cast<volatile char*>(p)[0] = 1;
    const auto after = mallinfo2().hblks;
    std::free(p);
    return after - before;
  };
  BOOST_TEST(mapped_for(size_t{1} << 20) == 0u);   // a batch's tensors: on the heap
  BOOST_TEST(mapped_for(size_t{24} << 20) == 0u);
  BOOST_TEST(mapped_for(size_t{48} << 20) == 1u);  // above 32 MiB: mapped, and unmapped when freed
}
#endif

// ---- nets of several inputs and outputs ----------------------------------------------------

namespace {
// y = 2*a - b (the side input), from two inputs.
struct TwoInputsImpl : torch::nn::Module {
  torch::nn::Linear image{nullptr}, side{nullptr};
  TwoInputsImpl() : image(register_module("image", torch::nn::Linear(4, 1))), side(register_module("side", torch::nn::Linear(1, 1))) {}
  torch::Tensor forward(const torch::Tensor& a, const torch::Tensor& b) { return image(a) + side(b); }
};
TORCH_MODULE(TwoInputs);

// The same net reading the batch by name.
struct ByNameImpl : torch::nn::Module {
  torch::nn::Linear image{nullptr}, side{nullptr};
  ByNameImpl() : image(register_module("image", torch::nn::Linear(4, 1))), side(register_module("side", torch::nn::Linear(1, 1))) {}
  torch::Tensor forward(const tf::Batch& b) { return image(b["image"]) + side(b["side"]); }
};
TORCH_MODULE(ByName);

// Two heads: class logits and a regression value.
struct TwoHeadsImpl : torch::nn::Module {
  torch::nn::Linear body{nullptr}, cls{nullptr}, reg{nullptr};
  TwoHeadsImpl()
      : body(register_module("body", torch::nn::Linear(4, 8))),
        cls(register_module("cls", torch::nn::Linear(8, 3))),
        reg(register_module("reg", torch::nn::Linear(8, 1))) {}
  std::tuple<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x) {
    auto h = torch::relu(body(x));
    return {cls(h), reg(h)};
  }
};
TORCH_MODULE(TwoHeads);

struct DictHeadsImpl : TwoHeadsImpl {
  std::map<std::string, torch::Tensor> forward(const torch::Tensor& x) {
    auto [c, r] = TwoHeadsImpl::forward(x);
    return {{"cls", c}, {"reg", r}};
  }
};
TORCH_MODULE(DictHeads);

tf::TensorDataset two_inputs(int64_t n, uint64_t seed) {
  auto gen = tf::compat::make_generator(seed);
  auto a = torch::randn({n, 4}, gen), b = torch::randn({n, 1}, gen);
  return tf::TensorDataset(tf::Fields()
                               .add_input("image", a)
                               .add_input("side", b)
                               .add_target("value", 2 * a.sum(1, true) - b));
}

tf::TensorDataset two_targets(int64_t n, uint64_t seed) {
  auto gen = tf::compat::make_generator(seed);
  auto x = torch::randn({n, 4}, gen);
  return tf::TensorDataset(tf::Fields()
                               .add_input("x", x)
                               .add_target("cls", x.narrow(1, 0, 3).argmax(1))
                               .add_target("reg", x.sum(1, true)));
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_net_of_two_inputs_trains_by_position_or_by_name) {
  for (bool by_name : {false, true}) {
    torch::manual_seed(3);
    tf::Net net = by_name ? tf::Net(ByName()) : tf::Net(TwoInputs());
    tf::Trainer trainer(net, torch::nn::MSELoss(), {}, nullptr);
    trainer.optimizer().param_groups()[0].options().set_lr(0.05);
    const auto h = trainer.fit(tf::DataLoader(two_inputs(256, 1), tf::LoaderOptions(32).shuffle(true).seed(1)),
                               tf::DataLoader(two_inputs(64, 2), 32), tf::FitOptions().epochs(30).device(torch::kCPU));
    BOOST_TEST_INFO(std::string(by_name ? "by name" : "by position"));
    BOOST_TEST(h[h.size() - 1].at("val_loss") < 0.01 * h[0].at("val_loss"));
    // predict and evaluate see the same two inputs.
    const auto val = two_inputs(64, 2);
    const auto preds = trainer.predict(tf::DataLoader(val, 16));
    torch::NoGradGuard g;
    BOOST_TEST(trainer.evaluate(tf::DataLoader(val, 16)).at("val_loss") ==
                   torch::mse_loss(preds, val.targets()).item<double>(),
               boost::test_tools::tolerance(1e-6));
  }
  // A batch with one input for a net of two: the message names both.
  tf::Trainer trainer{tf::Net(TwoInputs()), torch::nn::MSELoss()};
  const auto msg = test::error_of([&] { trainer.evaluate(tf::DataLoader(regression_data(8, 1), 4)); });
  BOOST_TEST(msg.find("the net's forward takes 2 inputs but the batch has 1 (x [4, 2] Float, y [4, 1] Float (target))") !=
                 std::string::npos,
             msg);
}

BOOST_AUTO_TEST_CASE(several_outputs_have_their_own_losses_metrics_and_columns) {
  for (bool dict : {false, true}) {
    BOOST_TEST_INFO(std::string(dict ? "a map of outputs" : "a tuple with output names"));
    torch::manual_seed(5);
    tf::Net net = dict ? tf::Net(DictHeads()) : tf::Net(TwoHeads()).output_names({"cls", "reg"});
    tf::Trainer trainer(net, tf::Losses{{"cls", torch::nn::CrossEntropyLoss(), 1.0, ""}, {"reg", torch::nn::MSELoss(), 0.5, ""}},
                        {{"reg_mae", std::make_shared<Mae>()}});
    const auto train = two_targets(200, 3), val = two_targets(50, 4);
    const auto h = trainer.fit(tf::DataLoader(train, tf::LoaderOptions(32).shuffle(true).seed(2)), tf::DataLoader(val, 16),
                               tf::FitOptions().epochs(3).device(torch::kCPU));
    const std::vector<std::string> cols = {"epoch",        "train_loss", "train_cls_loss", "train_reg_loss",
                                           "train_reg_mae", "val_loss",   "val_cls_loss",   "val_reg_loss",
                                           "val_reg_mae",  "time"};
    BOOST_TEST(h.columns() == cols, boost::test_tools::per_element());
    const auto& last = h[h.size() - 1];
    BOOST_TEST(last.at("train_loss") == last.at("train_cls_loss") + 0.5 * last.at("train_reg_loss"),
               boost::test_tools::tolerance(1e-6));  // each batch's total is a float32 sum
    // The validation columns against the final weights, computed by hand over the whole set.
    const auto out = trainer.predict_outputs(tf::DataLoader(val, 7));
    BOOST_TEST(out.count() == 2u);
    BOOST_TEST(out.name(0) == "cls");
    torch::NoGradGuard g;
    const double ce = torch::cross_entropy_loss(out["cls"], val.fields()["cls"]).item<double>();
    const double mse = torch::mse_loss(out["reg"], val.fields()["reg"]).item<double>();
    const double mae = (out["reg"] - val.fields()["reg"]).abs().mean().item<double>();
    BOOST_TEST(last.at("val_cls_loss") == ce, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(last.at("val_reg_loss") == mse, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(last.at("val_reg_mae") == mae, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(last.at("val_loss") == ce + 0.5 * mse, boost::test_tools::tolerance(1e-6));
    BOOST_TEST((trainer.higher_is_better("val_reg_loss") == std::optional<bool>(false)));
    BOOST_TEST(test::error_of([&] { trainer.predict(tf::DataLoader(val, 7)); }).find("use predict_outputs()") !=
               std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(outputs_losses_and_metrics_that_do_not_match_are_named) {
  const auto data = tf::DataLoader(two_targets(8, 1), 4);
  // One loss for a net of two outputs.
  tf::Trainer one(tf::Net(TwoHeads()).output_names({"cls", "reg"}), torch::nn::MSELoss());
  auto msg = test::error_of([&] { one.evaluate(data); });
  BOOST_TEST(msg.find("the net returned 2 outputs (cls [4, 3] Float, reg [4, 1] Float) but the trainer has one loss") !=
                 std::string::npos,
             msg);
  // A loss for an output the net does not have; a target the batch does not have.
  tf::Trainer typo(tf::Net(TwoHeads()).output_names({"cls", "reg"}),
                   tf::Losses{{"class", torch::nn::CrossEntropyLoss(), 1.0, ""}});
  msg = test::error_of([&] { typo.evaluate(data); });
  BOOST_TEST(msg.find("the loss is for output 'class', but the net returned (cls [4, 3] Float, reg [4, 1] Float)") !=
                 std::string::npos,
             msg);
  tf::Trainer no_target(tf::Net(TwoHeads()).output_names({"cls", "reg"}),
                        tf::Losses{{"cls", torch::nn::CrossEntropyLoss(), 1.0, "label"}});
  msg = test::error_of([&] { no_target.evaluate(data); });
  BOOST_TEST(msg.find("needs the target field 'label'") != std::string::npos, msg);
  // A metric that names no output; a wrong count of output names; a negative weight.
  msg = test::error_of([&] {
    tf::Trainer t(TwoHeads(), tf::Losses{{"cls", torch::nn::CrossEntropyLoss(), 1.0, ""}, {"reg", torch::nn::MSELoss(), 1.0, ""}},
                  {{"mae", std::make_shared<Mae>()}});
  });
  BOOST_TEST(msg.find("metric 'mae' does not say which output it measures: name it after one (cls_mae, reg_mae)") !=
                 std::string::npos,
             msg);
  tf::Trainer three(tf::Net(TwoHeads()).output_names({"a", "b", "c"}), torch::nn::MSELoss());
  BOOST_CHECK_THROW(three.evaluate(data), tf::ConfigError);
  BOOST_CHECK_THROW(tf::Trainer(TwoHeads(), tf::Losses{{"cls", torch::nn::MSELoss(), -1.0, ""}}), tf::ConfigError);
  BOOST_CHECK_THROW(tf::Trainer(TwoHeads(), tf::Losses{}), tf::ConfigError);
}

// ---- custom steps --------------------------------------------------------------------------

namespace {
// Two backward passes and two optimizer steps per batch over one Linear (like a GAN's two halves).
struct TwoPassStep : tf::Step {
  std::shared_ptr<torch::nn::LinearImpl> net;
  std::shared_ptr<torch::optim::SGD> opt;
  bool return_loss = true;
  explicit TwoPassStep(std::shared_ptr<torch::nn::LinearImpl> n)
      : net(std::move(n)), opt(std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01))) {}
  tf::StepValues train_step(tf::Context& ctx) override {
    const auto out = net->forward(ctx.batch.input());
    const auto first = torch::mse_loss(out, ctx.batch.target());
    ctx.backward(first);
    ctx.step(*opt);
    const auto second = (net->forward(ctx.batch.input()) - ctx.batch.target()).abs().mean();
    ctx.backward(second);
    ctx.step(*opt);
    ctx.outputs = tf::Outputs().add("output", out.detach(), tf::Role::Output);
    if (!return_loss) return {{"mse", first}};
    return {{"loss", first + second}, {"mae", second}};
  }
  std::vector<std::pair<std::string, std::shared_ptr<torch::optim::Optimizer>>> optimizers() override {
    return {{"sgd", opt}};
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_custom_step_runs_the_hooks_around_each_backward_and_step) {
  torch::nn::Linear lin(2, 1);
  auto step = std::make_shared<TwoPassStep>(lin.ptr());
  tf::Trainer trainer(tf::Net(lin), step, {{"mae", std::make_shared<Mae>()}});
  BOOST_TEST(&trainer.optimizer() == step->opt.get());  // the step's first optimizer is the trainer's
  auto rec = std::make_shared<Recorder>();
  const auto h = trainer.fit(tf::DataLoader(regression_data(6, 1), 3), tf::DataLoader(regression_data(4, 2), 4),
                             tf::FitOptions().epochs(1).callbacks({rec}).device(torch::kCPU));
  const std::vector<std::string> batch = {"train_batch_begin", "before_backward",       "after_backward",
                                          "before_optimizer_step", "before_backward",   "after_backward",
                                          "before_optimizer_step", "train_batch_end"};
  const auto first = std::find(rec->hooks.begin(), rec->hooks.end(), "train_batch_begin");
  BOOST_TEST(std::vector<std::string>(first, first + 8) == batch, boost::test_tools::per_element());
  BOOST_TEST(rec->steps == std::vector<int64_t>({1, 2}), boost::test_tools::per_element());  // one global step per batch
  // The step's values and the metric on its outputs; no validation_step: no val_ columns.
  const std::vector<std::string> cols = {"epoch", "train_loss", "train_mae", "time"};
  BOOST_TEST(h.columns() == cols, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(custom_step_mistakes_are_named) {
  torch::nn::Linear lin(2, 1);
  auto step = std::make_shared<TwoPassStep>(lin.ptr());
  step->return_loss = false;
  tf::Trainer trainer(tf::Net(lin), step);
  const auto data = tf::DataLoader(regression_data(6, 1), 3);
  auto msg = test::error_of([&] { trainer.fit(data, tf::FitOptions().epochs(1).device(torch::kCPU)); });
  BOOST_TEST(msg.find("train_step returned no \"loss\" (it returned mse)") != std::string::npos, msg);
  msg = test::error_of([&] { trainer.fit(data, tf::FitOptions().epochs(1).accumulate(2)); });
  BOOST_TEST(msg.find("gradient accumulation is for the default step") != std::string::npos, msg);
  // ctx.backward() belongs to a custom step, not to a callback of the default one.
  struct Meddler : tf::Callback {
    void on_train_batch_end(tf::Context& ctx) override { ctx.backward(torch::ones({})); }
  };
  tf::Trainer plain(tf::Net(torch::nn::Linear(2, 1)), torch::nn::MSELoss());
  msg = test::error_of([&] { plain.fit(data, tf::FitOptions().epochs(1).callbacks({std::make_shared<Meddler>()})); });
  BOOST_TEST(msg.find("ctx.backward() is for a custom Step's train_step") != std::string::npos, msg);
  BOOST_CHECK_THROW(tf::Trainer(tf::Net(lin), std::shared_ptr<tf::Step>()), tf::ConfigError);
}

BOOST_AUTO_TEST_CASE(predict_runs_the_steps_predict_step_or_the_net) {
  torch::nn::Linear lin(2, 1);
  auto step = std::make_shared<TwoPassStep>(lin.ptr());
  tf::Trainer trainer(tf::Net(lin), step);
  const auto data = tf::DataLoader(regression_data(7, 1), 3);
  // By default predict_step is the net's forward.
  const auto expected = lin->forward(regression_data(7, 1).features()).detach();
  BOOST_TEST(torch::allclose(trainer.predict(data), expected));
  // A step of its own: here the net's output and its square, as two outputs.
  struct Squares : TwoPassStep {
    using TwoPassStep::TwoPassStep;
    tf::Outputs predict_step(tf::Context& ctx) override {
      const auto y = net->forward(ctx.batch.input());
      return tf::Outputs().add("y", y, tf::Role::Output).add("y2", y * y, tf::Role::Output);
    }
  };
  tf::Trainer squares(tf::Net(lin), std::make_shared<Squares>(lin.ptr()));
  const auto out = squares.predict_outputs(data);
  BOOST_TEST(out.count() == 2u);
  BOOST_TEST(torch::allclose(out["y2"], expected * expected));
  struct Nothing : TwoPassStep {
    using TwoPassStep::TwoPassStep;
    tf::Outputs predict_step(tf::Context&) override { return {}; }
  };
  tf::Trainer nothing(tf::Net(lin), std::make_shared<Nothing>(lin.ptr()));
  BOOST_TEST(test::error_of([&] { nothing.predict(data); }) == "predict_step returned no outputs for batch 0");
}

namespace {

// A net with dropout and batch norm (random draws and running statistics), Adam, shuffled
// batches and validation: the preflight must leave no trace in any of them.
struct PreflightRun {
  tf::History history;
  std::vector<torch::Tensor> state;  // parameters and buffers after the fit
};

PreflightRun fit_small(bool preflight, int64_t epochs) {
  tf::seed_everything(5);
  torch::nn::Sequential seq(torch::nn::Linear(2, 16), torch::nn::BatchNorm1d(16), torch::nn::ReLU(),
                            torch::nn::Dropout(0.3), torch::nn::Linear(16, 1));
  tf::Net net(seq.ptr());
  tf::Trainer trainer(net, torch::nn::MSELoss(), {{"mae", std::make_shared<Mae>()}},
                      std::make_shared<torch::optim::Adam>(net.parameters(), torch::optim::AdamOptions(0.01)));
  trainer.to(torch::kCPU);
  PreflightRun r;
  r.history = trainer.fit(tf::DataLoader(regression_data(64, 1), tf::LoaderOptions(8).shuffle(true).seed(9)),
                          tf::DataLoader(regression_data(16, 2), 8),
                          tf::FitOptions().epochs(epochs).preflight(preflight));
  for (const auto& p : net.module().parameters()) r.state.push_back(p.clone());
  for (const auto& b : net.module().buffers()) r.state.push_back(b.clone());
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_preflight_leaves_the_run_bit_identical) {
  const auto with = fit_small(true, 3), without = fit_small(false, 3);
  BOOST_REQUIRE_EQUAL(with.state.size(), without.state.size());
  for (size_t i = 0; i < with.state.size(); ++i) BOOST_TEST(torch::equal(with.state[i], without.state[i]));
  BOOST_REQUIRE_EQUAL(with.history.size(), without.history.size());
  for (size_t e = 0; e < with.history.size(); ++e) {
    for (const char* key : {"train_loss", "train_mae", "val_loss", "val_mae"}) {
      BOOST_TEST(with.history[e].at(key) == without.history[e].at(key));  // exactly
    }
  }
}

BOOST_AUTO_TEST_CASE(the_preflight_refuses_validation_data_that_fails_before_any_training) {
  // Validation targets of the wrong width: without the preflight the mistake surfaces only
  // after a whole training epoch; with it, before the first optimizer step.
  auto trainer = make_trainer();
  const auto before = trainer.net().parameters()[0].clone();
  auto rec = std::make_shared<Recorder>();
  tf::TensorDataset wrong_val(torch::randn({4, 2}), torch::randn({4, 3}));
  BOOST_CHECK_THROW(trainer.fit(tf::DataLoader(regression_data(32, 1), 4), tf::DataLoader(wrong_val, 2),
                                tf::FitOptions().epochs(2).callbacks({rec})),
                    tf::Error);
  BOOST_TEST(std::count(rec->hooks.begin(), rec->hooks.end(), "train_batch_end") == 0);
  BOOST_TEST(torch::equal(trainer.net().parameters()[0], before));  // nothing of it reached the weights
  auto late = make_trainer();
  auto rec_late = std::make_shared<Recorder>();
  BOOST_CHECK_THROW(late.fit(tf::DataLoader(regression_data(32, 1), 4), tf::DataLoader(wrong_val, 2),
                             tf::FitOptions().epochs(2).preflight(false).callbacks({rec_late})),
                    tf::Error);
  BOOST_TEST(std::count(rec_late->hooks.begin(), rec_late->hooks.end(), "train_batch_end") == 8);
}
