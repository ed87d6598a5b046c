// A convolutional image classifier: blocks of 3x3 convolution, batch norm, ReLU and 2x2 max
// pooling, then a hidden layer and the class scores. The image shape and the classes come from
// the dataset (--dataset fashion_mnist, idx, ...).
#include <torchfit/logs.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>
#include <torchfit/text.hpp>

#include <sstream>

namespace {

namespace po = boost::program_options;
namespace nn = torch::nn;
using torch::Tensor;

std::vector<int64_t> parse_widths(const std::string& text) {
  const auto widths = torchfit::parse_int_list(text, 1, 4096);
  if (!widths) {
    throw torchfit::ConfigError("--cnn.widths takes channel counts from 1 to 4096 separated by commas (e.g. 32,64), got '" +
                                text + "'");
  }
  if (widths->empty()) throw torchfit::ConfigError("--cnn.widths needs at least one convolution block (e.g. 32,64)");
  return *widths;
}

class Cnn final : public torchfit::ModelPlugin {
 public:
  explicit Cnn(const torchfit::PluginOptions& o)
      : widths_(parse_widths(o["widths"].as<std::string>())),
        hidden_(o["hidden"].as<int64_t>()),
        dropout_(o["dropout"].as<double>()),
        batch_norm_(o["batch-norm"].as<bool>()),
        channels_(o["channels"].as<int64_t>()),
        height_(o["height"].as<int64_t>()),
        width_(o["width"].as<int64_t>()),
        classes_(o["classes"].as<int64_t>()) {
  }

  torchfit::Net make_net() const override {
    if (channels_ == 0 || height_ == 0 || width_ == 0 || classes_ == 0) {
      throw torchfit::ConfigError(
          "the cnn model learns the image shape and the classes from the data: train it with --dataset (e.g. "
          "--dataset fashion_mnist); evaluate and predict read them from the checkpoint's .ini file, or give "
          "--cnn.channels, --cnn.height, --cnn.width and --cnn.classes");
    }
    nn::Sequential net;
    int64_t c = channels_, h = height_, w = width_;
    for (size_t i = 0; i < widths_.size(); ++i) {
      const auto n = std::to_string(i + 1);
      net->push_back("conv" + n, nn::Conv2d(nn::Conv2dOptions(c, widths_[i], 3).padding(1).bias(!batch_norm_)));
      if (batch_norm_) net->push_back("bn" + n, nn::BatchNorm2d(widths_[i]));
      net->push_back("relu" + n, nn::ReLU());
      net->push_back("pool" + n, nn::MaxPool2d(2));
      c = widths_[i];
      h /= 2;
      w /= 2;
    }
    net->push_back("flatten", nn::Flatten());
    int64_t features = c * h * w;
    if (hidden_ > 0) {
      if (dropout_ > 0) net->push_back("dropout1", nn::Dropout(dropout_));
      net->push_back("hidden", nn::Linear(features, hidden_));
      net->push_back("relu_hidden", nn::ReLU());
      features = hidden_;
    }
    if (dropout_ > 0) net->push_back("dropout", nn::Dropout(dropout_));
    net->push_back("output", nn::Linear(features, classes_));
    return net;
  }

  torchfit::Loss make_loss() const override { return nn::CrossEntropyLoss(); }
  std::vector<std::string> default_metrics() const override { return {"accuracy"}; }
  torchfit::OptimizerDefaults default_optimizer() const override { return {"adamw", 2e-3}; }
  int64_t default_batch_size() const override { return 256; }
  int64_t input_features() const override { return channels_ * height_ * width_; }

  torchfit::DataSplits make_data(uint64_t) const override {
    throw torchfit::ConfigError(
        "the cnn model has no data of its own: give --dataset fashion_mnist (Debian's dataset-fashion-mnist), or "
        "--dataset idx --idx.images FILE --idx.labels FILE; torchfit plugins lists the datasets");
  }

  void adapt(const torchfit::Dataset& train) override {
    const auto first = train.sample(0);
    const auto& x = first.input();
    const auto input = first.names(torchfit::Role::Input)[0];
    if (x.dim() != 3) {
      throw torchfit::DataError("the cnn model takes images [channels, height, width], but a sample's input '" + input +
                                "' of " + train.name() + " is " + torchfit::shape_string(x.sizes()));
    }
    const int64_t pools = static_cast<int64_t>(widths_.size());
    auto pooled = [&](int64_t side) {
      for (int64_t i = 0; i < pools && side > 0; ++i) side /= 2;
      return side;
    };
    if (pooled(x.size(1)) < 1 || pooled(x.size(2)) < 1) {
      throw torchfit::DataError("the images of " + train.name() + " are " + std::to_string(x.size(1)) + "x" +
                                std::to_string(x.size(2)) + ", too small for the cnn's " + std::to_string(pools) +
                                " pooling blocks (each halves the size); give fewer --cnn.widths");
    }
    auto fixed = [&](const char* key, int64_t given, int64_t seen) {
      if (given > 0 && given != seen) {
        throw torchfit::DataError(std::string("--cnn.") + key + " is " + std::to_string(given) + " but the images of " +
                                  train.name() + " have " + std::to_string(seen));
      }
      return seen;
    };
    channels_ = fixed("channels", channels_, x.size(0));
    height_ = fixed("height", height_, x.size(1));
    width_ = fixed("width", width_, x.size(2));
    int64_t classes = static_cast<int64_t>(train.classes().size());
    if (classes == 0) {
      if (!first.has_targets()) {
        throw torchfit::DataError(train.name() + " has neither labels nor class names; give --cnn.classes N");
      }
      // Class indices 0..K-1: K is the largest label + 1.
      const auto all = train.get_batch(torch::arange(train.size(), torch::kLong));
      const auto& labels = all.target();
      if (labels.is_floating_point() || labels.dim() != 1) {
        throw torchfit::DataError("the cnn model takes class indices as labels, but " + train.name() + "'s are " +
                                  std::string(c10::toString(labels.scalar_type())) + " " +
                                  torchfit::shape_string(labels.sizes()));
      }
      classes = labels.max().item<int64_t>() + 1;
    }
    if (classes_ > 0 && classes > classes_) {
      throw torchfit::DataError(train.name() + " has " + std::to_string(classes) + " classes but --cnn.classes is " +
                                std::to_string(classes_));
    }
    classes_ = std::max(classes_, classes);
    if (classes_ < 2) throw torchfit::DataError(train.name() + " has a single class; a classifier needs two or more");
  }

  std::vector<std::pair<std::string, std::string>> learned_options() const override {
    return {{"channels", std::to_string(channels_)},
            {"height", std::to_string(height_)},
            {"width", std::to_string(width_)},
            {"classes", std::to_string(classes_)}};
  }

  torchfit::Predictions to_predictions(const Tensor& outputs) const override {
    const auto out = outputs.detach().to(torch::kCPU, torch::kDouble);
    torchfit::Predictions p;
    p.columns.push_back("class");
    for (int64_t c = 0; c < out.size(1); ++c) p.columns.push_back("probability_" + std::to_string(c));
    p.values = torch::cat({out.argmax(1, true).to(torch::kDouble), torch::softmax(out, 1)}, 1);
    return p;
  }

 private:
  std::vector<int64_t> widths_;
  int64_t hidden_;
  double dropout_;
  bool batch_norm_;
  int64_t channels_, height_, width_, classes_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Model, "cnn", "1.0",
                            "convolutional image classifier (conv-BN-ReLU-pool blocks); shape and classes from the dataset");
  info.options->add_options()  //
      ("widths", po::value<std::string>()->value_name("LIST")->default_value("32,64"),
       "output channels of each block (3x3 convolution, batch norm, ReLU, 2x2 max pooling)")  //
      ("hidden", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: none)"))->value_name("N")->default_value(128), "width of the hidden layer (0: none)")  //
      ("dropout", torchfit::number<double>(torchfit::NumberRange::between(0, 1, false, true))->value_name("P")->default_value(0.2, "0.2"), "dropout before the dense layers")  //
      ("batch-norm", po::value<bool>()->value_name("BOOL")->default_value(true), "batch norm after each convolution")  //
      ("channels", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: from the data)"))->value_name("N")->default_value(0), "image channels (0: from the data)")  //
      ("height", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: from the data)"))->value_name("N")->default_value(0), "image height (0: from the data)")  //
      ("width", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: from the data)"))->value_name("N")->default_value(0), "image width (0: from the data)")  //
      ("classes", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: from the data)"))->value_name("N")->default_value(0), "classes (0: from the data)");
  return info;
}

std::shared_ptr<torchfit::ModelPlugin> create(const torchfit::PluginOptions& options) {
  return std::make_shared<Cnn>(options);
}

}  // namespace

TORCHFIT_MODEL_PLUGIN(describe, create)
