// torchkeras' second demo in C++: a small DNN separating two noisy rings, trained in-process.
//
// Shows the C++ API end to end: your own TORCH_MODULE net, the Trainer, plugins loaded from
// the registry (the acc metric, early stopping, the progress bar), evaluate, predict, summary.
// Exits 1 if val_acc stays below 0.88.
#include <torchfit/torchfit.hpp>

#include <cmath>
#include <iostream>

namespace tf = torchfit;

struct NetImpl : torch::nn::Module {
  NetImpl()
      : fc1(register_module("fc1", torch::nn::Linear(2, 4))),
        fc2(register_module("fc2", torch::nn::Linear(4, 8))),
        fc3(register_module("fc3", torch::nn::Linear(8, 1))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc3(torch::relu(fc2(torch::relu(fc1(x))))); }
  torch::nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(Net);

int main(int argc, char** argv) {
  const int64_t epochs = argc > 1 ? std::stoll(argv[1]) : 100;
  tf::tune_host_allocator();  // as the runner does: the heap keeps its pages between batches
  tf::seed_everything(2);

  // Two rings: positives around radius 5, negatives around radius 8.
  auto ring = [](double radius, int64_t n) {
    auto r = radius + torch::normal(0.0, 1.0, {n, 1});
    auto theta = 2 * M_PI * torch::rand({n, 1});
    return torch::cat({r * torch::cos(theta), r * torch::sin(theta)}, 1);
  };
  auto x = torch::cat({ring(5.0, 2000), ring(8.0, 2000)});
  auto y = torch::cat({torch::ones({2000, 1}), torch::zeros({2000, 1})});
  auto parts = tf::random_split(tf::TensorDataset(x, y), std::vector<double>{0.7, 0.3}, 2);
  tf::DataLoader train(parts[0], tf::LoaderOptions(100).shuffle(true));
  tf::DataLoader val(parts[1], 100);

  // Metrics and callbacks are plugins: the installed ones are found wherever this program is.
  tf::Registry plugins(tf::Registry::search_path());

  Net net;
  std::cout << tf::summary(net, x.narrow(0, 0, 1));
  tf::Trainer model(net, torch::nn::BCEWithLogitsLoss(), plugins.make_metrics({"acc"}),
                    std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.001)));
  auto history = model.fit(
      train, val,
      tf::FitOptions().epochs(epochs).callbacks(
          {plugins.callback("early_stopping", {{"monitor", "val_acc"}, {"mode", "max"}, {"patience", "10"}}),
           plugins.callback("progress_bar")}));
  std::cout << history.tail() << "stopped: " << history.stop_reason() << "\n";

  auto logs = model.evaluate(val);
  std::cout << "evaluate: " << logs.to_string() << "\n";
  auto probabilities = torch::sigmoid(model.predict(torch::tensor({{0.0f, 5.0f}, {8.0f, 0.0f}})));
  std::cout << "P(inner ring) at (0,5) and (8,0): " << probabilities.flatten() << "\n";
  return logs.at("val_acc") >= 0.88 ? 0 : 1;
}
