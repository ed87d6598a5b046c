// load_exported: a LibTorch program without torchfit. It loads weights that
// `torchfit export --format libtorch` wrote and predicts with them.
//
//   torchfit train --model dnn_binary
//   torchfit export --format libtorch --output ring.pt
//   load_exported ring.pt 0.5 0.2 -1 2        # x y pairs: one probability per pair
//
// The net is built here exactly as the dnn_binary model builds it (docs/models.md); torch::load
// fills it by name.
#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4 || (argc - 2) % 2 != 0) {
    std::cerr << "usage: load_exported WEIGHTS.pt X Y [X Y ...]\n";
    return 2;
  }
  torch::nn::Sequential net(torch::nn::Linear(2, 4), torch::nn::ReLU(), torch::nn::Linear(4, 8), torch::nn::ReLU(),
                            torch::nn::Linear(8, 1));
  try {
    torch::load(net, argv[1]);
  } catch (const c10::Error& e) {
    std::cerr << "cannot load " << argv[1] << ": " << e.what_without_backtrace() << "\n";
    return 1;
  }
  net->eval();
  std::vector<float> values;
  for (int i = 2; i < argc; ++i) values.push_back(std::stof(argv[i]));
  const auto x = torch::tensor(values).reshape({-1, 2});
  torch::NoGradGuard no_grad;
  const auto probability = torch::sigmoid(net->forward(x)).reshape({-1});  // the net gives logits
  for (int64_t i = 0; i < probability.size(0); ++i) std::printf("%.9g\n", probability[i].item<double>());
  return 0;
}
