// A configurable multi-layer perceptron for the user's own CSV data: binary, multi-class or
// regression, with optional standardization whose statistics live in the checkpoint.
#include <torchfit/logs.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>
#include <torchfit/task.hpp>
#include <torchfit/text.hpp>

#include <algorithm>
#include <limits>
#include <sstream>

namespace {

namespace po = boost::program_options;
using torch::Tensor;

using torchfit::Task;

// (x - mean) / std with the training split's statistics, kept as buffers: they are saved with
// the weights, so evaluate and predict standardize exactly as training did.
struct StandardizeImpl : torch::nn::Module {
  explicit StandardizeImpl(int64_t features)
      : mean(register_buffer("mean", torch::zeros({features}))), std(register_buffer("std", torch::ones({features}))) {}
  Tensor forward(const Tensor& x) { return (x - mean) / std; }
  void pretty_print(std::ostream& out) const override { out << "Standardize(features=" << mean.size(0) << ")"; }
  Tensor mean, std;
};
TORCH_MODULE(Standardize);

class Mlp final : public torchfit::ModelPlugin {
 public:
  Mlp(Task task, std::vector<int64_t> hidden, double dropout, std::string activation, bool standardize, int64_t inputs,
      int64_t classes)
      : task_(task),
        hidden_(std::move(hidden)),
        dropout_(dropout),
        activation_(std::move(activation)),
        standardize_(standardize),
        inputs_(inputs),
        classes_(classes) {}

  torchfit::Net make_net() const override {
    if (inputs_ == 0) {
      throw torchfit::ConfigError(
          "the mlp model learns its input width from the data: train it with --data FILE.csv --target COLUMN "
          "(evaluate and predict read the width from the checkpoint's .ini file, or give --mlp.inputs N)");
    }
    if (task_ == Task::Multiclass && classes_ < 2) {
      throw torchfit::ConfigError("the mlp model learns its classes from the data: train it with --data, or give "
                                  "--mlp.classes N (at least 2)");
    }
    torch::nn::Sequential net;
    if (standardize_) {
      Standardize s(inputs_);
      if (mean_.defined()) {
        s->mean.copy_(mean_);
        s->std.copy_(std_);
      }
      net->push_back("standardize", s);
    }
    int64_t width = inputs_;
    for (size_t i = 0; i < hidden_.size(); ++i) {
      net->push_back("linear" + std::to_string(i), torch::nn::Linear(width, hidden_[i]));
      if (activation_ == "relu") net->push_back(torch::nn::ReLU());
      if (activation_ == "tanh") net->push_back(torch::nn::Tanh());
      if (activation_ == "gelu") net->push_back(torch::nn::GELU());
      if (dropout_ > 0) net->push_back(torch::nn::Dropout(dropout_));
      width = hidden_[i];
    }
    net->push_back("output", torch::nn::Linear(width, task_ == Task::Multiclass ? classes_ : 1));
    return net;
  }

  torchfit::Loss make_loss() const override { return torchfit::task_loss(task_); }
  std::vector<std::string> default_metrics() const override { return torchfit::task_metrics(task_); }
  torchfit::OptimizerDefaults default_optimizer() const override { return {"adam", 1e-3}; }
  int64_t default_batch_size() const override { return 64; }
  int64_t input_features() const override { return inputs_; }

  torchfit::DataSplits make_data(uint64_t) const override {
    throw torchfit::ConfigError(
        "the mlp model has no data of its own: give --data FILE.csv --target COLUMN (and --val-data FILE.csv "
        "or --val-split F); see docs/data.md");
  }

  Tensor make_targets(const Tensor& column, const std::string& origin) override {
    // Until adapt(), a class count already set (evaluate, predict, --mlp.classes) is the net's.
    return torchfit::task_targets(task_, column, origin, adapted_ ? 0 : classes_, labels_seen_);
  }

  void adapt(const torchfit::Dataset& train) override {
    // Rows of numbers: the whole training split, to learn its width and statistics from.
    const auto all = train.get_batch(torch::arange(train.size(), torch::kLong));
    const auto& features = all.input();
    if (features.dim() != 2) {
      throw torchfit::DataError("the mlp model takes rows of numbers, but the input '" + all.names(torchfit::Role::Input)[0] +
                                "' of " + train.name() + " is " + torchfit::shape_string(features.sizes()) +
                                " (samples first); for images use the cnn model");
    }
    const auto width = features.size(1);
    if (inputs_ > 0 && inputs_ != width) {
      throw torchfit::DataError("mlp.inputs is " + std::to_string(inputs_) + " but the training data has " +
                                std::to_string(width) + " feature columns");
    }
    inputs_ = width;
    if (task_ == Task::Multiclass) {
      if (classes_ == 0) classes_ = labels_seen_;
      if (classes_ < 2) {
        throw torchfit::DataError("a multiclass task needs at least two classes; the data has only class 0 "
                                  "(use --task binary or regression?)");
      }
    }
    if (standardize_) {
      const auto x = features.to(torch::kDouble);
      mean_ = x.mean(0).to(torch::kFloat);
      // Population std, like scikit-learn's StandardScaler; constant columns are left as they are.
      auto s = x.std(0, /*unbiased=*/false).to(torch::kFloat);
      std_ = torch::where(s > 0, s, torch::ones_like(s));
    }
    adapted_ = true;
  }

  std::vector<std::pair<std::string, std::string>> learned_options() const override {
    std::vector<std::pair<std::string, std::string>> learned{{"inputs", std::to_string(inputs_)}};
    if (task_ == Task::Multiclass) learned.emplace_back("classes", std::to_string(classes_));
    return learned;
  }

  torchfit::Predictions to_predictions(const Tensor& outputs) const override {
    return torchfit::task_predictions(task_, outputs);
  }

 private:
  Task task_;
  std::vector<int64_t> hidden_;
  double dropout_;
  std::string activation_;
  bool standardize_;
  int64_t inputs_;
  int64_t classes_;
  int64_t labels_seen_ = 0;
  bool adapted_ = false;
  Tensor mean_, std_;
};

std::vector<int64_t> parse_hidden(const std::string& text) {
  const auto sizes = torchfit::parse_int_list(text, 1, std::numeric_limits<int64_t>::max());
  if (!sizes) throw torchfit::ConfigError("--hidden takes layer widths like 64,32 (positive integers), got '" + text + "'");
  return *sizes;  // empty: no hidden layer, a linear (or logistic) model
}

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Model, "mlp", "1.0.0",
                            "multi-layer perceptron for your CSV data (--data, --target, --task)");
  info.options->add_options()  //
      ("task", po::value<std::string>()->value_name("TASK"),
       "binary (BCE with logits; acc, auc), multiclass (cross-entropy; accuracy) or regression (MSE; mae, r2)")  //
      ("hidden", po::value<std::string>()->value_name("LIST")->default_value("64,32"),
       "hidden layer widths, comma-separated; 'none' or '' for a linear model")  //
      ("activation", po::value<std::string>()->default_value("relu"), "relu, tanh or gelu")  //
      ("dropout", torchfit::number<double>(torchfit::NumberRange::between(0, 1, false, true))->default_value(0.0, "0"), "dropout after each hidden layer (0: none)")  //
      ("standardize", po::value<bool>()->default_value(false)->implicit_value(true),
       "standardize each feature with the training split's mean and std (kept in the checkpoint)")  //
      ("inputs", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: from the data)"))->default_value(0), "input width (0: from the data; recorded by train)")  //
      ("classes", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: from the data)"))->default_value(0),
       "classes of a multiclass task (0: largest label + 1 in the data; recorded by train)");
  return info;
}

std::shared_ptr<torchfit::ModelPlugin> create(const torchfit::PluginOptions& options) {
  const auto task = torchfit::parse_task(options.count("task") ? options["task"].as<std::string>() : "", "mlp");
  const auto hidden_text = options["hidden"].as<std::string>();
  const auto hidden = hidden_text == "none" ? std::vector<int64_t>{} : parse_hidden(hidden_text);
  const auto dropout = options["dropout"].as<double>();
  const auto activation = options["activation"].as<std::string>();
  if (activation != "relu" && activation != "tanh" && activation != "gelu") {
    throw torchfit::ConfigError("--activation must be relu, tanh or gelu, got '" + activation + "'");
  }
  const auto inputs = options["inputs"].as<int64_t>();
  const auto classes = options["classes"].as<int64_t>();
  if (classes == 1) {
    throw torchfit::ConfigError("--mlp.classes must be 0 (from the data) or at least 2, got " + std::to_string(classes));
  }
  return std::make_shared<Mlp>(task, hidden, dropout, activation, options["standardize"].as<bool>(), inputs, classes);
}

}  // namespace

TORCHFIT_MODEL_PLUGIN(describe, create)
