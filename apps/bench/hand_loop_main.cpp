// The hand-written ring loop as a program of its own (LibTorch only), for the peak-RSS comparison.
#include <iostream>

#include "hand_loop.hpp"

int main(int argc, char** argv) {
  const int64_t epochs = argc > 1 ? std::stoll(argv[1]) : 100;
  torch::manual_seed(2);
  const int64_t per_ring = 2000;
  auto ring = [&](double radius) {
    auto r = radius + torch::normal(0.0, 1.0, {per_ring, 1});
    auto theta = 2 * M_PI * torch::rand({per_ring, 1});
    return torch::cat({r * torch::cos(theta), r * torch::sin(theta)}, 1);
  };
  auto x = torch::cat({ring(5.0), ring(8.0)});
  auto y = torch::cat({torch::ones({per_ring, 1}), torch::zeros({per_ring, 1})});
  auto perm = torch::randperm(2 * per_ring);
  auto tr = perm.narrow(0, 0, 2800), va = perm.narrow(0, 2800, 1200);
  auto net = bench::ring_net();
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(0.001));
  auto r = bench::hand_loop(net, opt, x.index_select(0, tr), y.index_select(0, tr), x.index_select(0, va),
                            y.index_select(0, va), epochs, 100, 2, 1);
  std::cout << "val_acc " << r.val_acc << "\n";
  return 0;
}
