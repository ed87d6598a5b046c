// The standard callbacks: early stopping semantics, checkpoint files, lr logging, progress lines.
#define BOOST_TEST_MODULE callbacks
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "../support.hpp"

#include <torchfit/monitor.hpp>

namespace tf = torchfit;
namespace fs = std::filesystem;

namespace {

using test::CaptureLogs;
BOOST_GLOBAL_FIXTURE(CaptureLogs);

using test::make_callback;

// Counts the training batches it sees.
struct Counter : tf::Callback {
  int train_batches = 0;
  void on_train_batch_end(tf::Context&) override { ++train_batches; }
};

// Logs a scripted "score" each epoch and keeps a copy of the weights after each epoch.
struct Script : tf::Callback {
  std::vector<double> scores;
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> weights;
  explicit Script(std::vector<double> s) : scores(std::move(s)) {}
  void on_train_epoch_end(tf::Context& ctx) override { ctx.logs.set("score", scores.at(ctx.epoch - 1)); }
  std::vector<std::string> logged_keys(const tf::Context&) const override { return {"score"}; }
  void on_epoch_end(tf::Context& ctx) override { weights.push_back(tf::snapshot_weights(ctx.net())); }
};

struct Run {
  tf::History history;
  std::shared_ptr<Script> script;
  torch::nn::Linear net{nullptr};
};

Run fit(const std::vector<double>& scores, tf::Callbacks extra, std::shared_ptr<torch::optim::Optimizer> opt = nullptr,
        std::shared_ptr<tf::Schedule> sched = nullptr) {
  Run r;
  tf::seed_everything(2);
  r.net = torch::nn::Linear(2, 1);
  r.script = std::make_shared<Script>(scores);
  tf::Callbacks callbacks{r.script};
  callbacks.insert(callbacks.end(), extra.begin(), extra.end());
  if (!opt) opt = std::make_shared<torch::optim::SGD>(r.net->parameters(), torch::optim::SGDOptions(0.01));
  tf::Trainer trainer(r.net, torch::nn::MSELoss(), {}, opt, sched);
  r.history = trainer.fit(tf::DataLoader(test::regression_data(8, 1), 4),
                          tf::FitOptions().epochs(static_cast<int64_t>(scores.size())).callbacks(callbacks));
  return r;
}

// Early stopping on the scripted score; lower is better unless the test says otherwise (nothing
// else knows the score's direction).
std::shared_ptr<tf::Callback> stopper(std::vector<std::string> args) {
  args.push_back("--monitor=score");
  if (std::none_of(args.begin(), args.end(), [](const std::string& a) { return a.rfind("--mode=", 0) == 0; })) {
    args.push_back("--mode=min");
  }
  return make_callback("early_stopping", args);
}

}  // namespace

BOOST_AUTO_TEST_CASE(patience_counts_epochs_without_improvement) {
  // min mode: best at epoch 2; epochs 3, 4 do not improve; patience 2 stops at epoch 4.
  auto r = fit({5, 4, 4.5, 4.2, 1, 1}, {stopper({"--mode=min", "--patience=2"})});
  BOOST_TEST(r.history.size() == 4u);
  BOOST_TEST(test::captured_logs().find("<<<<<< score without improvement in 2 epoch,early stopping >>>>>>") !=
             std::string::npos);
  BOOST_TEST(r.history.stop_reason().find("best 4 at epoch 2") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(max_mode_and_min_delta) {
  // Improvements smaller than min_delta do not count.
  auto r = fit({0.5, 0.6, 0.605, 0.61, 0.9, 0.95}, {stopper({"--mode=max", "--patience=2", "--min-delta=0.05"})});
  BOOST_TEST(r.history.size() == 4u);
  auto r2 = fit({0.5, 0.6, 0.605, 0.61, 0.9, 0.95}, {stopper({"--mode=max", "--patience=2"})});
  BOOST_TEST(r2.history.size() == 6u);
}

BOOST_AUTO_TEST_CASE(a_value_that_is_not_finite_fails_the_run_with_its_row_kept) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  try {
    fit({0.5, 0.4, nan, 0.3}, {stopper({"--patience=5"})});
    BOOST_FAIL("a NaN monitored value did not end the run");
  } catch (const tf::CallbackError& e) {
    const std::string msg = e.what();
    BOOST_TEST(msg.find("score is nan at epoch 3: the run diverged") != std::string::npos, msg);
    BOOST_TEST(msg.find("--early_stopping.check-finite false") != std::string::npos, msg);
  }
  // A trainer that fails in on_epoch_end keeps the epoch's row: the history agrees with what
  // callbacks before the failing one saved of it.
  tf::seed_everything(2);
  torch::nn::Linear net(2, 1);
  auto script = std::make_shared<Script>(std::vector<double>{0.5, std::numeric_limits<double>::infinity()});
  tf::Trainer trainer(net, torch::nn::MSELoss(), {},
                      std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01)));
  BOOST_CHECK_THROW(trainer.fit(tf::DataLoader(test::regression_data(8, 1), 4),
                                tf::FitOptions().epochs(3).callbacks({script, stopper({})})),
                    tf::CallbackError);
  BOOST_TEST(trainer.history().size() == 2u);
  // Turned off, the run goes on.
  BOOST_TEST(fit({0.5, nan, 0.3}, {stopper({"--check-finite=false"})}).history.size() == 3u);
}

BOOST_AUTO_TEST_CASE(past_the_divergence_threshold_the_run_fails) {
  // Lightning's divergence_threshold: a loss that climbs past it has diverged.
  try {
    fit({2.0, 1.0, 4.0, 0.5}, {stopper({"--mode=min", "--patience=5", "--divergence-threshold=3"})});
    BOOST_FAIL("a value past the divergence threshold did not end the run");
  } catch (const tf::CallbackError& e) {
    const std::string msg = e.what();
    BOOST_TEST(msg.find("score is 4 at epoch 3, worse than early_stopping.divergence-threshold 3 (min)") !=
                   std::string::npos,
               msg);
  }
  // Up to the threshold itself, and for max mode below it, the run goes on.
  BOOST_TEST(fit({2.0, 3.0, 1.0}, {stopper({"--mode=min", "--divergence-threshold=3"})}).history.size() == 3u);
  BOOST_CHECK_THROW(fit({0.6, 0.1}, {stopper({"--mode=max", "--divergence-threshold=0.2"})}), tf::CallbackError);
  BOOST_TEST(fit({0.6, 0.3}, {stopper({"--mode=max", "--divergence-threshold=0.2"})}).history.size() == 2u);
}

BOOST_AUTO_TEST_CASE(non_finite_options_are_refused_by_name) {
  for (const char* bad : {"--min-delta=nan", "--min-delta=inf", "--min-delta=-1", "--baseline=nan",
                          "--divergence-threshold=inf"}) {
    try {
      stopper({bad});
      BOOST_FAIL(std::string("early_stopping took ") + bad);
    } catch (const tf::ConfigError& e) {
      const std::string option(bad + 2, std::string(bad).find('=') - 2);
      BOOST_TEST(std::string(e.what()).find("early_stopping." + option + " must be") != std::string::npos, e.what());
    }
  }
}

BOOST_AUTO_TEST_CASE(auto_mode_reads_the_key) {
  // "score" is not a known metric or a word like acc: auto means lower is better.
  auto r = fit({1, 2, 3, 4}, {stopper({"--patience=2"})});
  BOOST_TEST(r.history.size() == 3u);
}

BOOST_AUTO_TEST_CASE(baseline_must_be_beaten) {
  // max mode with baseline 0.8: nothing below it resets the wait.
  auto r = fit({0.1, 0.2, 0.3, 0.4, 0.5}, {stopper({"--mode=max", "--patience=3", "--baseline=0.8"})});
  BOOST_TEST(r.history.size() == 3u);
}

BOOST_AUTO_TEST_CASE(start_from_epoch_ignores_warm_up) {
  auto r = fit({1, 2, 3, 4, 5, 6}, {stopper({"--mode=min", "--patience=1", "--start-from-epoch=3"})});
  BOOST_TEST(r.history.size() == 5u);  // epoch 4 is the first counted (best), 5 does not improve
}

BOOST_AUTO_TEST_CASE(restores_the_exact_best_weights) {
  auto r = fit({3, 1, 2, 2.5, 2.7}, {stopper({"--mode=min", "--patience=3"})});
  BOOST_TEST(r.history.size() == 5u);
  const auto& best = r.script->weights.at(1);  // epoch 2
  BOOST_TEST(torch::equal(r.net->weight, best[0].second));
  BOOST_TEST(torch::equal(r.net->bias, best[1].second));
  BOOST_TEST(!torch::equal(r.net->weight, r.script->weights.back()[0].second));
  auto kept = fit({3, 1, 2, 2.5, 2.7}, {stopper({"--mode=min", "--patience=3", "--restore-best-weights=false"})});
  BOOST_TEST(torch::equal(kept.net->weight, kept.script->weights.back()[0].second));
}

BOOST_AUTO_TEST_CASE(missing_monitor_lists_the_keys_there_are) {
  // Refused before epoch 1: no batch trained, the keys that will be logged listed.
  auto seen = std::make_shared<Counter>();
  try {
    fit({1, 2}, {make_callback("early_stopping", {"--monitor=scor"}), seen});
    BOOST_FAIL("expected an error");
  } catch (const tf::ConfigError& e) {
    const std::string msg = e.what();
    BOOST_TEST(msg.find("callback 'early_stopping' monitors 'scor', which no epoch of this fit logs (did you mean "
                        "'score'?). The logged values are: epoch, train_loss, score, time") != std::string::npos, msg);
  }
  BOOST_TEST(seen->train_batches == 0);
  // A key only a callback logs, undeclared: refused, and the message says how to declare it.
  struct Undeclared : tf::Callback {
    void on_train_epoch_end(tf::Context& ctx) override { ctx.logs.set("quality", 1.0); }
  };
  try {
    fit({1, 2}, {std::make_shared<Undeclared>(), make_callback("early_stopping", {"--monitor=quality"})});
    BOOST_FAIL("expected an error");
  } catch (const tf::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("names it in logged_keys()") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(a_monitor_whose_direction_nothing_knows_is_refused_before_epoch_1) {
  // mode auto on a callback's own value: no metric says which way is better, and torchfit does
  // not guess from the name. Every monitoring plugin is refused the same way, before a batch.
  for (const char* plugin : {"early_stopping", "model_checkpoint", "reduce_lr_on_plateau", "event_log", "plot"}) {
    test::TempDir dir;
    auto seen = std::make_shared<Counter>();
    std::vector<std::string> args{"--monitor=score"};
    if (std::string(plugin) == "model_checkpoint") args.push_back("--ckpt-path=" + (dir / "ckpt").string());
    if (std::string(plugin) == "event_log") args.push_back("--path=" + (dir / "events.jsonl").string());
    if (std::string(plugin) == "plot") args.push_back("--path=" + (dir / "plot.svg").string());
    try {
      fit({1, 2}, {make_callback(plugin, args), seen});
      BOOST_FAIL(std::string("expected an error from ") + plugin);
    } catch (const tf::ConfigError& e) {
      const std::string msg = e.what();
      BOOST_TEST(msg.find("watches 'score' with mode auto") != std::string::npos, msg);
      BOOST_TEST(msg.find("set --" + std::string(plugin) + ".mode to min or max") != std::string::npos, msg);
    }
    BOOST_TEST(seen->train_batches == 0, plugin);
    BOOST_TEST(fs::is_empty(dir.path), plugin);  // nothing written
  }
  // The same key with a mode, or a metric's value with auto, trains.
  BOOST_TEST(fit({1, 2}, {stopper({"--mode=max"})}).history.size() == 2u);
  BOOST_TEST(fit({1, 2}, {make_callback("early_stopping", {"--monitor=train_loss"})}).history.size() == 2u);
}

BOOST_AUTO_TEST_CASE(checkpoint_keeps_the_best_and_says_so) {
  test::TempDir dir;
  const auto path = dir / "ckpt";
  fit({3, 1, 2, 0.5, 4}, {make_callback("model_checkpoint", {"--ckpt-path=" + path.string(), "--monitor=score", "--mode=min"})});
  BOOST_TEST(tf::read_checkpoint_info(path).logs.at("epoch") == 4);
  BOOST_TEST(test::captured_logs().find("<<<<<< reach best score : 0.5 >>>>>>") != std::string::npos);
  BOOST_TEST(!fs::exists(path.string() + ".last"));
}

BOOST_AUTO_TEST_CASE(checkpoint_last_every_n_and_top_k) {
  test::TempDir dir;
  const auto p = (dir / "ckpt").string();
  fit({5, 1, 4, 2, 3, 0.5}, {make_callback("model_checkpoint", {"--ckpt-path=" + p, "--monitor=score", "--mode=min",
                                                        "--save-last=true", "--top-k=2"})});
  BOOST_TEST(tf::read_checkpoint_info(p + ".last").logs.at("epoch") == 6);
  std::set<std::string> files;
  for (const auto& f : fs::directory_iterator(dir.path)) files.insert(f.path().filename().string());
  BOOST_TEST(files == std::set<std::string>({"ckpt", "ckpt.last", "ckpt.epoch002", "ckpt.epoch006"}),
             boost::test_tools::per_element());
  BOOST_TEST(tf::read_checkpoint_info(p + ".epoch002").logs.at("score") == 1);

  test::TempDir every;
  const auto q = (every / "ckpt").string();
  fit({5, 1, 4, 2, 3, 0.5}, {make_callback("model_checkpoint", {"--ckpt-path=" + q, "--monitor=score", "--mode=min",
                                                        "--every-n-epochs=3", "--top-k=-1"})});
  files.clear();
  for (const auto& f : fs::directory_iterator(every.path)) files.insert(f.path().filename().string());
  BOOST_TEST(files == std::set<std::string>({"ckpt", "ckpt.epoch003", "ckpt.epoch006"}), boost::test_tools::per_element());
  BOOST_TEST(tf::read_checkpoint_info(q).logs.at("epoch") == 6);
}

BOOST_AUTO_TEST_CASE(checkpoint_refuses_an_unwritable_folder_before_training) {
  test::TempDir dir;
  try {
    fit({1, 2}, {make_callback("model_checkpoint", {"--ckpt-path=" + (dir / "missing" / "ckpt").string(), "--monitor=score", "--mode=min"})});
    BOOST_FAIL("expected an error");
  } catch (const tf::CallbackError& e) {
    BOOST_TEST(e.hook() == "on_fit_begin");
    BOOST_TEST(std::string(e.what()).find("which does not exist") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(lr_monitor_fills_the_lr_column_between_train_and_val) {
  tf::seed_everything(1);
  torch::nn::Linear net(2, 1);
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1));
  auto sched = tf::wrap_scheduler(std::make_shared<torch::optim::StepLR>(*opt, 2, 0.5));
  tf::Trainer trainer(net, torch::nn::MSELoss(), {}, opt, sched);
  auto data = test::regression_data(8, 1);
  auto h = trainer.fit(tf::DataLoader(data, 4), tf::DataLoader(data, 4),
                       tf::FitOptions().epochs(5).callbacks({make_callback("lr_monitor", {})}));
  const std::vector<std::string> cols = {"epoch", "train_loss", "lr", "val_loss", "time"};
  BOOST_TEST(h.columns() == cols, boost::test_tools::per_element());
  // LibTorch's StepLR (step_size 2, gamma 0.5), stepped after each epoch, as this torchfit runs it.
  const auto lr = h.column("lr");
  BOOST_TEST(lr[0] == 0.1);
  BOOST_TEST(lr[4] < lr[0]);
  BOOST_TEST(test::captured_logs().find("lr changed from 0.1 to 0.05") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(progress_lines_when_not_a_terminal) {
  test::TempDir dir;
  const auto out_path = dir / "out.txt";
  // Send stdout to a file for the duration of the fit: the bar must choose plain lines.
  std::fflush(stdout);
  const int saved = ::dup(1);
  const int file = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  BOOST_REQUIRE(saved >= 0 && file >= 0);
  ::dup2(file, 1);
  ::close(file);
  fit({1, 2, 3}, {make_callback("progress_bar", {"--stream=stdout"})});
  std::fflush(stdout);
  ::dup2(saved, 1);
  ::close(saved);
  const auto text = test::read_file(out_path);
  BOOST_TEST(text.find("Epoch 1/3 - ") == 0u);
  BOOST_TEST(text.find("train_loss: ") != std::string::npos);
  BOOST_TEST(text.find("score: 3") != std::string::npos);
  BOOST_TEST(text.find('\r') == std::string::npos);
  BOOST_TEST(std::count(text.begin(), text.end(), '\n') == 3);
}

BOOST_AUTO_TEST_CASE(state_fields_are_named_once_for_saving_and_loading) {
  int64_t count = 7;
  double rate = 0.25;
  bool seen = true;
  std::string word = "cosine";
  std::vector<double> rates{0.1, 0.01};
  std::vector<int64_t> epochs{3, 1};
  tf::Monitor best("val_loss", tf::MonitorMode::Min);
  best.update(0.5, 2);
  auto fields = [&] {
    return tf::StateFields()
        .add("count", count)
        .add("rate", rate)
        .add("seen", seen)
        .add("word", word)
        .add("rates", rates)
        .add("epochs", epochs)
        .add(best);
  };
  BOOST_TEST(fields().keys() == std::vector<std::string>({"count", "rate", "seen", "word", "rates", "epochs", "has_best",
                                                          "best", "best_epoch"}),
             boost::test_tools::per_element());
  torch::serialize::OutputArchive out;
  fields().save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  auto archive = [&] {
    torch::serialize::InputArchive in;
    std::istringstream read(bytes.str());
    in.load_from(read);
    return in;
  };
  count = 0, rate = 0, seen = false, word.clear(), rates.clear(), epochs.clear(), best.reset();
  auto in = archive();
  fields().load(in);
  BOOST_TEST(count == 7);
  BOOST_TEST(rate == 0.25);
  BOOST_TEST(seen);
  BOOST_TEST(word == "cosine");
  BOOST_TEST(rates == std::vector<double>({0.1, 0.01}), boost::test_tools::per_element());
  BOOST_TEST(epochs == std::vector<int64_t>({3, 1}), boost::test_tools::per_element());
  BOOST_TEST(best.best() == 0.5);
  BOOST_TEST(best.best_epoch() == 2);

  // A field the state lacks (written before it existed) keeps its value.
  int64_t added = 42;
  auto in2 = archive();
  tf::StateFields().add("added", added).load(in2);
  BOOST_TEST(added == 42);
  // A field of another type is refused by name, not misread.
  double count_as_number = 0;
  auto in3 = archive();
  try {
    tf::StateFields().add("count", count_as_number).load(in3);
    BOOST_FAIL("expected a CheckpointError");
  } catch (const tf::CheckpointError& e) {
    BOOST_TEST(std::string(e.what()).find("state field 'count' holds Int, not a number") != std::string::npos, e.what());
  }
  // A key listed twice is a programming error.
  BOOST_CHECK_THROW(tf::StateFields().add("count", count).add("count", added), std::logic_error);
}
