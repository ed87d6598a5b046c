// torchkeras' first demo in C++: fit y = 2·x1 − 3·x2 + 10 + noise with Linear(2, 1).
//
// Exits 1 unless w is within 0.3 of (2, -3), b within 0.3 of 10 and val MAE below 1.8.
#include <torchfit/torchfit.hpp>

#include <cmath>
#include <iostream>

namespace tf = torchfit;

int main(int argc, char** argv) {
  const int64_t epochs = argc > 1 ? std::stoll(argv[1]) : 100;
  tf::seed_everything(2);
  auto x = 10 * torch::rand({400, 2}) - 5.0;
  auto y = x.matmul(torch::tensor({{2.0f}, {-3.0f}})) + 10.0 + torch::normal(0.0, 2.0, {400, 1});
  auto parts = tf::random_split(tf::TensorDataset(x, y), std::vector<double>{0.7, 0.3}, 2);

  tf::Registry plugins(tf::Registry::search_path());
  auto stop = plugins.make_callback(
      "early_stopping", plugins.parse_options(plugins.find("early_stopping", tf::PluginKind::Callback), {"--patience=10"}));

  torch::nn::Linear net(2, 1);
  // A learning-rate schedule (PyTorch's LambdaLR): the rate shrinks by 2% an epoch.
  auto decay = tf::lambda_schedule([](int64_t epoch) { return std::pow(0.98, static_cast<double>(epoch)); });
  tf::Trainer model(net, torch::nn::MSELoss(), plugins.make_metrics({"mae"}),
                    std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.05)), decay);
  auto history = model.fit(tf::DataLoader(parts[0], tf::LoaderOptions(16).shuffle(true)), tf::DataLoader(parts[1], 16),
                           tf::FitOptions().epochs(epochs).callbacks({stop}));
  std::cout << history.tail(3) << "stopped: " << history.stop_reason() << "\n";

  const auto w = net->weight.flatten();
  const double w1 = w[0].item<double>(), w2 = w[1].item<double>(), b = net->bias.item<double>();
  const double mae = model.evaluate(tf::DataLoader(parts[1], 16)).at("val_mae");
  std::cout << "w = (" << w1 << ", " << w2 << "), b = " << b << ", val_mae = " << mae << "\n";
  const bool ok = std::abs(w1 - 2) < 0.3 && std::abs(w2 + 3) < 0.3 && std::abs(b - 10) < 0.3 && mae < 1.8;
  return ok ? 0 : 1;
}
