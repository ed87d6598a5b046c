// progress_bar: a tqdm/Keras-style bar on a terminal, one plain line per epoch anywhere else.
#include <torchfit/errors.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld", s / 60, s % 60);
  return buf;
}

// Bar mode redraws one line in place, at most `refresh_rate` times a second, reading the
// running values (a host sync) only when it redraws. Lines mode prints nothing per batch.
class ProgressBar final : public torchfit::Callback {
 public:
  bool rank_zero_only() const override { return true; }
  ProgressBar(FILE* out, bool owned, bool bar, double refresh_rate, int width)
      : out_(out), owned_(owned), bar_(bar), min_interval_(1.0 / refresh_rate), width_(width) {}
  ~ProgressBar() override {
    if (owned_) std::fclose(out_);
  }

  void on_epoch_begin(torchfit::Context& ctx) override {
    epoch_start_ = Clock::now();
    validated_ = false;
    if (bar_) {
      std::fprintf(out_, "Epoch %lld/%lld\n", static_cast<long long>(ctx.epoch), static_cast<long long>(ctx.epochs));
      std::fflush(out_);
    }
  }
  void on_train_epoch_begin(torchfit::Context& ctx) override { start_loop(); }
  void on_train_batch_end(torchfit::Context& ctx) override { maybe_draw(ctx, "train", ""); }
  void on_train_epoch_end(torchfit::Context& ctx) override {
    if (bar_) finish_bar(ctx, "train", "train_");
  }
  void on_validation_begin(torchfit::Context& ctx) override {
    validated_ = true;
    start_loop();
  }
  void on_validation_batch_end(torchfit::Context& ctx) override { maybe_draw(ctx, "valid", "val_"); }
  void on_validation_end(torchfit::Context& ctx) override {
    if (ctx.epoch == 0) {
      return;  // evaluate(): the runner prints the result itself
    }
    if (bar_) {
      finish_bar(ctx, "valid", "val_");
    } else {
      epoch_line(ctx);
    }
  }
  void on_epoch_end(torchfit::Context& ctx) override {
    if (!bar_ && !validated_) {
      epoch_line(ctx);
    }
  }

 private:
  void start_loop() {
    loop_start_ = Clock::now();
    last_draw_ = loop_start_;
  }

  void maybe_draw(torchfit::Context& ctx, const char* label, const char* prefix) {
    if (!bar_) return;
    const auto now = Clock::now();
    const bool last = ctx.batch_index + 1 == ctx.num_batches;
    if (!last && std::chrono::duration<double>(now - last_draw_).count() < min_interval_) return;
    last_draw_ = now;
    if (!last) draw(ctx, label, prefix, ctx.running_logs(), ctx.batch_index + 1);
  }

  void finish_bar(torchfit::Context& ctx, const char* label, const char* prefix) {
    // The epoch's exact values, already in the logs, under the names the history uses.
    torchfit::Logs shown;
    for (const auto& [key, value] : ctx.logs) {
      if (key.rfind(prefix, 0) == 0) shown.set(key.substr(std::string(prefix).size()), value);
    }
    draw(ctx, label, prefix, shown, ctx.num_batches);
    std::fputc('\n', out_);
    std::fflush(out_);
  }

  void draw(const torchfit::Context& ctx, const char* label, const char* prefix, const torchfit::Logs& values,
            int64_t done) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - loop_start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    std::string line;
    if (ctx.num_batches < 0) {
      // A stream of unknown length: the count so far, as tqdm does without a total.
      line = std::string(label) + " " + std::to_string(done) + " [" + clock_text(elapsed) + ", ";
    } else {
      const double remaining = rate > 0 ? static_cast<double>(ctx.num_batches - done) / rate : 0.0;
      const int filled = ctx.num_batches ? static_cast<int>(width_ * done / ctx.num_batches) : width_;
      line = std::string(label) + " " + std::to_string(100 * done / std::max<int64_t>(1, ctx.num_batches)) + "%|" +
             std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width_ - filled), ' ') +
             "| " + std::to_string(done) + "/" + std::to_string(ctx.num_batches) + " [" + clock_text(elapsed) + "<" +
             clock_text(remaining) + ", ";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fit/s", rate);
    line += buf;
    for (const auto& [key, value] : values) {
      line += ", " + std::string(prefix) + key + "=" + torchfit::format_value(value);
    }
    line += "]";
    std::fprintf(out_, "\r%s\033[K", line.c_str());
    std::fflush(out_);
  }

  void epoch_line(const torchfit::Context& ctx) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start_).count();
    std::string line = "Epoch " + std::to_string(ctx.epoch) + "/" + std::to_string(ctx.epochs);
    char buf[32];
    std::snprintf(buf, sizeof buf, " - %.2fs", elapsed);
    line += buf;
    for (const auto& [key, value] : ctx.logs) {
      if (key != "epoch" && key != "time") line += " - " + key + ": " + torchfit::format_value(value);
    }
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }

  FILE* out_;
  bool owned_;
  bool bar_;
  double min_interval_;
  int width_;
  bool validated_ = false;
  Clock::time_point epoch_start_, loop_start_, last_draw_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "progress_bar", "1.0.0",
                            "Progress bar per epoch on a terminal; one plain line per epoch in logs and pipes");
  info.progress_display = true;  // --quiet leaves it out
  info.options->add_options()                                                                             //
      ("stream", po::value<std::string>()->default_value("stderr"),
       "where to write: stderr, stdout, or a file (appended to)")  //
      ("style", torchfit::one_of({"auto", "bar", "lines"})->default_value("auto"),
       "bar (redrawn in place), lines (one line per epoch), or auto (bar on a terminal, else lines)")  //
      ("refresh-rate", torchfit::number<double>(torchfit::NumberRange::positive())->default_value(10.0), "most redraws per second in bar style")  //
      ("width", torchfit::number<int>(torchfit::NumberRange::between(1, 200))->default_value(25), "bar width in characters");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  const auto style = o["style"].as<std::string>();
  const double rate = o["refresh-rate"].as<double>();
  const int width = o["width"].as<int>();
  const auto stream = o["stream"].as<std::string>();
  FILE* out = stream == "stdout" ? stdout : stream == "stderr" ? stderr : std::fopen(stream.c_str(), "a");
  if (!out) {
    throw torchfit::ConfigError("progress_bar.stream: cannot open '" + stream + "' for writing: " +
                                std::strerror(errno));
  }
  const bool owned = out != stdout && out != stderr;
  const bool bar = style == "bar" || (style == "auto" && ::isatty(::fileno(out)));
  return std::make_shared<ProgressBar>(out, owned, bar, rate, width);
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
