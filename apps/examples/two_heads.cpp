// Your own model with two inputs and two outputs: an image and a side vector in, a class and
// a value out, a loss and a metric per output.
//
// Shows docs/models.md: forward(Tensor, Tensor) fed from the batch's inputs in order, a tuple of
// outputs named with output_names, Losses with weights, metrics bound with for_output(), the
// history's per-output columns and predict_outputs(). Exits 1 unless both heads learned.
#include <torchfit/torchfit.hpp>

#include <iostream>

namespace tf = torchfit;

struct TwoHeadsImpl : torch::nn::Module {
  TwoHeadsImpl()
      : image(register_module("image", torch::nn::Linear(16, 16))),
        side(register_module("side", torch::nn::Linear(2, 16))),
        cls(register_module("cls", torch::nn::Linear(16, 3))),
        reg(register_module("reg", torch::nn::Linear(16, 1))) {}
  std::tuple<torch::Tensor, torch::Tensor> forward(const torch::Tensor& img, const torch::Tensor& vec) {
    auto h = torch::relu(image(img.flatten(1)) + side(vec));
    return {cls(h), reg(h)};
  }
  torch::nn::Linear image, side, cls, reg;
};
TORCH_MODULE(TwoHeads);

int main() {
  tf::tune_host_allocator();
  tf::seed_everything(4);
  const int64_t n = 3000;
  // A 4x4 "image" whose brightest quarter is the class, a side vector whose sum is the value.
  auto img = torch::rand({n, 1, 4, 4});
  auto vec = torch::randn({n, 2});
  auto quarters = torch::stack({img.narrow(2, 0, 2).narrow(3, 0, 2).mean({1, 2, 3}),
                                img.narrow(2, 0, 2).narrow(3, 2, 2).mean({1, 2, 3}),
                                img.narrow(2, 2, 2).mean({1, 2, 3})}, 1);
  tf::TensorDataset data(tf::Fields()
                             .add_input("image", img)
                             .add_input("side", vec)
                             .add_target("cls", quarters.argmax(1))
                             .add_target("reg", vec.sum(1, true) + img.mean({1, 2, 3}).unsqueeze(1)));
  auto parts = tf::random_split(data, std::vector<double>{0.8, 0.2}, 1);

  tf::Registry plugins(tf::Registry::search_path());
  TwoHeads net;
  tf::Metrics metrics = tf::for_output("cls", plugins.make_metrics({"accuracy"}));
  for (auto& m : tf::for_output("reg", plugins.make_metrics({"mae"}))) metrics.push_back(m);
  tf::Trainer model(tf::Net(net).output_names({"cls", "reg"}),
                    tf::Losses{{"cls", torch::nn::CrossEntropyLoss(), 1.0, ""}, {"reg", torch::nn::MSELoss(), 0.5, ""}},
                    metrics, std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.01)));
  const auto history = model.fit(tf::DataLoader(parts[0], tf::LoaderOptions(64).shuffle(true)),
                                 tf::DataLoader(parts[1], 256), tf::FitOptions().epochs(15));
  std::cout << history.tail(3) << "columns:";
  for (const auto& c : history.columns()) std::cout << " " << c;
  std::cout << "\n";

  const auto out = model.predict_outputs(tf::DataLoader(parts[1], 256));
  std::cout << "predict_outputs: " << out.describe() << "\n";
  const auto& last = history[history.size() - 1];
  return last.at("val_cls_accuracy") > 0.6 && last.at("val_reg_mae") < 0.3 ? 0 : 1;
}
