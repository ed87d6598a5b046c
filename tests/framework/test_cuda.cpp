// The CUDA path: fit on a GPU agrees with the CPU, pinned-memory batches, fused loss-scale
// checks, float16/bfloat16 autocast, checkpoints and exact resume across devices.
// Every case needs a CUDA device; without one they are reported as skipped
// (scripts/cuda-check.sh runs them on a GPU machine).
#define BOOST_TEST_MODULE cuda
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "../support.hpp"

namespace tf = torchfit;
namespace utf = boost::unit_test;
using test::regression_data;

namespace {

struct NeedsCuda {
  boost::test_tools::assertion_result operator()(utf::test_unit_id) const {
    const bool available = torch::cuda::is_available();
    boost::test_tools::assertion_result r(available);
    r.message() << "no CUDA device (LibTorch " << tf::compat::torch_version() << ")";
    return r;
  }
};

using test::CaptureLogs;
BOOST_GLOBAL_FIXTURE(CaptureLogs);

// Two rings: the demo's problem, on a small MLP.
tf::TensorDataset rings(int64_t n, uint64_t seed) {
  auto gen = tf::compat::make_generator(seed);
  auto r = torch::cat({4 + torch::randn({n / 2, 1}, gen), 8 + torch::randn({n - n / 2, 1}, gen)});
  auto theta = 2 * M_PI * torch::rand({n, 1}, gen);
  auto y = torch::cat({torch::ones({n / 2, 1}), torch::zeros({n - n / 2, 1})});
  return tf::TensorDataset(torch::cat({r * torch::cos(theta), r * torch::sin(theta)}, 1), y);
}

struct Run {
  tf::History history;
  torch::Tensor weights;  // on the CPU, flattened
};

// Trains a fixed-seed 2-32-32-1 net for `epochs` on `device`.
Run train_rings(torch::Device device, tf::FitOptions options, tf::LoaderOptions loader = tf::LoaderOptions(64)) {
  tf::seed_everything(5);
  torch::nn::Sequential net(torch::nn::Linear(2, 32), torch::nn::ReLU(), torch::nn::Linear(32, 32), torch::nn::ReLU(),
                            torch::nn::Linear(32, 1));
  auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.01));
  tf::Trainer trainer(net, torch::nn::BCEWithLogitsLoss(), test::registry().make_metrics({"acc"}), opt);
  trainer.to(device);
  Run run;
  run.history = trainer.fit(tf::DataLoader(rings(2000, 1), loader.shuffle(true).seed(3)),
                            tf::DataLoader(rings(500, 2), tf::LoaderOptions(250).pin_memory(loader.pin_memory())),
                            options.device(device));
  std::vector<torch::Tensor> flat;
  for (const auto& p : net->parameters()) flat.push_back(p.detach().to(torch::kCPU).flatten());
  run.weights = torch::cat(flat);
  return run;
}

double last(const Run& run, const std::string& key) { return run.history.back().at(key); }

}  // namespace

BOOST_AUTO_TEST_SUITE(cuda, *utf::precondition(NeedsCuda()))

BOOST_AUTO_TEST_CASE(fit_on_cuda_agrees_with_the_cpu) {
  const auto cpu = train_rings(torch::kCPU, tf::FitOptions().epochs(5));
  const auto gpu = train_rings(torch::kCUDA, tf::FitOptions().epochs(5));
  // Same batches, same initial weights; only the kernels' rounding differs.
  for (const auto* key : {"train_loss", "val_loss", "val_acc"}) {
    BOOST_TEST_INFO(key);
    BOOST_TEST(std::abs(last(cpu, key) - last(gpu, key)) < 1e-3);
  }
  BOOST_TEST(torch::allclose(cpu.weights, gpu.weights, 1e-3, 1e-3));
  BOOST_TEST(last(gpu, "val_acc") > 0.9);
}

BOOST_AUTO_TEST_CASE(pinned_batches_give_the_same_run_as_data_on_the_device) {
  const auto on_device = train_rings(torch::kCUDA, tf::FitOptions().epochs(3));
  const auto pinned = train_rings(torch::kCUDA, tf::FitOptions().epochs(3), tf::LoaderOptions(64).pin_memory(true));
  BOOST_TEST(torch::equal(on_device.weights, pinned.weights));
  BOOST_TEST(last(on_device, "val_loss") == last(pinned, "val_loss"));
}

BOOST_AUTO_TEST_CASE(pin_memory_loader_copies_each_batch_to_the_device) {
  auto data = rings(100, 4);
  const auto loader = tf::DataLoader(data, tf::LoaderOptions(32).shuffle(true).seed(1).pin_memory(true)).to(torch::kCUDA);
  BOOST_TEST(loader.dataset().device().is_cpu());  // the data stays on the host; each batch is pinned and copied
  BOOST_TEST(loader.batch_device().is_cuda());
  const auto plain = tf::DataLoader(data, tf::LoaderOptions(32).shuffle(true).seed(1));
  auto epoch = loader.epoch(2);
  auto reference = plain.epoch(2);
  for (auto it = epoch.begin(); it != epoch.end(); ++it) {
    const auto batch = *it;
    BOOST_TEST(batch.input().is_cuda());
    BOOST_TEST(torch::equal(batch.input().cpu(), reference.batch(it.index()).input()));
    BOOST_TEST(torch::equal(batch.target().cpu(), reference.batch(it.index()).target()));
  }
}

BOOST_AUTO_TEST_CASE(fused_unscale_equals_the_generic_one_and_finds_inf) {
  auto grads_on = [](torch::Device device, bool with_inf) {
    auto a = torch::ones({3, 4}, torch::TensorOptions().device(device).requires_grad(true));
    auto b = torch::ones({5}, torch::TensorOptions().device(device).requires_grad(true));
    a.mutable_grad() = torch::arange(12, torch::kFloat).reshape({3, 4}).to(device) * 65536;
    b.mutable_grad() = torch::full({5}, 3.0 * 65536).to(device);
    if (with_inf) b.mutable_grad()[2] = INFINITY;
    return std::vector<torch::Tensor>{a, b};
  };
  tf::GradScaler gpu_scaler, cpu_scaler;
  auto gpu = grads_on(torch::kCUDA, false), cpu = grads_on(torch::kCPU, false);
  BOOST_TEST(gpu_scaler.unscale(gpu));
  BOOST_TEST(cpu_scaler.unscale(cpu));
  for (size_t i = 0; i < gpu.size(); ++i) BOOST_TEST(torch::equal(gpu[i].grad().cpu(), cpu[i].grad()));
  BOOST_TEST(torch::equal(gpu[1].grad().cpu(), torch::full({5}, 3.0f)));
  BOOST_TEST(!gpu_scaler.unscale(grads_on(torch::kCUDA, true)));
}

BOOST_AUTO_TEST_CASE(fp16_mixed_trains_with_loss_scaling) {
  struct Dtypes : tf::Callback {
    std::set<std::string> seen;
    void on_before_backward(tf::Context& ctx) override { seen.insert(c10::toString(ctx.outputs[0].scalar_type())); }
  };
  auto dtypes = std::make_shared<Dtypes>();
  auto scaler = std::make_shared<tf::GradScaler>();
  const auto run =
      train_rings(torch::kCUDA, tf::FitOptions().epochs(8).precision(tf::Precision::FP16Mixed).grad_scaler(scaler)
                                    .callbacks({dtypes}));
  BOOST_TEST((dtypes->seen == std::set<std::string>{"Half"}));
  BOOST_TEST(run.weights.scalar_type() == torch::kFloat);
  BOOST_TEST(last(run, "val_acc") > 0.9);
  BOOST_TEST_MESSAGE("16-mixed: scale " << scaler->scale_value() << ", skipped " << scaler->skipped_steps());
  BOOST_TEST(scaler->scale_value() > 1.0);
}

BOOST_AUTO_TEST_CASE(bf16_mixed_trains_on_cuda) {
  const auto run = train_rings(torch::kCUDA, tf::FitOptions().epochs(8).precision(tf::Precision::BF16Mixed));
  BOOST_TEST(last(run, "val_acc") > 0.9);
}

BOOST_AUTO_TEST_CASE(a_checkpoint_written_on_cuda_loads_on_the_cpu) {
  test::TempDir dir;
  tf::seed_everything(1);
  torch::nn::Linear gpu_net(3, 2);
  gpu_net->to(torch::kCUDA);
  tf::Net saved = gpu_net;
  tf::save_weights(saved, dir / "w.ckpt");
  torch::nn::Linear cpu_net(3, 2);
  tf::Net loaded = cpu_net;
  tf::load_weights(loaded, dir / "w.ckpt");
  BOOST_TEST(cpu_net->weight.device().is_cpu());
  BOOST_TEST(torch::equal(cpu_net->weight, gpu_net->weight.cpu()));
  BOOST_TEST(torch::equal(cpu_net->bias, gpu_net->bias.cpu()));
}

BOOST_AUTO_TEST_CASE(resume_on_cuda_continues_exactly) {
  test::TempDir dir;
  const auto whole = train_rings(torch::kCUDA, tf::FitOptions().epochs(4));
  train_rings(torch::kCUDA, tf::FitOptions().epochs(2).state_path(dir / "run.state"));
  const auto resumed = train_rings(torch::kCUDA, tf::FitOptions().epochs(4).state_path(dir / "run.state")
                                                     .resume_from(dir / "run.state"));
  BOOST_TEST(resumed.history.size() == 4u);
  BOOST_TEST(torch::equal(whole.weights, resumed.weights));
  BOOST_TEST(last(whole, "val_loss") == last(resumed, "val_loss"));
}

BOOST_AUTO_TEST_SUITE_END()
