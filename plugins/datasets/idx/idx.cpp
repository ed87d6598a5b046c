// Image datasets in IDX files (MNIST's format): `idx` for any pair of files, `fashion_mnist` for
// Debian's dataset-fashion-mnist. One source; TORCHFIT_DATASET picks the plugin each library exports.
#include <torchfit/idx.hpp>
#include <torchfit/logs.hpp>
#include <torchfit/option_values.hpp>
#include <torchfit/plugin.hpp>

#include <filesystem>
#include <sstream>

namespace {

namespace fs = std::filesystem;
namespace po = boost::program_options;
using torchfit::DataRequest;

#define TORCHFIT_STR2_(x) #x
#define TORCHFIT_STR_(x) TORCHFIT_STR2_(x)
const std::string kName = TORCHFIT_STR_(TORCHFIT_DATASET);
const bool kFashion = kName == "fashion_mnist";

const char* const kFashionFolder = "/usr/share/datasets/fashion-mnist";
const std::vector<std::string> kFashionClasses = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  for (auto& name : torchfit::split_list(text)) {
    if (!name.empty()) out.push_back(std::move(name));
  }
  return out;
}

class IdxImages final : public torchfit::DatasetPlugin {
 public:
  explicit IdxImages(const torchfit::PluginOptions& options) : options_(options) {
    if (kFashion) {
      const auto split = options["split"].as<std::string>();
      if (split != "train" && split != "test") {
        throw torchfit::ConfigError("--fashion_mnist.split is train (60,000 images) or test (10,000), got '" + split + "'");
      }
      const fs::path folder = options["folder"].as<std::string>();
      const std::string prefix = split == "train" ? "train" : "t10k";
      images_ = folder / (prefix + "-images-idx3-ubyte.gz");
      labels_ = folder / (prefix + "-labels-idx1-ubyte.gz");
      name_ = "fashion_mnist " + split;
      classes_ = kFashionClasses;
      std::error_code ec;
      if (!fs::is_directory(folder, ec)) {
        throw torchfit::DataError("the Fashion-MNIST folder " + folder.string() +
                                  " does not exist; install Debian's package (apt-get install dataset-fashion-mnist) "
                                  "or give --fashion_mnist.folder DIR with its four .gz files");
      }
      if (!fs::exists(images_, ec) || !fs::exists(labels_, ec)) {
        throw torchfit::DataError("the Fashion-MNIST folder " + folder.string() + " lacks " +
                                  (fs::exists(images_, ec) ? labels_ : images_).filename().string() +
                                  "; reinstall dataset-fashion-mnist (apt-get install --reinstall dataset-fashion-mnist)");
      }
    } else {
      if (!options.count("images")) {
        throw torchfit::ConfigError("the idx dataset needs --idx.images FILE (and --idx.labels FILE to train or evaluate)");
      }
      images_ = options["images"].as<std::string>();
      if (options.count("labels")) labels_ = options["labels"].as<std::string>();
      name_ = "IDX file " + images_.string();
      if (options.count("classes")) classes_ = split_names(options["classes"].as<std::string>());
    }
    // Checked now, before any file is read or written.
    torchfit::image_transforms(options_, kName, "image", true);
  }

  std::shared_ptr<const torchfit::Dataset> load(const DataRequest& request) const override {
    const bool labelled = request.purpose == DataRequest::Purpose::Train || request.purpose == DataRequest::Purpose::Evaluate;
    if (!labelled || labels_.empty()) {
      if (labelled) {
        throw torchfit::ConfigError("training and evaluating on IDX images need their labels: give --idx.labels FILE");
      }
      return std::make_shared<torchfit::TensorDataset>(torchfit::read_idx_images(images_).named(name_).with_classes(classes_));
    }
    auto data = torchfit::read_idx_images(images_, labels_);
    const auto top = data.targets().max().item<int64_t>();
    if (!classes_.empty() && top >= static_cast<int64_t>(classes_.size())) {
      throw torchfit::DataError("IDX file " + labels_.string() + " holds label " + std::to_string(top) + " but " +
                                std::to_string(classes_.size()) + " class names were given (--" + kName + ".classes)");
    }
    return std::make_shared<torchfit::TensorDataset>(data.named(name_).with_classes(classes_));
  }

  std::vector<torchfit::Transform> transforms(bool training) const override {
    return torchfit::image_transforms(options_, kName, "image", training);
  }

 private:
  torchfit::PluginOptions options_;
  fs::path images_, labels_;
  std::string name_;
  std::vector<std::string> classes_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Dataset, kName, "1.0",
                            kFashion ? "Fashion-MNIST from Debian's dataset-fashion-mnist: 28x28 grey clothing images, 10 classes"
                                     : "images and labels in IDX files (MNIST's format), gzip'd or not");
  torchfit::ImageTransformDefaults defaults;
  if (kFashion) {
    info.options->add_options()  //
        ("folder", po::value<std::string>()->value_name("DIR")->default_value(kFashionFolder),
         "the folder of the four .gz files (Debian's package puts them here)")  //
        ("split", po::value<std::string>()->value_name("NAME")->default_value("train"),
         "train (60,000 images) or test (10,000)");
    // The training set's statistics; torchvision's usual augmentation for it.
    defaults.mean = {0.2860};
    defaults.std = {0.3530};
    defaults.flip = 0.5;
    defaults.crop_padding = 1;
  } else {
    info.options->add_options()  //
        ("images", po::value<std::string>()->value_name("FILE"), "IDX file of uint8 images, [N, H, W] or [N, C, H, W]")  //
        ("labels", po::value<std::string>()->value_name("FILE"), "IDX file of the N class indices (train, evaluate)")  //
        ("classes", po::value<std::string>()->value_name("LIST"), "class names, comma-separated, in label order");
  }
  torchfit::add_image_transform_options(*info.options, defaults);
  return info;
}

std::shared_ptr<torchfit::DatasetPlugin> create(const torchfit::PluginOptions& options) {
  return std::make_shared<IdxImages>(options);
}

}  // namespace

TORCHFIT_DATASET_PLUGIN(describe, create)
