// A custom training step: a GAN with two optimizers learns to draw points on a ring.
//
// Shows docs/models.md#a-custom-step: a Step whose train_step calls ctx.backward() and
// ctx.step() for the discriminator and the generator, returns the values to log, lists its
// optimizers (saved in the state file: `--resume` continues a GAN bit for bit) and a
// validation_step. Exits 1 unless the generated points end up near the ring.
#include <torchfit/torchfit.hpp>

#include <cmath>
#include <iostream>

namespace tf = torchfit;

struct GanImpl : torch::nn::Module {
  GanImpl()
      : gen(register_module("gen", torch::nn::Sequential(torch::nn::Linear(4, 32), torch::nn::ReLU(),
                                                         torch::nn::Linear(32, 2)))),
        disc(register_module("disc", torch::nn::Sequential(torch::nn::Linear(2, 32), torch::nn::LeakyReLU(),
                                                           torch::nn::Linear(32, 1)))) {}
  // predict() draws points from noise.
  torch::Tensor forward(const torch::Tensor& z) { return gen->forward(z); }
  torch::nn::Sequential gen, disc;
};
TORCH_MODULE(Gan);

struct GanStep : tf::Step {
  Gan gan;
  std::shared_ptr<torch::optim::Adam> g_opt, d_opt;
  explicit GanStep(Gan g)
      : gan(g),
        g_opt(std::make_shared<torch::optim::Adam>(gan->gen->parameters(), torch::optim::AdamOptions(2e-3).betas({0.5, 0.999}))),
        d_opt(std::make_shared<torch::optim::Adam>(gan->disc->parameters(), torch::optim::AdamOptions(2e-3).betas({0.5, 0.999}))) {}

  tf::StepValues train_step(tf::Context& ctx) override {
    const auto real = ctx.batch["point"];
    const auto n = real.size(0);
    const auto fake = gan->gen->forward(torch::randn({n, 4}));
    auto bce = [](const torch::Tensor& logits, double label) {
      return torch::binary_cross_entropy_with_logits(logits, torch::full_like(logits, label));
    };
    // The discriminator: real points are 1, generated ones 0.
    d_opt->zero_grad();
    const auto d_loss = bce(gan->disc->forward(real), 1.0) + bce(gan->disc->forward(fake.detach()), 0.0);
    ctx.backward(d_loss);
    ctx.step(*d_opt);
    // The generator: make the discriminator say 1.
    g_opt->zero_grad();
    const auto g_loss = bce(gan->disc->forward(fake), 1.0);
    ctx.backward(g_loss);
    ctx.step(*g_opt);
    return {{"loss", g_loss}, {"d_loss", d_loss}};
  }
  // How far generated points are from the ring of radius 2 (lower is better).
  tf::StepValues validation_step(tf::Context& ctx) override {
    const auto fake = gan->gen->forward(torch::randn({ctx.batch.size(), 4}));
    return {{"loss", (fake.norm(2, 1) - 2.0).abs().mean()}};
  }
  std::vector<std::pair<std::string, std::shared_ptr<torch::optim::Optimizer>>> optimizers() override {
    return {{"generator", g_opt}, {"discriminator", d_opt}};
  }
};

int main(int argc, char** argv) {
  const int64_t epochs = argc > 1 ? std::stoll(argv[1]) : 80;
  tf::tune_host_allocator();
  tf::seed_everything(3);
  const int64_t n = 2000;
  auto theta = 2 * M_PI * torch::rand({n, 1});
  auto ring = torch::cat({torch::cos(theta), torch::sin(theta)}, 1) * 2 + 0.05 * torch::randn({n, 2});
  tf::TensorDataset points(tf::Fields().add_input("point", ring));  // no targets: the step needs none

  Gan gan;
  auto step = std::make_shared<GanStep>(gan);
  tf::Trainer model(gan, step);  // the trainer's optimizer (for lr_monitor and schedules): the step's first
  const auto history = model.fit(tf::DataLoader(points, tf::LoaderOptions(100).shuffle(true)),
                                 tf::DataLoader(points, 500), tf::FitOptions().epochs(epochs));
  std::cout << history.tail(3);
  const double distance = history[history.size() - 1].at("val_loss");
  std::cout << "generated points are on average " << distance << " from the ring\n";
  return distance < 0.5 ? 0 : 1;
}
