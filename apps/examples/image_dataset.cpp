// Your own dataset: images made on the fly by a map-style Dataset, augmented per sample by
// seeded transforms, gathered by two worker threads, classified by a small CNN.
//
// Shows docs/data.md end to end: Dataset (size + get), a torchfit::subset split, LoaderOptions
// with workers and transforms, named fields ("image", "label"), and a CNN with
// CrossEntropyLoss on class indices, and the per-class report of a confusion matrix metric.
// Exits 1 if val_accuracy stays below 0.9.
#include <torchfit/torchfit.hpp>

#include <iostream>

namespace tf = torchfit;

// 16x16 grey images: a bright bar, horizontal (class 0) or vertical (class 1), somewhere in the
// image, with noise. Sample i is always the same image (drawn from a generator seeded by i), so
// the dataset needs no memory and any worker can make any sample.
struct Bars : tf::Dataset {
  int64_t n;
  explicit Bars(int64_t n) : n(n) {}
  int64_t size() const override { return n; }
  tf::Sample get(int64_t i) const override {
    auto gen = tf::compat::make_generator(static_cast<uint64_t>(i) + 1);
    const int64_t label = i % 2;
    auto image = 0.3 * torch::randn({1, 16, 16}, gen);
    const int64_t at = torch::randint(2, 14, {1}, gen).item<int64_t>();
    if (label == 0) image.select(1, at) += 1.0; else image.select(2, at) += 1.0;
    tf::Sample s;
    s.add_input("image", image);
    s.add_target("label", torch::tensor(label));
    return s;
  }
  std::string name() const override { return "bars"; }
};

struct CnnImpl : torch::nn::Module {
  CnnImpl()
      : conv(register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).padding(1)))),
        fc(register_module("fc", torch::nn::Linear(8 * 4 * 4, 2))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::max_pool2d(torch::relu(conv(x)), 4);
    return fc(h.flatten(1));
  }
  torch::nn::Conv2d conv;
  torch::nn::Linear fc;
};
TORCH_MODULE(Cnn);

int main(int argc, char** argv) {
  const int64_t epochs = argc > 1 ? std::stoll(argv[1]) : 3;
  tf::tune_host_allocator();
  tf::seed_everything(1);

  std::shared_ptr<const tf::Dataset> all = std::make_shared<Bars>(1200);
  auto parts = tf::random_split(all, std::vector<double>{0.8, 0.2}, 7);

  // Training: a random flip (a vertical bar stays vertical) and small shifts, seeded by
  // (seed, epoch, sample): the same run for any number of workers, and again on a resume.
  const auto normalize = tf::transforms::normalize({0.0}, {0.5}, "image");
  tf::DataLoader train(parts[0], tf::LoaderOptions(32).shuffle(true).seed(3).workers(2).transforms(
                                     {tf::transforms::random_horizontal_flip(0.5, "image"),
                                      tf::transforms::random_crop(1, "image"), normalize}));
  tf::DataLoader val(parts[1], tf::LoaderOptions(100).workers(2).transforms({normalize}));

  tf::Registry plugins(tf::Registry::search_path());
  Cnn net;
  tf::Trainer model(net, torch::nn::CrossEntropyLoss(), plugins.make_metrics({"accuracy", "confusion_matrix"}),
                    std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.01)));
  const auto history = model.fit(train, val, tf::FitOptions().epochs(epochs));
  std::cout << history.tail() << "stopped: " << history.stop_reason() << "\n";

  // A batch is named fields; predict gives the logits of every sample in order.
  const auto first = val.epoch(0).batch(0);
  std::cout << "a batch: " << first.describe() << "\n";
  const auto classes = model.predict(val).argmax(1);
  std::cout << "predicted classes of the first 8 validation images:";
  for (int64_t i = 0; i < 8; ++i) std::cout << " " << classes[i].item<int64_t>();
  std::cout << "\n";

  // The confusion matrix of the last validation pass, and the per-class table from it: what
  // `torchfit evaluate` prints for a classifier.
  const auto confusion = tf::find_confusion(model.metrics());
  std::cout << "\n" << tf::ClassReport(confusion->confusion_matrix(), {"horizontal", "vertical"}).to_string();
  return history[history.size() - 1].at("val_accuracy") >= 0.9 ? 0 : 1;
}
