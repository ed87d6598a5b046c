// event_log: a JSON Lines file, one object per line, appended and flushed as the run goes:
// every epoch's values (lr and elapsed time included), optional step records, and events:
// fit_begin, resume, new_best, stop, fit_end, error. A resumed run appends to the same file,
// so the log tells what happened, including the work a crash lost.
#include <torchfit/errors.hpp>
#include <torchfit/log.hpp>
#include <torchfit/monitor.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>
#include <torchfit/scheduler.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace {

namespace po = boost::program_options;


// One JSON object, built field by field.
class Record {
 public:
  explicit Record(const std::string& event) { text_ = "{\"event\": " + torchfit::json_string(event); }
  Record& add(const std::string& key, double v) {
    text_ += ", " + torchfit::json_string(key) + ": " + torchfit::json_number(v);
    return *this;
  }
  Record& add(const std::string& key, const std::string& v) {
    text_ += ", " + torchfit::json_string(key) + ": " + torchfit::json_string(v);
    return *this;
  }
  Record& add(const torchfit::Logs& logs) {
    for (const auto& [k, v] : logs) add(k, v);
    return *this;
  }
  std::string str() const { return text_ + "}"; }

 private:
  std::string text_;
};

class EventLog final : public torchfit::Callback {
 public:
  bool rank_zero_only() const override { return true; }
  EventLog(std::string path, int64_t every_steps, torchfit::Monitor monitor)
      : path_(std::move(path)), every_steps_(every_steps), monitor_(std::move(monitor)) {
    monitor_.key_may_be_missing();  // an epoch without it logs no new best
  }

  std::vector<const torchfit::Monitor*> monitors() const override { return {&monitor_}; }
  std::vector<OutputFile> output_files() const override {
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec)) return {};
    return {{path_, "events, JSON Lines (event_log)"}};
  }

  void on_fit_begin(torchfit::Context& ctx) override {
    out_.open(path_, std::ios::app);
    if (!out_) {
      throw torchfit::ConfigError("event_log.path '" + path_ + "' cannot be opened for appending: " +
                                  std::strerror(errno));
    }
    start_ = std::chrono::steady_clock::now();
    monitor_.reset();
    write(Record(ctx.resumed ? "resume" : "fit_begin")
              .add("epochs", static_cast<double>(ctx.epochs))
              .add("epochs_done", static_cast<double>(ctx.history().size()))
              .add("global_step", static_cast<double>(ctx.global_step)));
  }

  void on_train_batch_end(torchfit::Context& ctx) override {
    if (every_steps_ > 0 && ctx.global_step > 0 && ctx.global_step % every_steps_ == 0 && ctx.global_step != last_step_) {
      last_step_ = ctx.global_step;
      Record r("step");
      r.add("epoch", static_cast<double>(ctx.epoch)).add("step", static_cast<double>(ctx.global_step));
      for (const auto& [k, v] : ctx.running_logs()) r.add("train_" + k, v);  // one host sync, every N steps only
      const auto rates = torchfit::learning_rates(ctx.optimizer());
      if (!rates.empty()) r.add("lr", rates[0]);
      write(r.add("elapsed", elapsed()));
    }
  }

  void on_epoch_end(torchfit::Context& ctx) override {
    write(Record("epoch").add(ctx.logs).add("step", static_cast<double>(ctx.global_step)).add("elapsed", elapsed()));
    if (!ctx.logs.contains(monitor_.key())) return;
    const double current = monitor_.current(ctx);
    if (monitor_.update(current, ctx.epoch)) {
      write(Record("new_best").add("epoch", static_cast<double>(ctx.epoch)).add("monitor", monitor_.key()).add("value", current));
    }
    if (ctx.stop_requested()) {
      write(Record("stop").add("epoch", static_cast<double>(ctx.epoch)).add("reason", ctx.stop_reason()));
    }
  }

  void on_fit_end(torchfit::Context& ctx) override {
    write(Record("fit_end")
              .add("epochs_done", static_cast<double>(ctx.history().size()))
              .add("reason", ctx.history().stop_reason().empty() ? ctx.stop_reason() : ctx.history().stop_reason())
              .add("elapsed", elapsed()));
    out_.close();
  }

  void on_exception(torchfit::Context& ctx, const std::exception& error) override {
    if (!out_.is_open()) return;
    write(Record("error").add("epoch", static_cast<double>(ctx.epoch)).add("message", error.what()));
    out_.close();
  }

  torchfit::StateFields state_fields() override { return torchfit::StateFields().add(monitor_); }

 private:
  double elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  void write(const Record& r) {
    out_ << r.str() << '\n';
    out_.flush();  // one line per event, readable at once (tail -f)
    if (!out_) throw torchfit::Error("cannot write to event log '" + path_ + "': " + std::strerror(errno));
  }

  std::string path_;
  int64_t every_steps_;
  torchfit::Monitor monitor_;
  std::ofstream out_;
  std::chrono::steady_clock::time_point start_;
  int64_t last_step_ = -1;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "event_log", "1.0.0",
                            "Appends a JSON Lines log: every epoch's values and the run's events (new best, stop, resume)");
  info.options->add_options()                                                                            //
      ("path", po::value<std::string>()->default_value("events.jsonl"), "the JSON Lines file (appended)")  //
      ("every-steps", torchfit::number<int64_t>(torchfit::NumberRange::at_least(0, "(0: epochs only)"))->default_value(0),
       "also log the running train values every N optimizer steps (0: epochs only)");
  torchfit::add_monitor_options(*info.options, "the new_best events", false);
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  const auto every = o["every-steps"].as<int64_t>();
  return std::make_shared<EventLog>(o["path"].as<std::string>(), every, torchfit::monitor_from_options(o, "event_log"));
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
