// LR-schedule plugins against PyTorch's Python formulas (torch.optim.lr_scheduler), written
// out here independently; their state across a resume.
#define BOOST_TEST_MODULE schedulers
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <cmath>

#include "../support.hpp"

namespace tf = torchfit;
using test::CaptureLogs;
BOOST_GLOBAL_FIXTURE(CaptureLogs);

namespace {

constexpr double kBase = 0.1;

// The rate at every optimizer step, seen just before the step.
struct StepRates : tf::Callback {
  std::vector<double> rates;
  StepRates() { set_name("step_rates"); }
  void on_before_optimizer_step(tf::Context& ctx) override { rates.push_back(tf::learning_rates(ctx.optimizer())[0]); }
};

struct Fit {
  tf::History history;
  std::vector<double> step_rates;
};

// 40 samples in batches of 10: 4 steps an epoch. `extra` runs before the scheduler.
Fit fit_with(const std::string& plugin, const std::vector<std::string>& args, int64_t epochs,
             std::shared_ptr<tf::Callback> extra = nullptr) {
  torch::manual_seed(0);
  torch::nn::Linear net(2, 1);
  tf::Trainer trainer(net, torch::nn::MSELoss(), tf::Metrics{},
                      std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(kBase)));
  const auto data = test::regression_data(40, 1);
  auto rates = std::make_shared<StepRates>();
  tf::Callbacks callbacks;
  if (extra) callbacks.push_back(extra);
  callbacks.push_back(test::make_callback(plugin, args));
  callbacks.push_back(test::make_callback("lr_monitor", {}));
  callbacks.push_back(rates);
  Fit f;
  f.history = trainer.fit(tf::DataLoader(data, tf::LoaderOptions(10)), tf::DataLoader(data, tf::LoaderOptions(40)),
                          tf::FitOptions().epochs(epochs).callbacks(callbacks));
  f.step_rates = rates->rates;
  return f;
}

// Raises SIGINT at the end of epoch 3 when armed: the run stops there, its state saved.
struct Interrupt : tf::Callback {
  bool armed;
  explicit Interrupt(bool armed) : armed(armed) { set_name("interrupt"); }
  void on_epoch_end(tf::Context& ctx) override {
    if (armed && ctx.epoch == 3) std::raise(SIGINT);
  }
};

void check_epoch_rates(const tf::History& h, const std::function<double(int64_t)>& expected) {
  for (size_t i = 0; i < h.size(); ++i) {
    BOOST_TEST_INFO("epoch index " << i);
    BOOST_TEST(h[i].at("lr") == expected(static_cast<int64_t>(i)), boost::test_tools::tolerance(1e-12));
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(step_lr_matches_python) {
  // StepLR(step_size=3, gamma=0.5): lr = base * gamma ** (epoch // step_size)
  const auto f = fit_with("step_lr", {"--step-size=3", "--gamma=0.5"}, 10);
  check_epoch_rates(f.history, [](int64_t e) { return kBase * std::pow(0.5, e / 3); });
  BOOST_TEST(f.history[9].at("lr") == 0.1 * 0.125, boost::test_tools::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(step_lr_per_step) {
  const auto f = fit_with("step_lr", {"--step-size=5", "--gamma=0.1", "--interval=step"}, 3);
  BOOST_REQUIRE_EQUAL(f.step_rates.size(), 12u);
  for (size_t s = 0; s < f.step_rates.size(); ++s) {
    BOOST_TEST(f.step_rates[s] == kBase * std::pow(0.1, static_cast<double>(s / 5)), boost::test_tools::tolerance(1e-12));
  }
}

BOOST_AUTO_TEST_CASE(multistep_lr_matches_python) {
  // MultiStepLR(milestones=[2, 5, 9], gamma=0.1): lr = base * gamma ** bisect_right(milestones, epoch)
  const auto f = fit_with("multistep_lr", {"--milestones=2,5,9", "--gamma=0.1"}, 11);
  check_epoch_rates(f.history, [](int64_t e) {
    const int passed = (e >= 2) + (e >= 5) + (e >= 9);
    return kBase * std::pow(0.1, passed);
  });
}

BOOST_AUTO_TEST_CASE(cosine_lr_with_warmup_matches_python) {
  // SequentialLR([LinearLR(start_factor=1/3, total_iters=2), CosineAnnealingLR(T_max=6, eta_min=0.001)],
  //              milestones=[2])
  const auto f = fit_with("cosine_lr", {"--t-max=6", "--eta-min=0.001", "--warmup=2"}, 10);
  check_epoch_rates(f.history, [](int64_t e) {
    if (e < 2) return kBase * (1.0 / 3 + (1 - 1.0 / 3) * e / 2.0);
    const double t = std::min<double>(e - 2, 6);
    return 0.001 + (kBase - 0.001) * (1 + std::cos(M_PI * t / 6)) / 2;
  });
  BOOST_TEST(f.history[8].at("lr") == 0.001, boost::test_tools::tolerance(1e-12));  // T_max reached: eta_min
}

BOOST_AUTO_TEST_CASE(cosine_lr_defaults_to_the_rest_of_the_run) {
  const auto f = fit_with("cosine_lr", {}, 8);
  check_epoch_rates(f.history, [](int64_t e) { return kBase * (1 + std::cos(M_PI * e / 8)) / 2; });
}

BOOST_AUTO_TEST_CASE(one_cycle_lr_matches_python) {
  // OneCycleLR(max_lr=1.0, total_steps=20, pct_start=0.3, div_factor=25, final_div_factor=1e4),
  // two phases, cosine annealing, stepped after every optimizer step.
  const auto f = fit_with("one_cycle_lr", {"--max-lr=1.0"}, 5);
  BOOST_REQUIRE_EQUAL(f.step_rates.size(), 20u);
  const double initial = 1.0 / 25, minimum = initial / 1e4, total = 20;
  auto anneal = [](double start, double end, double pct) { return end + (start - end) / 2 * (std::cos(M_PI * pct) + 1); };
  for (size_t s = 0; s < 20; ++s) {
    const double end_up = 0.3 * total - 1;
    const double expected = s <= end_up ? anneal(initial, 1.0, s / end_up)
                                        : anneal(1.0, minimum, (s - end_up) / (total - 1 - end_up));
    BOOST_TEST_INFO("step " << s);
    BOOST_TEST(f.step_rates[s] == expected, boost::test_tools::tolerance(1e-12));
  }
  BOOST_TEST(f.step_rates.front() == initial, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(f.step_rates.back() == minimum, boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(reduce_lr_on_plateau_matches_python) {
  // A scripted monitored value; ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1,
  // threshold=1e-4, mode='min'). Worked by hand from PyTorch's step():
  // epochs 0-4 at 0.1, lowered after epoch 4, 0.05 for 5-8, lowered after 8, then 0.025.
  struct Script : tf::Callback {
    std::vector<double> values{1.0, 0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5, 0.5};
    // Logged by the end of validation: a schedule runs first in on_epoch_end, where it reads it.
    void on_validation_end(tf::Context& ctx) override { ctx.logs.set("score", values.at(ctx.epoch - 1)); }
    std::vector<std::string> logged_keys(const tf::Context&) const override { return {"score"}; }
  };
  const auto f = fit_with("reduce_lr_on_plateau",
                          {"--monitor=score", "--mode=min", "--factor=0.5", "--patience=2", "--cooldown=1"}, 10,
                          std::make_shared<Script>());
  const std::vector<double> expected{0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025};
  for (size_t i = 0; i < expected.size(); ++i) {
    BOOST_TEST_INFO("epoch index " << i);
    BOOST_TEST(f.history[i].at("lr") == expected[i], boost::test_tools::tolerance(1e-12));
  }
  BOOST_TEST(test::captured_logs().find("score did not improve for 3 epochs; lr lowered to 0.05") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_options_are_refused_by_name) {
  auto error = [](const std::string& plugin, const std::vector<std::string>& args) {
    try {
      test::make_callback(plugin, args);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(error("multistep_lr", {"--milestones=3,x"}).find("multistep_lr.milestones must be") != std::string::npos);
  BOOST_TEST(error("step_lr", {"--gamma=0"}).find("--step_lr.gamma must be a positive number, got 0") != std::string::npos);
  BOOST_TEST(error("one_cycle_lr", {"--pct-start=nan"}).find("--one_cycle_lr.pct-start must be between 0 and 1") !=
             std::string::npos);
  BOOST_TEST(error("cosine_lr", {"--warmup-start-factor=0"}).find("must be in (0, 1], got 0") != std::string::npos);
  BOOST_TEST(error("cosine_lr", {"--interval=batch"}).find("cosine_lr.interval must be epoch or step") != std::string::npos);
  BOOST_TEST(error("reduce_lr_on_plateau", {"--factor=2"}).find("factor must be between 0 and 1") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_schedule_survives_a_resume) {
  // Interrupted after epoch 3 of 8 and resumed: the same rates as a run never interrupted,
  // though the optimizer's rate at the resume is already decayed (the base comes from the state).
  test::TempDir dir;
  auto run = [&](bool armed, bool resume) {
    torch::manual_seed(0);
    torch::nn::Linear net(2, 1);
    tf::Trainer trainer(net, torch::nn::MSELoss(), tf::Metrics{},
                        std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(kBase)));
    const auto data = test::regression_data(40, 1);
    auto options = tf::FitOptions().epochs(8).state_path(dir / "s.state").callbacks(
        {std::make_shared<Interrupt>(armed), test::make_callback("step_lr", {"--step-size=2", "--gamma=0.5"}),
         test::make_callback("lr_monitor", {})});
    if (resume) options.resume_from(dir / "s.state");
    return trainer.fit(tf::DataLoader(data, tf::LoaderOptions(10)), tf::DataLoader(data, tf::LoaderOptions(40)),
                       options);
  };
  tf::install_stop_signal_handlers();
  tf::clear_stop_signal();
  const auto first = run(true, false);
  BOOST_TEST(first.size() == 3u);
  tf::clear_stop_signal();
  const auto resumed = run(false, true);
  BOOST_REQUIRE_EQUAL(resumed.size(), 8u);
  check_epoch_rates(resumed, [](int64_t e) { return kBase * std::pow(0.5, e / 2); });
}

BOOST_AUTO_TEST_CASE(a_wrapped_libtorch_scheduler_survives_a_resume) {
  // torch::optim::StepLR through wrap_scheduler, interrupted after epoch 3 of 8 and resumed:
  // the same rates as a run never interrupted (before, the schedule started again at 0).
  test::TempDir dir;
  auto run = [&](bool armed, bool resume) {
    torch::manual_seed(0);
    torch::nn::Linear net(2, 1);
    auto optimizer = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(kBase));
    auto schedule = tf::wrap_scheduler(std::make_shared<torch::optim::StepLR>(*optimizer, 2, 0.5));
    tf::Trainer trainer(net, torch::nn::MSELoss(), tf::Metrics{}, optimizer, schedule);
    const auto data = test::regression_data(40, 1);
    auto options = tf::FitOptions().epochs(8).state_path(dir / (armed || resume ? "s.state" : "whole.state"))
                       .callbacks({std::make_shared<Interrupt>(armed), test::make_callback("lr_monitor", {})});
    if (resume) options.resume_from(dir / "s.state");
    return trainer.fit(tf::DataLoader(data, tf::LoaderOptions(10)), tf::DataLoader(data, tf::LoaderOptions(40)),
                       options);
  };
  tf::install_stop_signal_handlers();
  tf::clear_stop_signal();
  const auto whole = run(false, false);
  BOOST_REQUIRE_EQUAL(whole.size(), 8u);
  const auto first = run(true, false);
  BOOST_TEST(first.size() == 3u);
  tf::clear_stop_signal();
  const auto resumed = run(false, true);
  BOOST_REQUIRE_EQUAL(resumed.size(), 8u);
  for (size_t e = 0; e < 8; ++e) {
    BOOST_TEST_INFO("epoch " << e + 1);
    BOOST_TEST(resumed[e].at("lr") == whole[e].at("lr"));
  }
  BOOST_TEST(whole[7].at("lr") < kBase);  // it did decay
}

BOOST_AUTO_TEST_CASE(a_lambda_schedule_is_pythons_lambda_lr) {
  // LambdaLR(lr_lambda=lambda e: 0.9 ** e), given to the trainer's constructor.
  torch::manual_seed(0);
  torch::nn::Linear net(2, 1);
  auto optimizer = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(kBase));
  tf::Trainer trainer(net, torch::nn::MSELoss(), tf::Metrics{}, optimizer,
                      tf::lambda_schedule([](int64_t e) { return std::pow(0.9, static_cast<double>(e)); }));
  const auto data = test::regression_data(40, 1);
  const auto h = trainer.fit(tf::DataLoader(data, tf::LoaderOptions(10)),
                             tf::FitOptions().epochs(4).callbacks({test::make_callback("lr_monitor", {})}));
  check_epoch_rates(h, [](int64_t e) { return kBase * std::pow(0.9, static_cast<double>(e)); });
}

BOOST_AUTO_TEST_CASE(a_schedule_runs_first_wherever_it_is_listed) {
  // A callback listed before step_lr reads the rate at the start of each epoch: the rate
  // step_lr set for that epoch, not the previous one (no "put the schedule first" rule).
  struct EpochStartRates : tf::Callback {
    std::vector<double> rates;
    void on_train_epoch_begin(tf::Context& ctx) override { rates.push_back(tf::learning_rates(ctx.optimizer())[0]); }
  };
  auto seen = std::make_shared<EpochStartRates>();
  const auto f = fit_with("step_lr", {"--step-size=1", "--gamma=0.5"}, 4, seen);
  BOOST_REQUIRE_EQUAL(seen->rates.size(), 4u);
  for (size_t e = 0; e < 4; ++e) BOOST_TEST(seen->rates[e] == kBase * std::pow(0.5, static_cast<double>(e)));
  check_epoch_rates(f.history, [](int64_t e) { return kBase * std::pow(0.5, static_cast<double>(e)); });
}

BOOST_AUTO_TEST_CASE(two_schedules_in_one_fit_are_refused) {
  // Each would set the rate its own way: refused before a batch, naming both.
  auto seen = std::make_shared<StepRates>();
  try {
    fit_with("step_lr", {}, 2, test::make_callback("cosine_lr", {}));
    BOOST_FAIL("expected a ConfigError");
  } catch (const tf::ConfigError& e) {
    const std::string what = e.what();
    BOOST_TEST(what.find("two learning-rate schedules in one fit, 'cosine_lr' and 'step_lr'") != std::string::npos,
               what);
  }
  // The trainer's own schedule counts as one.
  torch::nn::Linear net(2, 1);
  auto optimizer = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(kBase));
  tf::Trainer trainer(net, torch::nn::MSELoss(), tf::Metrics{}, optimizer,
                      tf::wrap_scheduler(std::make_shared<torch::optim::StepLR>(*optimizer, 2, 0.5)));
  BOOST_CHECK_THROW(trainer.fit(tf::DataLoader(test::regression_data(40, 1), tf::LoaderOptions(10)),
                                tf::FitOptions().epochs(1).callbacks({test::make_callback("reduce_lr_on_plateau",
                                                                                          {"--monitor=train_loss"}),
                                                                      seen})),
                    tf::ConfigError);
  BOOST_TEST(seen->rates.empty());
}
