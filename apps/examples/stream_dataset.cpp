// Streams: data that is never all in memory. Training points are generated on the fly (new
// ones every epoch, the count unknown to the loader); the validation set is a text file read
// line by line. A small DNN learns the two noisy rings from them.
//
// Shows docs/data.md's "Streams": generated_stream (samples from (epoch, index)), a
// StreamDataset of your own (open(epoch, start) and a Reader), skip() for a reader that cannot
// seek, workers over a stream, predict over a stream. Exits 1 if val_acc stays below 0.9.
#include <torchfit/torchfit.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace tf = torchfit;

// A point of ring 0 (radius 5, label 1) or ring 1 (radius 8, label 0), noise 1, from `rng`.
tf::Sample ring_point(tf::Rng& rng, int64_t ring) {
  const double r = (ring == 0 ? 5.0 : 8.0) + torch::randn({1}, rng.generator()).item<double>();
  const double theta = 2 * M_PI * rng.uniform();
  tf::Sample s;
  s.add_input("x", torch::tensor({static_cast<float>(r * std::cos(theta)), static_cast<float>(r * std::sin(theta))}));
  s.add_target("y", torch::tensor({ring == 0 ? 1.0f : 0.0f}));
  return s;
}

// "x1,x2,label" per line. The reader holds one open file; it cannot jump to a line, so open()
// skips to `start` (a resume), which is exact: the file reads the same every time.
class LineFile : public tf::StreamDataset {
 public:
  explicit LineFile(std::filesystem::path path) : path_(std::move(path)) {}
  std::unique_ptr<Reader> open(uint64_t /*epoch*/, int64_t start) const override {
    auto reader = std::make_unique<FileReader>(path_);
    tf::skip(*reader, start);
    return reader;
  }
  std::string name() const override { return "file " + path_.string(); }

 private:
  struct FileReader : Reader {
    explicit FileReader(const std::filesystem::path& path) : in(path) {
      if (!in) throw std::runtime_error("cannot open " + path.string());
    }
    std::optional<tf::Sample> next() override {
      std::string line;
      if (!std::getline(in, line)) return std::nullopt;
      float x1, x2, label;
      char c1, c2;
      std::istringstream fields(line);
      if (!(fields >> x1 >> c1 >> x2 >> c2 >> label)) throw std::runtime_error("not x1,x2,label: '" + line + "'");
      tf::Sample s;
      s.add_input("x", torch::tensor({x1, x2}));
      s.add_target("y", torch::tensor({label}));
      return s;
    }
    std::ifstream in;
  };
  std::filesystem::path path_;
};

struct DnnImpl : torch::nn::Module {
  DnnImpl()
      : fc1(register_module("fc1", torch::nn::Linear(2, 16))), fc2(register_module("fc2", torch::nn::Linear(16, 1))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Dnn);

int main(int argc, char** argv) {
  const int64_t epochs = argc > 1 ? std::stoll(argv[1]) : 10;
  tf::tune_host_allocator();
  tf::seed_everything(1);

  // 2,000 new points every epoch, made from (epoch, index) alone: the stream seeks at once and
  // a resumed run gets the same points. Returning nothing ends the epoch.
  auto on_the_fly = tf::generated_stream(
      [](uint64_t epoch, int64_t i) -> std::optional<tf::Sample> {
        if (i >= 2000) return std::nullopt;
        tf::Rng rng(tf::Rng::seed_for(42, epoch, static_cast<uint64_t>(i)));
        return ring_point(rng, i % 2);
      },
      "rings on the fly");

  // The validation file, written once (it could be any size: only one line is in memory).
  const auto file = std::filesystem::temp_directory_path() / "torchfit_stream_example_val.csv";
  {
    std::ofstream out(file);
    tf::Rng rng(7);
    for (int64_t i = 0; i < 600; ++i) {
      const auto s = ring_point(rng, i % 2);
      out << s["x"][0].item<float>() << "," << s["x"][1].item<float>() << "," << s["y"][0].item<float>() << "\n";
    }
  }

  tf::DataLoader train(on_the_fly, tf::LoaderOptions(50).workers(2));  // read in order: no shuffle
  tf::DataLoader val(std::make_shared<LineFile>(file), 100);
  std::cout << "batches per epoch: " << train.num_batches() << " (-1: unknown until the stream ends)\n";

  tf::Registry plugins(tf::Registry::search_path());
  Dnn net;
  tf::Trainer model(net, torch::nn::BCEWithLogitsLoss(), plugins.make_metrics({"acc"}),
                    std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.01)));
  const auto history = model.fit(train, val, tf::FitOptions().epochs(epochs));
  std::cout << history.tail() << "stopped: " << history.stop_reason() << "\n";

  const auto logits = model.predict(val);
  std::cout << "predicted " << logits.size(0) << " validation points from the file\n";
  std::filesystem::remove(file);
  return logits.size(0) == 600 && history[history.size() - 1].at("val_acc") >= 0.9 ? 0 : 1;
}
