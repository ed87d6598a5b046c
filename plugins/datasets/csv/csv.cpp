// Numeric CSV files (docs/data.md): the runner's --data, --val-data, --target, --features,
// --delimiter and --missing are this plugin's options, spelled without the csv. prefix.
#include <torchfit/csv.hpp>
#include <torchfit/plugin.hpp>

#include <filesystem>
#include <fstream>

namespace {

namespace fs = std::filesystem;
namespace po = boost::program_options;
using torchfit::DataRequest;

class CsvFiles final : public torchfit::DatasetPlugin {
 public:
  explicit CsvFiles(const torchfit::PluginOptions& options) {
    if (!options.count("data")) {
      throw torchfit::ConfigError("the csv dataset needs --data FILE.csv (the rows to train, evaluate or predict on)");
    }
    data_ = options["data"].as<std::string>();
    if (options.count("val-data")) val_data_ = options["val-data"].as<std::string>();
    csv_.delimiter = torchfit::parse_csv_delimiter(options["delimiter"].as<std::string>(), "--delimiter");
    csv_.missing = torchfit::parse_csv_missing(options["missing"].as<std::string>(), "--missing");
    if (options.count("target")) csv_.target = options["target"].as<std::string>();
    if (options.count("features")) csv_.features = options["features"].as<std::string>();
  }

  std::shared_ptr<const torchfit::Dataset> load(const DataRequest& request) const override {
    if (request.purpose == DataRequest::Purpose::Predict) {
      auto csv = csv_;
      csv.ignore_target = true;
      if (request.input_features > 0) csv.expected_features = request.input_features;
      return table(torchfit::TensorDataset(torchfit::read_csv(data_, csv).features), data_);
    }
    if (request.purpose == DataRequest::Purpose::Summary && csv_.target.empty()) {
      return table(torchfit::TensorDataset(torchfit::read_csv(data_, csv_).features), data_);
    }
    return labelled(data_, request);
  }

  std::shared_ptr<const torchfit::Dataset> load_validation(const DataRequest& request) const override {
    if (val_data_.empty()) return nullptr;
    return labelled(val_data_, request);
  }

 private:
  static std::shared_ptr<const torchfit::Dataset> table(torchfit::TensorDataset data, const fs::path& file) {
    return std::make_shared<torchfit::TensorDataset>(data.named("CSV file " + file.string()));
  }

  // A labelled file, with the targets as the model trains on them.
  std::shared_ptr<const torchfit::Dataset> labelled(const fs::path& file, const DataRequest& request) const {
    if (csv_.target.empty()) {
      std::string first_line;
      std::ifstream in(file);
      std::getline(in, first_line);
      if (first_line.size() > 200) first_line = first_line.substr(0, 200) + "...";
      throw torchfit::ConfigError("--data needs --target COLUMN: the column to predict, a header name or a 1-based index" +
                                  (first_line.empty() ? std::string() : " (" + file.string() + " begins: " + first_line + ")"));
    }
    const auto csv = torchfit::read_csv(file, csv_);
    return table(torchfit::TensorDataset(csv.features, request.make_targets(csv.targets, file.string())), file);
  }

  fs::path data_, val_data_;
  torchfit::CsvOptions csv_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Dataset, "csv", "1.0",
                            "numeric CSV files: feature columns and a target column (--data, --target; docs/data.md)");
  info.options->add_options()  //
      ("data", po::value<std::string>()->value_name("FILE.csv"), "the rows to train, evaluate or predict on")  //
      ("val-data", po::value<std::string>()->value_name("FILE.csv"),
       "train: validation rows (default: the runner's --val-split of --data)");
  torchfit::add_csv_column_options(*info.options);
  return info;
}

std::shared_ptr<torchfit::DatasetPlugin> create(const torchfit::PluginOptions& options) {
  return std::make_shared<CsvFiles>(options);
}

}  // namespace

TORCHFIT_DATASET_PLUGIN(describe, create)
