// The hand-written loops as a program of their own (LibTorch, and zlib to read gzip'd IDX
// files), for the peak-RSS comparison with `torchfit train`:
//   bench_hand_loop [EPOCHS]            the ring DNN (default 100 epochs)
//   bench_hand_loop cnn FOLDER EPOCHS   the CNN on Fashion-MNIST's test split (9,000 train, 1,000 validation)
#include <zlib.h>

#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "hand_loop.hpp"

namespace {

// A gzip'd IDX file of uint8 values: its dimensions and its bytes.
torch::Tensor read_idx_gz(const std::string& file) {
  gzFile f = gzopen(file.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + file);
  auto read = [&](void* into, unsigned n) {
    if (gzread(f, into, n) != static_cast<int>(n)) {
      gzclose(f);
      throw std::runtime_error(file + " is truncated");
    }
  };
  unsigned char magic[4];
  read(magic, 4);
  std::vector<int64_t> dims(magic[3]);
  for (auto& d : dims) {
    unsigned char b[4];
    read(b, 4);
    d = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
  }
  auto t = torch::empty(dims, torch::kByte);
  read(t.data_ptr(), static_cast<unsigned>(t.numel()));
  gzclose(f);
  return t;
}

int cnn(const std::string& folder, int64_t epochs) {
  const auto images = read_idx_gz(folder + "/t10k-images-idx3-ubyte.gz");
  const auto labels = read_idx_gz(folder + "/t10k-labels-idx1-ubyte.gz").to(torch::kLong);
  const auto x = ((images.to(torch::kFloat) / 255 - 0.2860) / 0.3530).unsqueeze(1);
  torch::manual_seed(2);
  auto net = bench::cnn_net();
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(2e-3));
  auto r = bench::hand_loop(net, opt, x.narrow(0, 0, 9000), labels.narrow(0, 0, 9000), x.narrow(0, 9000, 1000),
                            labels.narrow(0, 9000, 1000), epochs, 256, 2, 10);
  std::cout << "val_acc " << r.val_acc << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "cnn") {
    if (argc < 4) {
      std::cerr << "usage: bench_hand_loop cnn FOLDER EPOCHS\n";
      return 2;
    }
    try {
      return cnn(argv[2], std::stoll(argv[3]));
    } catch (const std::exception& e) {
      std::cerr << "bench_hand_loop: " << e.what() << "\n";
      return 1;
    }
  }
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
