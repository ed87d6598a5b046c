// Resume: a fit stopped anywhere and resumed from its state file equals the fit never stopped,
// bit for bit; bad state files are refused with clear errors; nan_guard's three policies.
#define BOOST_TEST_MODULE resume
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <csignal>

#include "../support.hpp"

namespace tf = torchfit;
namespace fs = std::filesystem;
using test::CaptureLogs;
BOOST_GLOBAL_FIXTURE(CaptureLogs);

namespace {

// Two noisy rings, like the dnn_binary demo but small.
tf::TensorDataset rings(int64_t per_ring, uint64_t seed) {
  auto gen = tf::compat::make_generator(seed);
  auto make = [&](double radius) {
    auto r = radius + torch::randn({per_ring, 1}, gen);
    auto theta = 2 * M_PI * torch::rand({per_ring, 1}, gen);
    return torch::cat({r * torch::cos(theta), r * torch::sin(theta)}, 1);
  };
  auto x = torch::cat({make(5.0), make(8.0)}).to(torch::kFloat);
  auto y = torch::cat({torch::ones({per_ring, 1}), torch::zeros({per_ring, 1})});
  return tf::TensorDataset(x, y);
}

// Raises a signal at one point of the loop (the handlers turn it into a clean stop).
struct Interrupter : tf::Callback {
  Interrupter(std::string hook, int64_t epoch, int64_t batch, int signal = SIGINT)
      : hook(std::move(hook)), epoch(epoch), batch(batch), signal(signal) {
    set_name("interrupter");
  }
  void on_train_batch_end(tf::Context& ctx) override { maybe("train_batch", ctx, ctx.batch_index); }
  void on_validation_batch_end(tf::Context& ctx) override { maybe("validation_batch", ctx, ctx.batch_index); }
  void on_epoch_end(tf::Context& ctx) override { maybe("epoch_end", ctx, 0); }
  void maybe(const char* at, const tf::Context& ctx, int64_t b) {
    if (hook == at && ctx.epoch == epoch && b == batch && !fired) {
      fired = true;
      std::raise(signal);
    }
  }
  std::string hook;
  int64_t epoch, batch;
  int signal;
  bool fired = false;
};

struct Run {
  std::shared_ptr<tf::Trainer> trainer;
  tf::DataLoader train, val;
  tf::Callbacks callbacks;
  tf::FitOptions options;
};

// The same run every time, except the initial weights (`init`): a resume must not depend on them.
Run make_run(const test::TempDir& dir, uint64_t init, int64_t epochs, std::shared_ptr<tf::Callback> extra = nullptr,
             int64_t accumulate = 1, const std::vector<std::string>& early_stopping = {"--patience=100"}) {
  Run r;
  torch::manual_seed(init);
  torch::nn::Sequential seq(torch::nn::Linear(2, 16), torch::nn::ReLU(), torch::nn::Dropout(0.2),
                            torch::nn::Linear(16, 1));
  tf::Net net(seq.ptr());
  auto opt = std::make_shared<torch::optim::Adam>(net.parameters(), torch::optim::AdamOptions(0.01));
  r.trainer = std::make_shared<tf::Trainer>(net, torch::nn::BCEWithLogitsLoss(),
                                            test::registry().make_metrics({"acc", "auc"}), opt);
  const auto data = tf::random_split(rings(150, 3), std::vector<double>{0.7, 0.3}, 3);
  r.train = tf::DataLoader(data[0], tf::LoaderOptions(16).shuffle(true).seed(5));
  r.val = tf::DataLoader(data[1], tf::LoaderOptions(32));
  auto es = early_stopping;
  es.push_back("--monitor=val_acc");
  r.callbacks = {test::make_callback("early_stopping", es),
                 test::make_callback("model_checkpoint", {"--ckpt-path=" + (dir / "best.pt").string()})};
  if (extra) r.callbacks.push_back(extra);
  r.options = tf::FitOptions()
                  .epochs(epochs)
                  .callbacks(r.callbacks)
                  .device(torch::kCPU)
                  .accumulate(accumulate)
                  .state_path(dir / "run.state")
                  .state_every_steps(5);
  return r;
}

void check_same_rows(const tf::History& a, const tf::History& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    BOOST_REQUIRE_EQUAL(a[i].size(), b[i].size());
    for (size_t j = 0; j < a[i].size(); ++j) {
      const auto& [ka, va] = a[i].items()[j];
      const auto& [kb, vb] = b[i].items()[j];
      BOOST_TEST(ka == kb);
      if (ka == "time") continue;
      BOOST_TEST_INFO("epoch " << i + 1 << ", " << ka);
      BOOST_TEST(std::memcmp(&va, &vb, sizeof va) == 0, ka << ": " << tf::format_exact(va) << " vs "
                                                             << tf::format_exact(vb));
    }
  }
}

void check_same_weights(tf::Net& a, tf::Net& b) {
  auto pa = a.module().named_parameters();
  auto pb = b.module().named_parameters();
  BOOST_REQUIRE_EQUAL(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    BOOST_TEST_INFO(pa[i].key());
    BOOST_TEST(torch::equal(pa[i].value(), pb[i].value()));
  }
}

// The uninterrupted run, once per executable.
struct Reference {
  test::TempDir dir;
  Run run = make_run(dir, 1, 4);
  tf::History history = run.trainer->fit(run.train, run.val, run.options);
};
Reference& reference() {
  static Reference ref;
  return ref;
}

void interrupt_and_resume(const std::string& hook, int64_t epoch, int64_t batch) {
  auto& ref = reference();
  BOOST_REQUIRE_EQUAL(ref.history.size(), 4u);
  test::TempDir dir;
  tf::install_stop_signal_handlers();
  tf::clear_stop_signal();
  auto first = make_run(dir, 1, 4, std::make_shared<Interrupter>(hook, epoch, batch));
  const auto partial = first.trainer->fit(first.train, first.val, first.options);
  BOOST_TEST(first.trainer->interrupted_by() == SIGINT);
  BOOST_TEST(partial.stop_reason() == "interrupted by SIGINT");
  const auto info = tf::read_state_info(dir / "run.state");
  BOOST_TEST(!info.finished);
  BOOST_TEST(info.next_epoch == epoch + (hook == "epoch_end" ? 1 : 0));
  tf::clear_stop_signal();

  // Other initial weights and a disturbed global generator: all of it must come from the state.
  auto second = make_run(dir, 99, 4, std::make_shared<Interrupter>("none", 0, 0));
  torch::rand({1000});
  second.options.resume_from(dir / "run.state");
  const auto resumed = second.trainer->fit(second.train, second.val, second.options);
  BOOST_TEST(second.trainer->interrupted_by() == 0);
  check_same_rows(resumed, ref.history);
  BOOST_TEST(resumed.stop_reason() == ref.history.stop_reason());
  check_same_weights(second.trainer->net(), ref.run.trainer->net());
  // The best-weights checkpoint is the same file content too.
  tf::Net a(torch::nn::Sequential(torch::nn::Linear(2, 16), torch::nn::ReLU(), torch::nn::Dropout(0.2),
                                  torch::nn::Linear(16, 1))
                .ptr());
  tf::Net b(torch::nn::Sequential(torch::nn::Linear(2, 16), torch::nn::ReLU(), torch::nn::Dropout(0.2),
                                  torch::nn::Linear(16, 1))
                .ptr());
  tf::load_weights(a, dir / "best.pt");
  tf::load_weights(b, ref.dir / "best.pt");
  check_same_weights(a, b);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bit_exact_resume)

BOOST_AUTO_TEST_CASE(interrupted_in_the_middle_of_an_epoch) { interrupt_and_resume("train_batch", 2, 6); }
BOOST_AUTO_TEST_CASE(interrupted_after_the_first_batch) { interrupt_and_resume("train_batch", 1, 0); }
BOOST_AUTO_TEST_CASE(interrupted_after_the_last_batch_of_an_epoch) { interrupt_and_resume("train_batch", 3, 13); }
BOOST_AUTO_TEST_CASE(interrupted_at_an_epoch_end) { interrupt_and_resume("epoch_end", 2, 0); }
BOOST_AUTO_TEST_CASE(interrupted_during_validation) { interrupt_and_resume("validation_batch", 3, 1); }

BOOST_AUTO_TEST_CASE(interrupted_inside_a_gradient_accumulation_window) {
  // 14 batches an epoch, a step every 3: batch 7 (0-based) is mid-window, its gradients pending.
  test::TempDir ref_dir, dir;
  auto ref = make_run(ref_dir, 1, 2, std::make_shared<Interrupter>("none", 0, 0), 3);
  const auto expected = ref.trainer->fit(ref.train, ref.val, ref.options);
  tf::install_stop_signal_handlers();
  tf::clear_stop_signal();
  auto first = make_run(dir, 1, 2, std::make_shared<Interrupter>("train_batch", 1, 7), 3);
  first.trainer->fit(first.train, first.val, first.options);
  BOOST_TEST(first.trainer->interrupted_by() == SIGINT);
  tf::clear_stop_signal();
  auto second = make_run(dir, 7, 2, std::make_shared<Interrupter>("none", 0, 0), 3);
  second.options.resume_from(dir / "run.state");
  const auto resumed = second.trainer->fit(second.train, second.val, second.options);
  check_same_rows(resumed, expected);
  check_same_weights(second.trainer->net(), ref.trainer->net());
}

BOOST_AUTO_TEST_CASE(workers_and_random_transforms_resume_exactly_with_another_worker_count) {
  // Augmented data (noise and a random flip of the two coordinates, drawn per sample and
  // epoch) gathered by worker threads: the uninterrupted run with 2 workers, and a run with 3
  // workers interrupted mid-epoch then resumed with none, give the same rows and weights.
  auto augmented = [](int64_t workers) {
    return tf::LoaderOptions(16).shuffle(true).seed(5).workers(workers).transforms(
        {tf::transforms::gaussian_noise(0.3), tf::transforms::random_horizontal_flip(0.5)});
  };
  auto with_loader = [&](Run r, int64_t workers) {
    r.train = tf::DataLoader(r.train.dataset_ptr(), augmented(workers));
    return r;
  };
  test::TempDir ref_dir, dir;
  auto ref = with_loader(make_run(ref_dir, 1, 3, std::make_shared<Interrupter>("none", 0, 0)), 2);
  const auto expected = ref.trainer->fit(ref.train, ref.val, ref.options);
  // The augmentation is real: without it the run differs.
  test::TempDir plain_dir;
  auto plain = make_run(plain_dir, 1, 3, std::make_shared<Interrupter>("none", 0, 0));
  BOOST_TEST(plain.trainer->fit(plain.train, plain.val, plain.options)[0].at("train_loss") != expected[0].at("train_loss"));

  tf::install_stop_signal_handlers();
  tf::clear_stop_signal();
  auto first = with_loader(make_run(dir, 1, 3, std::make_shared<Interrupter>("train_batch", 2, 5)), 3);
  first.trainer->fit(first.train, first.val, first.options);
  BOOST_TEST(first.trainer->interrupted_by() == SIGINT);
  tf::clear_stop_signal();
  auto second = with_loader(make_run(dir, 8, 3, std::make_shared<Interrupter>("none", 0, 0)), 0);
  second.options.resume_from(dir / "run.state");
  const auto resumed = second.trainer->fit(second.train, second.val, second.options);
  check_same_rows(resumed, expected);
  check_same_weights(second.trainer->net(), ref.trainer->net());
}

// The rows of a dataset read in order like a file: the reader cannot seek (a resume skips),
// and the loader is not told the length.
struct RowStream : tf::StreamDataset {
  tf::TensorDataset rows;
  mutable std::atomic<int64_t> skipped{0};
  explicit RowStream(tf::TensorDataset r) : rows(std::move(r)) {}
  struct Reader : tf::StreamDataset::Reader {
    const tf::TensorDataset* rows;
    int64_t at = 0;
    explicit Reader(const tf::TensorDataset* r) : rows(r) {}
    std::optional<tf::Sample> next() override {
      if (at >= rows->size()) return std::nullopt;
      return rows->get(at++);
    }
  };
  std::unique_ptr<tf::StreamDataset::Reader> open(uint64_t, int64_t start) const override {
    auto r = std::make_unique<Reader>(&rows);
    skipped += tf::skip(*r, start);
    return r;
  }
  std::string name() const override { return "row stream"; }
};

BOOST_AUTO_TEST_CASE(a_stream_of_unknown_length_trains_like_its_rows_and_resumes_exactly) {
  // The training rows in order, with noise drawn per sample, in 16s: as a map-style dataset,
  // and as a stream read by 2 workers. Accumulating 3 batches makes the epoch's last, partial
  // window matter (the stream must know its last batch to step there).
  auto opts = [](int64_t workers) {
    return tf::LoaderOptions(16).seed(5).workers(workers).transforms({tf::transforms::gaussian_noise(0.3)});
  };
  auto as_stream = [&](Run r, int64_t workers) {
    const auto& rows = dynamic_cast<const tf::TensorDataset&>(r.train.dataset());
    r.train = tf::DataLoader(std::make_shared<RowStream>(rows), opts(workers));
    return r;
  };
  auto in_order = [&](Run r) {
    r.train = tf::DataLoader(r.train.dataset_ptr(), opts(0));
    return r;
  };
  test::TempDir map_dir, ref_dir, dir;
  auto map_run = in_order(make_run(map_dir, 1, 3, std::make_shared<Interrupter>("none", 0, 0), 3));
  const auto map_history = map_run.trainer->fit(map_run.train, map_run.val, map_run.options);
  auto ref = as_stream(make_run(ref_dir, 1, 3, std::make_shared<Interrupter>("none", 0, 0), 3), 2);
  const auto expected = ref.trainer->fit(ref.train, ref.val, ref.options);
  check_same_rows(expected, map_history);
  check_same_weights(ref.trainer->net(), map_run.trainer->net());

  tf::install_stop_signal_handlers();
  tf::clear_stop_signal();
  auto first = as_stream(make_run(dir, 1, 3, std::make_shared<Interrupter>("train_batch", 2, 4), 3), 3);
  first.trainer->fit(first.train, first.val, first.options);
  BOOST_TEST(first.trainer->interrupted_by() == SIGINT);
  tf::clear_stop_signal();
  test::TempDir other;
  fs::copy_file(dir / "run.state", other / "mid.state");
  auto second = as_stream(make_run(dir, 8, 3, std::make_shared<Interrupter>("none", 0, 0), 3), 0);
  second.options.resume_from(dir / "run.state");
  const auto resumed = second.trainer->fit(second.train, second.val, second.options);
  check_same_rows(resumed, expected);
  check_same_weights(second.trainer->net(), ref.trainer->net());
  // The resume read from the first batch not trained: 5 batches of 16 were skipped.
  BOOST_TEST(dynamic_cast<const RowStream&>(*second.train.stream_ptr()).skipped.load() == 5 * 16);
  // A stream's state cannot resume a fit over a dataset of known size (nor the reverse).
  auto map_again = in_order(make_run(other, 8, 3, std::make_shared<Interrupter>("none", 0, 0), 3));
  map_again.options.resume_from(other / "mid.state");
  BOOST_TEST(test::error_of([&] { map_again.trainer->fit(map_again.train, map_again.val, map_again.options); })
                 .find("was written for a stream of unknown length, but this fit trains on a dataset of known size") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(per_output_losses_resume_exactly_in_the_middle_of_an_epoch) {
  // Two heads, a loss each: their running sums are part of the state, as the total's is.
  struct HeadsImpl : torch::nn::Module {
    torch::nn::Linear body{nullptr}, cls{nullptr}, reg{nullptr};
    HeadsImpl()
        : body(register_module("body", torch::nn::Linear(2, 8))),
          cls(register_module("cls", torch::nn::Linear(8, 1))),
          reg(register_module("reg", torch::nn::Linear(8, 1))) {}
    std::vector<torch::Tensor> forward(const torch::Tensor& x) {
      auto h = torch::relu(body(x));
      return {cls(h), reg(h)};
    }
  };
  const auto rows = rings(100, 2);
  const tf::TensorDataset data(tf::Fields()
                                   .add_input("x", rows.features())
                                   .add_target("cls", rows.targets())
                                   .add_target("reg", rows.features().norm(2, 1, true)));
  auto run = [&](const test::TempDir& dir, uint64_t init, std::shared_ptr<tf::Callback> cb, bool resume) {
    torch::manual_seed(init);
    tf::Net net(std::make_shared<HeadsImpl>());
    net.output_names({"cls", "reg"});
    auto trainer = std::make_shared<tf::Trainer>(
        net, tf::Losses{{"cls", torch::nn::BCEWithLogitsLoss(), 1.0, ""}, {"reg", torch::nn::MSELoss(), 0.1, ""}},
        tf::for_output("cls", test::registry().make_metrics({"acc"})));
    auto options = tf::FitOptions().epochs(3).device(torch::kCPU).callbacks({cb}).state_path(dir / "run.state");
    if (resume) options.resume_from(dir / "run.state");
    auto h = trainer->fit(tf::DataLoader(data, tf::LoaderOptions(16).shuffle(true).seed(4).workers(1)),
                          tf::DataLoader(data, 64), options);
    return std::make_pair(trainer, h);
  };
  test::TempDir ref_dir, dir;
  const auto [ref, expected] = run(ref_dir, 1, std::make_shared<Interrupter>("none", 0, 0), false);
  BOOST_TEST(expected[0].contains("train_reg_loss"));
  BOOST_TEST(expected[0].contains("val_cls_acc"));
  tf::install_stop_signal_handlers();
  tf::clear_stop_signal();
  run(dir, 1, std::make_shared<Interrupter>("train_batch", 2, 4), false);
  tf::clear_stop_signal();
  const auto [second, resumed] = run(dir, 9, std::make_shared<Interrupter>("none", 0, 0), true);
  check_same_rows(resumed, expected);
  check_same_weights(second->net(), ref->net());
}

namespace {
// A small GAN: a generator and a discriminator (with dropout) in one module.
struct GanImpl : torch::nn::Module {
  torch::nn::Sequential gen{nullptr}, disc{nullptr};
  GanImpl()
      : gen(register_module("gen", torch::nn::Sequential(torch::nn::Linear(2, 8), torch::nn::ReLU(), torch::nn::Linear(8, 2)))),
        disc(register_module("disc", torch::nn::Sequential(torch::nn::Linear(2, 8), torch::nn::ReLU(),
                                                           torch::nn::Dropout(0.2), torch::nn::Linear(8, 1)))) {}
  torch::Tensor forward(const torch::Tensor& z) { return gen->forward(z); }
};

// Two optimizers, noise from the global generator, a counter of its own: all of it must resume.
struct GanStep : tf::Step {
  std::shared_ptr<GanImpl> gan;
  std::shared_ptr<torch::optim::Adam> g_opt, d_opt;
  int64_t batches = 0;
  explicit GanStep(std::shared_ptr<GanImpl> g)
      : gan(std::move(g)),
        g_opt(std::make_shared<torch::optim::Adam>(gan->gen->parameters(), torch::optim::AdamOptions(0.01))),
        d_opt(std::make_shared<torch::optim::Adam>(gan->disc->parameters(), torch::optim::AdamOptions(0.005))) {}
  tf::StepValues train_step(tf::Context& ctx) override {
    const auto real = ctx.batch.input();
    const auto n = real.size(0);
    const auto fake = gan->gen->forward(torch::randn({n, 2}));
    d_opt->zero_grad();
    const auto d_loss = torch::binary_cross_entropy_with_logits(gan->disc->forward(real), torch::ones({n, 1})) +
                        torch::binary_cross_entropy_with_logits(gan->disc->forward(fake.detach()), torch::zeros({n, 1}));
    ctx.backward(d_loss);
    ctx.step(*d_opt);
    const auto g_loss = torch::binary_cross_entropy_with_logits(gan->disc->forward(fake), torch::ones({n, 1}));
    ctx.backward(g_loss);
    ctx.step(*g_opt);
    ++batches;
    return {{"loss", g_loss}, {"d_loss", d_loss}};
  }
  tf::StepValues validation_step(tf::Context& ctx) override {
    const auto real = ctx.batch.input();
    return {{"loss", torch::sigmoid(gan->disc->forward(real)).mean()}};
  }
  std::vector<std::pair<std::string, std::shared_ptr<torch::optim::Optimizer>>> optimizers() override {
    return {{"generator", g_opt}, {"discriminator", d_opt}};
  }
  void state_dict(torch::serialize::OutputArchive& a) const override { a.write("batches", c10::IValue(batches)); }
  void load_state_dict(torch::serialize::InputArchive& a) override {
    c10::IValue v;
    a.read("batches", v);
    batches = v.toInt();
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_gan_with_two_optimizers_resumes_bit_for_bit) {
  const auto real = tf::TensorDataset(rings(80, 6).features() / 8);  // no targets: the step needs none
  auto run = [&](const test::TempDir& dir, uint64_t init, std::shared_ptr<tf::Callback> cb, bool resume) {
    torch::manual_seed(init);
    auto gan = std::make_shared<GanImpl>();
    auto step = std::make_shared<GanStep>(gan);
    auto trainer = std::make_shared<tf::Trainer>(tf::Net(gan), step);
    auto options = tf::FitOptions().epochs(3).device(torch::kCPU).callbacks({cb}).state_path(dir / "run.state");
    if (resume) options.resume_from(dir / "run.state");
    auto h = trainer->fit(tf::DataLoader(real, tf::LoaderOptions(16).shuffle(true).seed(2)), tf::DataLoader(real, 40),
                          options);
    return std::make_tuple(trainer, step, h);
  };
  test::TempDir ref_dir, dir;
  const auto [ref, ref_step, expected] = run(ref_dir, 1, std::make_shared<Interrupter>("none", 0, 0), false);
  const std::vector<std::string> cols = {"epoch", "train_loss", "train_d_loss", "val_loss", "time"};
  BOOST_TEST(expected.columns() == cols, boost::test_tools::per_element());
  BOOST_TEST(ref_step->batches == 30);  // 10 batches x 3 epochs
  tf::install_stop_signal_handlers();
  tf::clear_stop_signal();
  run(dir, 1, std::make_shared<Interrupter>("train_batch", 2, 3), false);
  tf::clear_stop_signal();
  const auto [second, second_step, resumed] = run(dir, 42, std::make_shared<Interrupter>("none", 0, 0), true);
  check_same_rows(resumed, expected);
  check_same_weights(second->net(), ref->net());
  BOOST_TEST(second_step->batches == 30);
}

BOOST_AUTO_TEST_CASE(a_run_that_stopped_early_is_not_trained_further) {
  test::TempDir dir;
  // min-delta 10 on val_acc can never be met: patience 1 stops at epoch 2.
  auto first = make_run(dir, 1, 6, nullptr, 1, {"--patience=1", "--min-delta=10"});
  const auto done = first.trainer->fit(first.train, first.val, first.options);
  BOOST_REQUIRE_EQUAL(done.size(), 2u);
  const auto info = tf::read_state_info(dir / "run.state");
  BOOST_TEST(info.finished);
  BOOST_TEST(info.stopped);
  BOOST_TEST(info.stop_reason == done.stop_reason());

  auto second = make_run(dir, 5, 6, nullptr, 1, {"--patience=1", "--min-delta=10"});
  second.options.resume_from(dir / "run.state");
  const auto again = second.trainer->fit(second.train, second.val, second.options);
  check_same_rows(again, done);
  BOOST_TEST(again.stop_reason() == done.stop_reason());
  // The same final weights: early stopping's best weights came back from the state file.
  check_same_weights(second.trainer->net(), first.trainer->net());
  BOOST_TEST(test::captured_logs().find("already ended") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_completed_run_continues_when_given_more_epochs) {
  auto& ref = reference();
  test::TempDir dir;
  auto first = make_run(dir, 1, 2);
  first.trainer->fit(first.train, first.val, first.options);
  BOOST_TEST(tf::read_state_info(dir / "run.state").finished);
  auto second = make_run(dir, 3, 4);
  second.options.resume_from(dir / "run.state");
  const auto more = second.trainer->fit(second.train, second.val, second.options);
  check_same_rows(more, ref.history);
  check_same_weights(second.trainer->net(), ref.run.trainer->net());
}

// A callback that throws in one hook, at epoch 2 (or in the fit-level hooks).
struct Thrower : tf::Callback {
  explicit Thrower(std::string hook) : hook(std::move(hook)) { set_name("thrower"); }
  std::string hook;
  void maybe(const char* name, const tf::Context& ctx) {
    if (hook == name && (ctx.epoch == 2 || ctx.epoch == 0 || hook == "on_fit_end")) throw std::runtime_error("boom");
  }
  void on_fit_begin(tf::Context& c) override { maybe("on_fit_begin", c); }
  void on_fit_end(tf::Context& c) override { maybe("on_fit_end", c); }
  void on_epoch_begin(tf::Context& c) override { maybe("on_epoch_begin", c); }
  void on_epoch_end(tf::Context& c) override { maybe("on_epoch_end", c); }
  void on_train_epoch_begin(tf::Context& c) override { maybe("on_train_epoch_begin", c); }
  void on_train_epoch_end(tf::Context& c) override { maybe("on_train_epoch_end", c); }
  void on_train_batch_begin(tf::Context& c) override { maybe("on_train_batch_begin", c); }
  void on_train_batch_end(tf::Context& c) override { maybe("on_train_batch_end", c); }
  void on_before_backward(tf::Context& c) override { maybe("on_before_backward", c); }
  void on_after_backward(tf::Context& c) override { maybe("on_after_backward", c); }
  void on_before_optimizer_step(tf::Context& c) override { maybe("on_before_optimizer_step", c); }
  void on_validation_begin(tf::Context& c) override { maybe("on_validation_begin", c); }
  void on_validation_end(tf::Context& c) override { maybe("on_validation_end", c); }
  void on_validation_batch_begin(tf::Context& c) override { maybe("on_validation_batch_begin", c); }
  void on_validation_batch_end(tf::Context& c) override { maybe("on_validation_batch_end", c); }
};

BOOST_AUTO_TEST_CASE(a_callback_that_throws_in_any_hook_loses_nothing) {
  // The error names the callback and the hook; the state file on disk is whole; a resume
  // without the failing callback ends exactly like the run that never failed.
  auto& ref = reference();
  for (const char* hook :
       {"on_fit_begin", "on_epoch_begin", "on_train_epoch_begin", "on_train_batch_begin", "on_before_backward",
        "on_after_backward", "on_before_optimizer_step", "on_train_batch_end", "on_train_epoch_end",
        "on_validation_begin", "on_validation_batch_begin", "on_validation_batch_end", "on_validation_end",
        "on_epoch_end", "on_fit_end"}) {
    BOOST_TEST_CONTEXT("hook " << hook) {
      test::TempDir dir;
      auto first = make_run(dir, 1, 4, std::make_shared<Thrower>(hook));
      try {
        first.trainer->fit(first.train, first.val, first.options);
        BOOST_ERROR("no error");
      } catch (const tf::CallbackError& e) {
        BOOST_TEST(std::string(e.what()).find(std::string("callback 'thrower' failed in ") + hook + ": boom") !=
                   std::string::npos, e.what());
      }
      if (std::string(hook) == "on_fit_begin") {
        BOOST_TEST(!fs::exists(dir / "run.state"));  // nothing was trained, nothing saved
        continue;
      }
      BOOST_REQUIRE_NO_THROW(tf::read_state_info(dir / "run.state"));
      auto second = make_run(dir, 9, 4);
      second.options.resume_from(dir / "run.state");
      const auto resumed = second.trainer->fit(second.train, second.val, second.options);
      check_same_rows(resumed, ref.history);
      check_same_weights(second.trainer->net(), ref.run.trainer->net());
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bad_state_files)

std::string resume_error(const fs::path& state, Run& run) {
  run.options.resume_from(state);
  run.options.state_path("");
  const auto before = tf::snapshot_weights(run.trainer->net());
  try {
    run.trainer->fit(run.train, run.val, run.options);
  } catch (const tf::CheckpointError& e) {
    // Nothing changed: the weights are those from before the attempt.
    const auto after = tf::snapshot_weights(run.trainer->net());
    for (size_t i = 0; i < before.size(); ++i) BOOST_TEST(torch::equal(before[i].second, after[i].second));
    return e.what();
  }
  BOOST_FAIL("resuming from " << state << " did not fail");
  return {};
}

BOOST_AUTO_TEST_CASE(truncated_at_any_byte_random_or_empty) {
  auto& ref = reference();
  const auto good = test::read_file(ref.dir / "run.state");
  test::TempDir dir;
  auto run = make_run(dir, 1, 4);
  const auto bad = dir / "bad.state";
  // Every byte near the start and end, and a spread in between.
  std::vector<size_t> cuts;
  for (size_t i = 1; i < 64; ++i) cuts.push_back(i);
  for (size_t i = 0; i < 64; ++i) cuts.push_back(good.size() - 1 - i);
  for (size_t i = 1; i < 200; ++i) cuts.push_back(good.size() * i / 200);
  for (size_t cut : cuts) {
    test::write_file(bad, good.substr(0, cut));
    BOOST_TEST_INFO("cut at " << cut << " of " << good.size());
    BOOST_TEST(!resume_error(bad, run).empty());
  }
  test::write_file(bad, "");
  BOOST_TEST(resume_error(bad, run).find("is empty") != std::string::npos);
  std::mt19937 rng(1);
  std::string noise(4096, '\0');
  for (auto& c : noise) c = static_cast<char>(rng());
  test::write_file(bad, noise);
  BOOST_TEST(resume_error(bad, run).find("damaged") != std::string::npos);
  // A flipped byte anywhere in the data: the checksum says so before LibTorch reads a byte.
  auto flipped = good;
  flipped[good.size() / 2] ^= 0x40;
  test::write_file(bad, flipped);
  BOOST_TEST(resume_error(bad, run).find("its checksum does not match") != std::string::npos);
  BOOST_TEST(resume_error(dir / "missing.state", run).find("does not exist") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(flipped_bytes_never_crash) {
  // Four random bytes changed: refused with a CheckpointError (the envelope's checksum or its
  // header says so), never a crash, another error type or a run that trains from damaged data.
  auto& ref = reference();
  const auto good = test::read_file(ref.dir / "run.state");
  test::TempDir dir;
  std::mt19937 rng(2);
  const int flips = std::getenv("TORCHFIT_TEST_FLIPS") ? std::atoi(std::getenv("TORCHFIT_TEST_FLIPS")) : 40;
  int refused = 0, unchanged = 0;
  for (int i = 0; i < flips; ++i) {
    auto damaged = good;
    for (int k = 0; k < 4; ++k) damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
    test::write_file(dir / "flip.state", damaged);
    auto run = make_run(dir, 1, 4);
    run.options.resume_from(dir / "flip.state").state_path("");
    BOOST_TEST_CONTEXT("flip " << i) {
      try {
        run.trainer->fit(run.train, run.val, run.options);
        // Only a file whose flips cancelled out may be read.
        BOOST_TEST(damaged == good);
        ++unchanged;
      } catch (const tf::CheckpointError& e) {
        BOOST_TEST(damaged != good);
        BOOST_TEST(std::string(e.what()).find("flip.state") != std::string::npos, e.what());
        ++refused;
      }
    }
  }
  BOOST_TEST(refused + unchanged == flips);
  BOOST_TEST(refused >= flips - 1);
}

BOOST_AUTO_TEST_CASE(a_weights_checkpoint_another_model_another_data_a_newer_format) {
  auto& ref = reference();
  test::TempDir dir;
  auto run = make_run(dir, 1, 4);
  BOOST_TEST(resume_error(ref.dir / "best.pt", run).find("is a torchfit weights checkpoint, not a state file") !=
             std::string::npos);

  // Another net: every mismatch is named with both shapes.
  torch::nn::Sequential wide(torch::nn::Linear(2, 8), torch::nn::ReLU(), torch::nn::Dropout(0.2),
                             torch::nn::Linear(8, 1));
  tf::Net net(wide.ptr());
  tf::Trainer other(net, torch::nn::BCEWithLogitsLoss(), test::registry().make_metrics({"acc", "auc"}),
                    std::make_shared<torch::optim::Adam>(net.parameters(), torch::optim::AdamOptions(0.01)));
  try {
    other.fit(run.train, run.val, tf::FitOptions().epochs(4).callbacks(run.callbacks).resume_from(ref.dir / "run.state"));
    BOOST_FAIL("another net was resumed");
  } catch (const tf::CheckpointError& e) {
    const std::string msg = e.what();
    BOOST_TEST(msg.find("0.weight: saved [16, 2], model [8, 2]") != std::string::npos, msg);
    BOOST_TEST(msg.find("3.weight: saved [1, 16], model [1, 8]") != std::string::npos, msg);
  }

  // Another batch size: the position inside an epoch would mean other samples.
  auto smaller = make_run(dir, 1, 4);
  smaller.train = tf::DataLoader(smaller.train.dataset_ptr(), tf::LoaderOptions(8).shuffle(true).seed(5));
  BOOST_TEST(resume_error(ref.dir / "run.state", smaller).find("resume with the same data and batch size") !=
             std::string::npos);

  // A callback added on resume starts with no state, and the log says so.
  auto added = make_run(dir, 1, 4, test::make_callback("lr_monitor", {}));
  added.options.resume_from(ref.dir / "run.state").state_path("");
  BOOST_CHECK_NO_THROW(added.trainer->fit(added.train, added.val, added.options));
  BOOST_TEST(test::captured_logs().find("callback 'lr_monitor' was not part of the saved run") != std::string::npos);

  // A newer format (byte 16: the envelope's format version, see docs/reliability.md).
  auto bytes = test::read_file(ref.dir / "run.state");
  bytes[16] = static_cast<char>(tf::kStateFormat + 1);
  test::write_file(dir / "future.state", bytes);
  BOOST_TEST(resume_error(dir / "future.state", run).find("has format version 2, newer than this torchfit reads (1)") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(an_unwritable_state_folder_stops_cleanly_and_keeps_the_previous_state) {
  test::TempDir dir;
  auto run = make_run(dir, 1, 3);
  fs::create_directories(dir / "sub");
  run.options.state_path(dir / "sub" / "run.state");
  // After epoch 1 the folder disappears: the next save fails with a message naming the file.
  struct RemoveFolder : tf::Callback {
    fs::path folder;
    void on_epoch_end(tf::Context& ctx) override {
      // Moved away in one step (a save may be writing into it right now).
      if (ctx.epoch == 2) fs::rename(folder, folder.string() + ".gone");
    }
  };
  auto remover = std::make_shared<RemoveFolder>();
  remover->folder = dir / "sub";
  auto callbacks = run.callbacks;
  callbacks.push_back(remover);
  run.options.callbacks(callbacks);
  try {
    run.trainer->fit(run.train, run.val, run.options);
    BOOST_FAIL("the save into a removed folder did not fail");
  } catch (const tf::CheckpointError& e) {
    BOOST_TEST(std::string(e.what()).find("run.state") != std::string::npos, e.what());
  }
  BOOST_TEST(run.trainer->history().size() == 2u);  // epochs finished before the failure are kept
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(nan_guard)

// BCE whose value is NaN on the `bad`-th call (0-based), counted over the whole fit.
tf::Loss poisoned_loss(int64_t bad) {
  auto calls = std::make_shared<int64_t>(0);
  return tf::Loss(
      [calls, bad](const torch::Tensor& preds, const torch::Tensor& targets) {
        auto loss = torch::binary_cross_entropy_with_logits(preds, targets);
        return (*calls)++ == bad ? loss * std::numeric_limits<float>::quiet_NaN() : loss;
      },
      "poisoned_bce");
}

struct NanRun {
  std::shared_ptr<tf::Trainer> trainer;
  tf::DataLoader train, val;
};

// The poisoned losses count their calls: their fits run without the preflight, which calls the
// loss twice before epoch 1.
NanRun nan_run(int64_t bad) {
  torch::manual_seed(1);
  torch::nn::Sequential seq(torch::nn::Linear(2, 8), torch::nn::ReLU(), torch::nn::Linear(8, 1));
  tf::Net net(seq.ptr());
  auto opt = std::make_shared<torch::optim::Adam>(net.parameters(), torch::optim::AdamOptions(0.01));
  NanRun r;
  r.trainer = std::make_shared<tf::Trainer>(net, poisoned_loss(bad), tf::Metrics{}, opt);
  const auto data = tf::random_split(rings(100, 4), std::vector<double>{0.8, 0.2}, 4);
  r.train = tf::DataLoader(data[0], tf::LoaderOptions(20).shuffle(true).seed(1));  // 8 batches
  r.val = tf::DataLoader(data[1], tf::LoaderOptions(40));
  return r;
}

bool all_finite(tf::Net& net) {
  for (const auto& p : net.parameters()) {
    if (!torch::isfinite(p).all().item<bool>()) return false;
  }
  return true;
}

BOOST_AUTO_TEST_CASE(terminate_names_epoch_batch_and_value) {
  auto r = nan_run(11);  // epoch 2 (validation calls the loss too: 8 train + 1 val per epoch), batch 3
  try {
    r.trainer->fit(r.train, r.val, tf::FitOptions().preflight(false).epochs(3).callbacks({test::make_callback("nan_guard", {})}));
    BOOST_FAIL("a NaN loss did not stop training");
  } catch (const tf::CallbackError& e) {
    const std::string msg = e.what();
    BOOST_TEST(msg.find("the training loss is nan at epoch 2, batch 3 of 8") != std::string::npos, msg);
    BOOST_TEST(msg.find("--nan_guard.policy skip_batch or rollback") != std::string::npos, msg);
  }
  BOOST_TEST(r.trainer->history().size() == 1u);
  BOOST_TEST(all_finite(r.trainer->net()));  // the NaN step was never taken
}

BOOST_AUTO_TEST_CASE(skip_batch_skips_and_counts) {
  auto r = nan_run(11);
  const auto h = r.trainer->fit(
      r.train, r.val, tf::FitOptions().preflight(false).epochs(3).callbacks({test::make_callback("nan_guard", {"--policy=skip_batch"})}));
  BOOST_REQUIRE_EQUAL(h.size(), 3u);
  BOOST_TEST(h[0].at("skipped_batches") == 0.0);
  BOOST_TEST(h[1].at("skipped_batches") == 1.0);
  BOOST_TEST(h[2].at("skipped_batches") == 0.0);
  BOOST_TEST(std::isfinite(h[1].at("train_loss")));  // the skipped batch is not counted
  BOOST_TEST(all_finite(r.trainer->net()));
  BOOST_TEST(test::captured_logs().find("batch skipped (1 so far)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(rollback_restores_and_lowers_the_learning_rate) {
  auto r = nan_run(11);
  const auto h = r.trainer->fit(
      r.train, r.val,
      tf::FitOptions().preflight(false).epochs(3).callbacks({test::make_callback("nan_guard", {"--policy=rollback", "--lr-factor=0.25"})}));
  BOOST_REQUIRE_EQUAL(h.size(), 3u);
  BOOST_TEST(tf::learning_rates(r.trainer->optimizer())[0] == 0.01 * 0.25);
  BOOST_TEST(all_finite(r.trainer->net()));
  BOOST_TEST(std::isfinite(h[1].at("train_loss")));
  BOOST_TEST(test::captured_logs().find("rolled back to the start of epoch 2") != std::string::npos);
}

namespace {
// A BCE loss that turns NaN on every call from call number `first` (0-based): nothing can help.
tf::Loss nan_from_call(int64_t first) {
  auto calls = std::make_shared<int64_t>(0);
  return tf::Loss([calls, first](const torch::Tensor& p, const torch::Tensor& t) {
    auto loss = torch::binary_cross_entropy_with_logits(p, t);
    return (*calls)++ >= first ? loss * std::numeric_limits<float>::quiet_NaN() : loss;
  });
}
}  // namespace

// NaN on every loss call from the 11th (epoch 2, batch 2): nothing nan_guard does can help. The
// error of a 3-epoch fit with nan_guard given `args`; the trainer's net after it in `net`.
std::string endless_nan_error(const std::vector<std::string>& args, tf::Net* net = nullptr) {
  auto r = nan_run(-1);
  tf::Trainer trainer(r.trainer->net(), nan_from_call(10));
  const auto error = test::error_of([&] {
    trainer.fit(r.train, r.val,
                tf::FitOptions().preflight(false).epochs(3).callbacks({test::make_callback("nan_guard", args)}));
  });
  BOOST_TEST(error.rfind("callback 'nan_guard' failed in ", 0) == 0u, error);  // a CallbackError
  if (net) *net = trainer.net();
  return error;
}

BOOST_AUTO_TEST_CASE(rollback_gives_up_after_max_rollbacks) {
  const auto error = endless_nan_error({"--policy=rollback", "--max-rollbacks=2"});
  BOOST_TEST(error.find("after 2 rollbacks") != std::string::npos, error);
}

BOOST_AUTO_TEST_CASE(skip_batch_gives_up_after_max_skips_in_a_row) {
  tf::Net net;
  const auto error = endless_nan_error({"--policy=skip_batch", "--max-skips=3"}, &net);
  BOOST_TEST(error.find("after 3 skipped batches in a row (nan_guard.max-skips)") != std::string::npos, error);
  BOOST_TEST(all_finite(net));
}

BOOST_AUTO_TEST_SUITE_END()
