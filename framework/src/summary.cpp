// The layer table of summary().
#include "torchfit/summary.hpp"

#include <cstdio>
#include <sstream>

#include "torchfit/errors.hpp"
#include "torchfit/loss.hpp"

namespace torchfit {

namespace {

constexpr double kMB = 1024.0 * 1024.0;

std::string short_name(const torch::nn::Module& m) {
  std::string name = m.name();
  if (auto pos = name.rfind("::"); pos != std::string::npos) {
    name = name.substr(pos + 2);
  }
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Impl") == 0) {
    name.resize(name.size() - 4);
  }
  return name;
}

int64_t own_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters(/*recurse=*/false)) {
    n += p.numel();
  }
  return n;
}

std::string batchless_shape(const torch::Tensor& t) {
  std::string out = "[";
  for (int64_t d = 0; d < t.dim(); ++d) {
    out += (d ? ", " : "") + (d == 0 ? std::string("-1") : std::to_string(t.size(d)));
  }
  return out + "]";
}

struct Walker {
  Summary& s;
  int counter = 0;
  int64_t output_values = 0;  // per sample, over every row with a known shape
  bool all_known = true;

  void add(const torch::nn::Module& m, const torch::Tensor* out) {
    SummaryRow row{short_name(m) + "-" + std::to_string(++counter), "?", own_params(m)};
    if (out) {
      row.output_shape = batchless_shape(*out);
      output_values += out->dim() > 0 && out->size(0) > 0 ? out->numel() / out->size(0) : out->numel();
    } else {
      all_known = false;
    }
    s.rows.push_back(std::move(row));
  }

  // Lists the leaves of a module whose forward() we cannot follow: their shapes are unknown.
  void unknown(const torch::nn::Module& m) {
    if (m.children().empty()) {
      add(m, nullptr);
      return;
    }
    if (own_params(m) > 0) {
      add(m, nullptr);
    }
    for (const auto& child : m.children()) {
      unknown(*child);
    }
  }

  // Follows a Sequential child by child, so every shape is the real one.
  torch::Tensor sequential(torch::nn::SequentialImpl& seq, torch::Tensor x) {
    for (size_t i = 0; i < seq.size(); ++i) {
      auto child = seq.ptr(i);
      if (auto* inner = dynamic_cast<torch::nn::SequentialImpl*>(child.get())) {
        x = sequential(*inner, x);
        continue;
      }
      x = (seq.begin() + static_cast<std::ptrdiff_t>(i))->forward<torch::Tensor>(x);
      if (child->children().empty()) {
        add(*child, &x);
      } else {
        unknown(*child);
      }
    }
    return x;
  }
};

}  // namespace

Summary summary(const Net& net, const torch::Tensor& example_input) {
  if (!example_input.defined() || example_input.dim() < 1) {
    throw DataError("summary needs an example input with a batch dimension first, e.g. shape [1, 2]");
  }
  return summary(net, Batch(example_input, torch::Tensor()));
}

Summary summary(const Net& net, const Batch& example) {
  const auto inputs = example.inputs();
  if (inputs.empty()) throw DataError("summary needs an example batch with inputs; got " + example.describe());
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].defined() || inputs[k].dim() < 1) {
      throw DataError("summary needs example inputs with a batch dimension first, e.g. shape [1, 2]; input " +
                      example.names(Role::Input)[k] + " has none");
    }
  }
  Summary s;
  Walker walker{s};
  const bool was_training = net.module().is_training();
  net.eval();
  torch::NoGradGuard no_grad;
  Batch batch = example;
  try {
    auto& module = net.module();
    if (!net.parameters().empty()) batch = batch.to(net.parameters().front().device());
    if (auto* seq = dynamic_cast<torch::nn::SequentialImpl*>(&module); seq && inputs.size() == 1) {
      walker.sequential(*seq, batch.input());
    } else if (module.children().empty()) {
      auto out = net.forward(batch);
      if (out.count() == 1) {
        walker.add(module, &out[0]);
      } else {
        walker.add(module, nullptr);
      }
    } else {
      net.forward(batch);  // proves the inputs fit; the inner shapes stay unknown
      walker.unknown(module);
    }
  } catch (const c10::Error& e) {
    net.train(was_training);
    throw DataError("summary: the net cannot take " + example.describe() + ": " + e.what_without_backtrace());
  } catch (...) {
    net.train(was_training);
    throw;
  }
  net.train(was_training);

  double param_bytes = 0;
  for (const auto& p : net.parameters()) {
    s.total_params += p.numel();
    (p.requires_grad() ? s.trainable_params : s.non_trainable_params) += p.numel();
    param_bytes += static_cast<double>(p.numel()) * static_cast<double>(p.element_size());
  }
  for (const auto& x : inputs) {
    const int64_t per_sample = x.size(0) > 0 ? x.numel() / x.size(0) : 0;
    s.input_mb += static_cast<double>(per_sample) * static_cast<double>(x.element_size()) / kMB;
  }
  s.forward_backward_mb = walker.all_known ? 2.0 * static_cast<double>(walker.output_values) * 4.0 / kMB : -1.0;
  s.params_mb = param_bytes / kMB;
  return s;
}

std::string Summary::to_string() const {
  const std::string rule(74, '-');
  const std::string double_rule(74, '=');
  std::ostringstream out;
  char line[256];
  out << rule << '\n';
  std::snprintf(line, sizeof line, "%-30s%30s%14s", "Layer (type)", "Output Shape", "Param #");
  out << line << '\n' << double_rule << '\n';
  for (const auto& row : rows) {
    std::snprintf(line, sizeof line, "%-30s%30s%14lld", row.layer.c_str(), row.output_shape.c_str(),
                  static_cast<long long>(row.params));
    out << line << '\n';
  }
  out << double_rule << '\n';
  out << "Total params: " << total_params << '\n';
  out << "Trainable params: " << trainable_params << '\n';
  out << "Non-trainable params: " << non_trainable_params << '\n';
  out << rule << '\n';
  auto mb = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6f", v);
    return std::string(buf);
  };
  out << "Input size (MB): " << mb(input_mb) << '\n';
  out << "Forward/backward pass size (MB): " << (forward_backward_mb < 0 ? "?" : mb(forward_backward_mb)) << '\n';
  out << "Params size (MB): " << mb(params_mb) << '\n';
  out << "Estimated Total Size (MB): "
      << (forward_backward_mb < 0 ? "? (at least " + mb(input_mb + params_mb) + ")"
                                  : mb(input_mb + forward_backward_mb + params_mb))
      << '\n';
  out << rule << '\n';
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Summary& s) { return out << s.to_string(); }

}  // namespace torchfit
