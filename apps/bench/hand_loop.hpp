// The baseline: the training loop a user would write by hand with LibTorch alone.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace bench {

struct HandResult {
  double train_loss = 0, val_loss = 0, val_acc = 0;
};

/// Trains `net` for `epochs` epochs: seeded shuffle with randperm + index_select, one Adam
/// step per batch, then validation loss and accuracy. Loss sums stay on the device; one
/// host sync per value per epoch, as a careful hand-written loop does.
/// `classes` = 1: one logit per sample (BCE); otherwise cross-entropy over `classes` scores.
/// The data's device is the device it trains on. `autocast()` returns a guard held around each
/// forward pass and loss (mixed precision), or anything for none.
struct NoGuard {};
template <typename Net, typename Autocast = NoGuard (*)()>
HandResult hand_loop(Net& net, torch::optim::Optimizer& opt, const torch::Tensor& x_train, const torch::Tensor& y_train,
                     const torch::Tensor& x_val, const torch::Tensor& y_val, int64_t epochs, int64_t batch_size,
                     uint64_t seed, int64_t classes, Autocast autocast = [] { return NoGuard{}; }) {
  auto loss_fn = [&](const torch::Tensor& out, const torch::Tensor& y) {
    return classes == 1 ? torch::binary_cross_entropy_with_logits(out, y) : torch::nn::functional::cross_entropy(out, y);
  };
  auto correct = [&](const torch::Tensor& out, const torch::Tensor& y) {
    return classes == 1 ? ((out >= 0) == (y >= 0.5)).sum() : (out.argmax(1) == y).sum();
  };
  HandResult r;
  const int64_t n = x_train.size(0), m = x_val.size(0);
  const auto device = x_train.device();
  torch::manual_seed(seed);
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    net->train();
    auto perm = torch::randperm(n, torch::kLong).to(device);
    auto loss_sum = torch::zeros({}, torch::TensorOptions(torch::kDouble).device(device));
    for (int64_t start = 0; start < n; start += batch_size) {
      auto idx = perm.narrow(0, start, std::min(batch_size, n - start));
      auto x = x_train.index_select(0, idx);
      auto y = y_train.index_select(0, idx);
      opt.zero_grad();
      torch::Tensor loss;
      {
        auto guard = autocast();
        loss = loss_fn(net->forward(x), y);
      }
      loss.backward();
      opt.step();
      loss_sum.add_(loss.detach(), x.size(0));
    }
    net->eval();
    torch::NoGradGuard no_grad;
    auto val_loss = torch::zeros({}, torch::TensorOptions(torch::kDouble).device(device));
    auto hits = torch::zeros({}, torch::TensorOptions(torch::kLong).device(device));
    for (int64_t start = 0; start < m; start += batch_size) {
      const int64_t len = std::min(batch_size, m - start);
      auto x = x_val.narrow(0, start, len), y = y_val.narrow(0, start, len);
      auto guard = autocast();
      auto out = net->forward(x);
      val_loss.add_(loss_fn(out, y), len);
      hits.add_(correct(out, y));
    }
    r.train_loss = loss_sum.item<double>() / static_cast<double>(n);
    r.val_loss = val_loss.item<double>() / static_cast<double>(m);
    r.val_acc = hits.item<double>() / static_cast<double>(m);
  }
  return r;
}

inline torch::nn::Sequential ring_net() {
  return torch::nn::Sequential(torch::nn::Linear(2, 4), torch::nn::ReLU(), torch::nn::Linear(4, 8), torch::nn::ReLU(),
                               torch::nn::Linear(8, 1));
}

inline torch::nn::Sequential mlp_net() {
  return torch::nn::Sequential(torch::nn::Linear(784, 512), torch::nn::ReLU(), torch::nn::Linear(512, 256),
                               torch::nn::ReLU(), torch::nn::Linear(256, 10));
}

/// The cnn plugin's default net for 1x28x28 images and 10 classes, written out in LibTorch.
inline torch::nn::Sequential cnn_net() {
  namespace nn = torch::nn;
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1).bias(false)), nn::BatchNorm2d(32), nn::ReLU(),
                        nn::MaxPool2d(2), nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1).bias(false)),
                        nn::BatchNorm2d(64), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(), nn::Dropout(0.2),
                        nn::Linear(64 * 7 * 7, 128), nn::ReLU(), nn::Dropout(0.2), nn::Linear(128, 10));
}

}  // namespace bench
