// torchscript: trains a module written in Python and saved with torch.jit.script(net).save(f)
// (or torch.jit.trace). Its parameters and buffers become the net's, under the same names, so
// every callback, metric, dataset, checkpoint, --resume and --nproc works as for a C++ net, and
// `torchfit export --format torchscript` saves the trained module for Python's torch.jit.load.
#include <torch/script.h>

#include <torchfit/errors.hpp>
#include <torchfit/io.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>
#include <torchfit/task.hpp>

#include <filesystem>
#include <sstream>

namespace {

namespace po = boost::program_options;
using torch::Tensor;

// A plain module that holds what it is given: one level of the mirrored tree, named by the
// scripted submodule's class (Linear, Conv2d, ...) for summary's table.
struct Level : torch::nn::Module {
  explicit Level(std::string name) : torch::nn::Module(std::move(name)) {}
};

std::string class_name(const torch::jit::Module& m) {
  const auto qualified = m.type()->name();
  if (!qualified) return "Module";
  const auto& name = qualified->name();  // the last part of __torch__.torch.nn.modules.linear.Linear
  return name.empty() ? "Module" : name;
}

// The scripted module's parameters and buffers, registered by name in a tree of modules that
// mirrors its submodules: the optimizer, checkpoints, the training state and summary see a net
// like any other, and the TorchScript module computes with the very same tensors (moving the
// net to a device or type moves them in place, for both).
struct ScriptNetImpl : torch::nn::Module {
  explicit ScriptNetImpl(torch::jit::Module m, std::string file) : script(std::move(m)), file_(std::move(file)) {
    mirror(*this, script);
    const auto& schema = script.get_method("forward").function().getSchema();
    for (size_t i = 1; i < schema.arguments().size(); ++i) inputs_.push_back(schema.arguments()[i].name());
  }

  static void mirror(torch::nn::Module& into, torch::jit::Module from) {
    for (const auto& p : from.named_parameters(/*recurse=*/false)) {
      // A leaf of its own (an optimizer takes no other), set back into the module.
      auto leaf = p.value.detach();
      leaf.set_requires_grad(p.value.requires_grad());
      from.register_parameter(p.name, leaf, /*is_buffer=*/false);
      into.register_parameter(p.name, leaf, leaf.requires_grad());
    }
    for (const auto& b : from.named_buffers(/*recurse=*/false)) into.register_buffer(b.name, b.value);
    for (const auto& child : from.named_children()) {
      auto level = std::make_shared<Level>(class_name(child.value));
      mirror(*level, child.value);
      into.register_module(child.name, level);
    }
  }

  torchfit::Outputs forward(const torchfit::Batch& batch) {
    const auto given = batch.count(torchfit::Role::Input);
    if (given != inputs_.size()) {
      std::string names;
      for (const auto& n : inputs_) names += (names.empty() ? "" : ", ") + n;
      throw torchfit::DataError("the TorchScript module in '" + file_ + "' takes " + std::to_string(inputs_.size()) +
                                " input" + (inputs_.size() == 1 ? "" : "s") + " (forward(" + names + ")), but the data's " +
                                "batches have " + std::to_string(given) + " (" + batch.describe() + ")");
    }
    std::vector<c10::IValue> in;
    for (size_t i = 0; i < given; ++i) in.emplace_back(batch.input(i));
    const auto out = script.forward(in);
    std::vector<Tensor> tensors;
    if (out.isTensor()) return torchfit::detail::to_outputs(out.toTensor(), {});
    if (out.isTuple()) {
      for (const auto& e : out.toTupleRef().elements()) tensors.push_back(tensor_of(e));
    } else if (out.isTensorList()) {
      tensors = out.toTensorVector();
    } else if (out.isGenericDict()) {
      torchfit::Outputs named;
      for (const auto& kv : out.toGenericDict()) {
        if (!kv.key().isString()) throw torchfit::DataError("the module's forward returns a dict whose keys are not strings");
        named.add(kv.key().toStringRef(), tensor_of(kv.value()), torchfit::Role::Output);
      }
      return named;
    } else {
      throw torchfit::DataError("the module's forward returns " + out.tagKind() +
                                "; torchfit takes a Tensor, a tuple or list of Tensors, or a dict of names to Tensors");
    }
    return torchfit::detail::to_outputs(tensors, {});
  }

  void train(bool on = true) override {
    torch::nn::Module::train(on);
    script.train(on);  // dropout, batch norm: the interpreter reads the module's own flag
  }

  torch::jit::Module script;

 private:
  static Tensor tensor_of(const c10::IValue& v) {
    if (!v.isTensor()) throw torchfit::DataError("the module's forward returns a " + v.tagKind() + " among its outputs");
    return v.toTensor();
  }
  std::string file_;
  std::vector<std::string> inputs_;
};

// A loss by name: the --torchscript.loss option, or the module's `loss` string attribute.
torchfit::Loss named_loss(const std::string& name) {
  if (name == "bce_logits") return torch::nn::BCEWithLogitsLoss();
  if (name == "cross_entropy") return torch::nn::CrossEntropyLoss();
  if (name == "mse") return torch::nn::MSELoss();
  if (name == "l1") return torch::nn::L1Loss();
  if (name == "smooth_l1") return torch::nn::SmoothL1Loss();
  if (name == "huber") return torch::nn::HuberLoss();
  if (name == "nll") return torch::nn::NLLLoss();
  throw torchfit::ConfigError("unknown loss '" + name +
                              "' for the torchscript model; losses: bce_logits, cross_entropy, mse, l1, smooth_l1, huber, nll");
}

class TorchScriptModel final : public torchfit::ModelPlugin {
 public:
  TorchScriptModel(std::string file, std::string task, std::string loss, int64_t inputs)
      : file_(std::move(file)), inputs_(inputs) {
    if (file_.empty()) {
      throw torchfit::ConfigError("the torchscript model needs --torchscript.file FILE.pt: a module saved by "
                                  "torch.jit.script(net).save(FILE.pt) or torch.jit.trace(net, example).save(FILE.pt)");
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file_, ec)) {
      throw torchfit::CheckpointError("TorchScript module '" + file_ + "' (--torchscript.file) " +
                                      (std::filesystem::exists(file_, ec) ? "is not a file" : "does not exist"));
    }
    try {
      script_ = torch::jit::load(file_, torch::kCPU);
    } catch (const c10::Error& e) {
      std::string why = e.what_without_backtrace();
      if (const auto nl = why.find('\n'); nl != std::string::npos) why = why.substr(0, nl);
      throw torchfit::CheckpointError("'" + file_ + "' is not a TorchScript module torchfit can load (save one with "
                                      "torch.jit.script(net).save(f)): " + why);
    }
    if (!script_.find_method("forward")) throw torchfit::CheckpointError("the TorchScript module in '" + file_ + "' has no forward");
    // The task and the loss: the options, else the module's own string attributes.
    auto attribute = [&](const char* name) -> std::string {
      if (script_.hasattr(name) && script_.attr(name).isString()) return script_.attr(name).toStringRef();
      return "";
    };
    if (task.empty()) task = attribute("task");
    if (task.empty()) {
      throw torchfit::ConfigError("the torchscript model needs its task: --torchscript.task binary, multiclass or "
                                  "regression, or a string attribute `task` in the module ('" + file_ + "' has none)");
    }
    task_ = torchfit::parse_task(task, "torchscript");
    loss_ = loss.empty() ? attribute("loss") : loss;
    if (!loss_.empty() && loss_ != "method") named_loss(loss_);  // refused now, not at the first batch
  }

  torchfit::Net make_net() const override {
    // Loaded again: each net its own module and tensors, as saved.
    return std::make_shared<ScriptNetImpl>(torch::jit::load(file_, torch::kCPU), file_);
  }

  torchfit::Loss make_loss() const override {
    if (loss_.empty() && script_.find_method("loss")) {
      // The module's own loss(outputs, targets) method.
      auto module = script_;
      return torchfit::Loss(
          [module](const Tensor& p, const Tensor& t) mutable { return module.run_method("loss", p, t).toTensor(); },
          "loss", torchfit::TargetShape::Any);
    }
    return loss_.empty() ? torchfit::task_loss(task_) : named_loss(loss_);
  }
  std::vector<std::string> default_metrics() const override { return torchfit::task_metrics(task_); }
  torchfit::OptimizerDefaults default_optimizer() const override { return {"adam", 1e-3}; }
  int64_t default_batch_size() const override { return 64; }
  int64_t input_features() const override { return inputs_; }

  torchfit::DataSplits make_data(uint64_t) const override {
    throw torchfit::ConfigError("the torchscript model has no data of its own: give --dataset NAME or --data "
                                "FILE.csv --target COLUMN");
  }

  Tensor make_targets(const Tensor& column, const std::string& origin) override {
    int64_t seen = 0;
    return torchfit::task_targets(task_, column, origin, 0, seen);
  }

  // Rows of numbers: their width is what predict reads from a CSV file. Any other input (images)
  // goes to the module as it is.
  void adapt(const torchfit::Dataset& train) override {
    const auto sample = train.get_batch(torch::arange(std::min<int64_t>(train.size(), 1), torch::kLong));
    if (sample.count(torchfit::Role::Input) == 1 && sample.input().dim() == 2) inputs_ = sample.input().size(1);
  }
  std::vector<std::pair<std::string, std::string>> learned_options() const override {
    if (inputs_ > 0) return {{"inputs", std::to_string(inputs_)}};
    return {};
  }

  torchfit::Predictions to_predictions(const Tensor& outputs) const override {
    return torchfit::task_predictions(task_, outputs);
  }

  void save_torchscript(const torchfit::Net& net, const std::filesystem::path& path) const override {
    const auto* script_net = dynamic_cast<const ScriptNetImpl*>(&net.module());
    if (!script_net) throw torchfit::ConfigError("this net was not made by the torchscript model");
    std::ostringstream out;
    script_net->script.save(out);
    torchfit::atomic_write_bytes(path, out.str(), "TorchScript module");
  }

 private:
  std::string file_;
  int64_t inputs_;
  torch::jit::Module script_;
  torchfit::Task task_ = torchfit::Task::Regression;
  std::string loss_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Model, "torchscript", "1.0.0",
                            "Trains a module written in Python and saved with torch.jit.script or trace (--torchscript.file)");
  info.options->add_options()                                                                                   //
      ("file", po::value<std::string>()->value_name("FILE.pt"),
       "the TorchScript module: torch.jit.script(net).save(FILE.pt) in Python")  //
      ("task", po::value<std::string>()->value_name("TASK"),
       "binary, multiclass or regression: the loss, metrics and predictions (default: the module's `task` attribute)")  //
      ("loss", po::value<std::string>()->value_name("NAME"),
       "bce_logits, cross_entropy, mse, l1, smooth_l1, huber or nll (default: the module's `loss` attribute or "
       "loss(outputs, targets) method, else the task's)")  //
      ("inputs", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: from the data)"))->value_name("N")->default_value(0),
       "features per row for CSV data (0: from the data; recorded by train)");
  return info;
}

std::shared_ptr<torchfit::ModelPlugin> create(const torchfit::PluginOptions& o) {
  auto text = [&](const char* name) { return o.count(name) ? o[name].as<std::string>() : std::string(); };
  return std::make_shared<TorchScriptModel>(text("file"), text("task"), text("loss"), o["inputs"].as<int64_t>());
}

}  // namespace

TORCHFIT_MODEL_PLUGIN(describe, create)
