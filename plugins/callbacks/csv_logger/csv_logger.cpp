// csv_logger: the history as a CSV file rewritten (atomically) after every epoch, so it can be
// watched while training and is never ahead of or behind the run, also across a resume.
#include <torchfit/errors.hpp>
#include <torchfit/io.hpp>
#include <torchfit/plugin.hpp>

#include <filesystem>

namespace {

namespace po = boost::program_options;

class CsvLogger final : public torchfit::Callback {
 public:
  bool rank_zero_only() const override { return true; }
  explicit CsvLogger(std::filesystem::path path) : path_(std::move(path)) {}

  void on_fit_begin(torchfit::Context& ctx) override { torchfit::check_writable_parent(path_, "csv_logger.path"); }
  std::vector<OutputFile> output_files() const override {
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec)) return {};
    return {{path_.string(), "history as CSV (csv_logger)"}};
  }

  // The row of this epoch is added to the history after on_epoch_end: write history + it.
  void on_epoch_end(torchfit::Context& ctx) override {
    torchfit::History rows = ctx.history();
    rows.append(ctx.logs);
    rows.to_csv(path_);
  }

 private:
  std::filesystem::path path_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "csv_logger", "1.0.0",
                            "Writes the history to a CSV file after every epoch (watch it while training)");
  info.options->add_options()("path", po::value<std::string>()->default_value("training_log.csv"),
                              "the CSV file, rewritten atomically after every epoch");
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  const auto path = o["path"].as<std::string>();
  if (path.empty()) throw torchfit::ConfigError("csv_logger.path must not be empty");
  return std::make_shared<CsvLogger>(path);
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
