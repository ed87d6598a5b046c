// Weights in and out from the C++ API (docs/deploy.md): train a net, export it as safetensors
// and as a PyTorch state_dict, start a second net from the file, freeze its first layer, give its
// head a rate of its own, and fine-tune. Exits 1 if the frozen layer moved or the head did not.
#include <torchfit/torchfit.hpp>

#include <cmath>
#include <filesystem>
#include <iostream>

namespace tf = torchfit;

int main() {
  tf::seed_everything(2);
  auto ring = [](double radius, int64_t n) {
    auto r = radius + torch::normal(0.0, 1.0, {n, 1});
    auto theta = 2 * M_PI * torch::rand({n, 1});
    return torch::cat({r * torch::cos(theta), r * torch::sin(theta)}, 1);
  };
  auto x = torch::cat({ring(5.0, 500), ring(8.0, 500)});
  auto y = torch::cat({torch::ones({500, 1}), torch::zeros({500, 1})});
  tf::DataLoader train(tf::TensorDataset(x, y), tf::LoaderOptions(100).shuffle(true));
  auto make_net = [] {
    return torch::nn::Sequential(torch::nn::Linear(2, 8), torch::nn::ReLU(), torch::nn::Linear(8, 1));
  };
  const auto folder = std::filesystem::temp_directory_path();

  // 1. Train, then export: safetensors for anyone, a state_dict for Python's torch.load.
  auto first = make_net();
  tf::Trainer base(first, torch::nn::BCEWithLogitsLoss(), {},
                   std::make_shared<torch::optim::Adam>(first->parameters(), torch::optim::AdamOptions(1e-2)));
  base.fit(train, tf::FitOptions().epochs(3));
  tf::export_weights(first, folder / "ring.safetensors", tf::WeightsFormat::SafeTensors);
  tf::export_weights(first, folder / "ring.pth", tf::WeightsFormat::StateDict);

  // 2. A new net from the file: matched by name, the report says what was loaded.
  tf::Net second = make_net();
  std::cout << "init: " << tf::init_weights(second, folder / "ring.safetensors").to_string() << "\n";

  // 3. Freeze the first layer, give the head ("2") its own rate, fine-tune.
  const auto frozen = tf::freeze(second, {"0"});
  const auto before = second.module().named_parameters()["0.weight"].clone();
  const auto head_before = second.module().named_parameters()["2.weight"].clone();
  const auto groups = tf::param_groups(second, {{"2", 1e-2}}, 1e-3);
  std::vector<torch::optim::OptimizerParamGroup> optimizer_groups;
  for (size_t g = 0; g < groups.params.size(); ++g) {
    if (groups.params[g].empty()) continue;
    optimizer_groups.emplace_back(groups.params[g], std::make_unique<torch::optim::AdamOptions>(groups.lrs[g]));
  }
  tf::Trainer tune(second, torch::nn::BCEWithLogitsLoss(), {},
                   std::make_shared<torch::optim::Adam>(optimizer_groups, torch::optim::AdamOptions(1e-3)));
  tune.fit(train, tf::FitOptions().epochs(2));
  const bool kept = torch::equal(before, second.module().named_parameters()["0.weight"]);
  const bool moved = !torch::equal(head_before, second.module().named_parameters()["2.weight"]);
  std::cout << frozen.size() << " frozen tensors kept: " << (kept ? "yes" : "NO") << "; head trained: "
            << (moved ? "yes" : "NO") << "\n";
  return kept && moved ? 0 : 1;
}
