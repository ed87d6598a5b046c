// The image transform options every image dataset plugin shares.
#include "torchfit/dataset_plugin.hpp"

#include <cmath>
#include <sstream>

#include "torchfit/errors.hpp"
#include "torchfit/logs.hpp"

namespace torchfit {

namespace po = boost::program_options;

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::string list_text(const std::vector<double>& values) {
  std::string out;
  for (double v : values) out += (out.empty() ? "" : ",") + format_value(v);
  return out;
}

std::vector<double> parse_list(const std::string& text, const std::string& option) {
  std::vector<double> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    item = trim(item);
    size_t used = 0;
    double v = NAN;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || !std::isfinite(v)) {
      throw ConfigError("--" + option + " takes one number or one per channel, separated by commas, got '" + text + "'");
    }
    out.push_back(v);
  }
  if (out.empty()) throw ConfigError("--" + option + " takes one number or one per channel, got nothing");
  return out;
}

}  // namespace

void add_image_transform_options(po::options_description& options, const ImageTransformDefaults& d) {
  options.add_options()  //
      ("mean", po::value<std::string>()->value_name("LIST")->default_value(list_text(d.mean)),
       "normalize: the images' mean after scaling to [0, 1] (one value, or one per channel)")  //
      ("std", po::value<std::string>()->value_name("LIST")->default_value(list_text(d.std)),
       "normalize: their standard deviation (one value, or one per channel)")  //
      ("flip", po::value<double>()->value_name("P")->default_value(d.flip, format_value(d.flip)),
       "training: flip each image horizontally with probability P")  //
      ("crop-padding", po::value<int64_t>()->value_name("N")->default_value(d.crop_padding),
       "training: pad by N zero pixels, then crop back at random (shifts of up to N pixels; 0: off)")  //
      ("erasing", po::value<double>()->value_name("P")->default_value(d.erasing, format_value(d.erasing)),
       "training: zero a random rectangle (2% to 33% of the image) with probability P");
}

std::vector<Transform> image_transforms(const po::variables_map& options, const std::string& plugin,
                                        const std::string& field, bool training) {
  const auto mean = parse_list(options["mean"].as<std::string>(), plugin + ".mean");
  const auto std = parse_list(options["std"].as<std::string>(), plugin + ".std");
  const double flip = options["flip"].as<double>();
  const int64_t padding = options["crop-padding"].as<int64_t>();
  const double erasing = options["erasing"].as<double>();
  auto probability = [&](double p, const char* option) {
    if (!(p >= 0 && p <= 1)) {
      throw ConfigError("--" + plugin + "." + option + " is a probability from 0 to 1, got " + format_value(p));
    }
  };
  probability(flip, "flip");
  probability(erasing, "erasing");
  if (padding < 0 || padding > 64) {
    throw ConfigError("--" + plugin + ".crop-padding takes 0 (off) to 64 pixels, got " + std::to_string(padding));
  }
  if (mean.size() != std.size()) {
    throw ConfigError("--" + plugin + ".mean and --" + plugin + ".std need as many values (one, or one per channel); got " +
                      std::to_string(mean.size()) + " and " + std::to_string(std.size()));
  }
  for (double s : std) {
    if (!(s > 0)) throw ConfigError("--" + plugin + ".std must be positive, got " + format_value(s));
  }
  std::vector<Transform> out;
  if (training && padding > 0) out.push_back(transforms::random_crop(padding, field));
  if (training && flip > 0) out.push_back(transforms::random_horizontal_flip(flip, field));
  // Bytes become [0, 1]; float images are taken as already scaled.
  out.push_back([field](Sample& sample, Rng&) {
    auto& x = sample[field];
    x = x.scalar_type() == torch::kByte ? x.to(torch::kFloat).div_(255) : x.to(torch::kFloat);
  });
  out.push_back(transforms::normalize(mean, std, field));
  if (training && erasing > 0) out.push_back(transforms::random_erasing(erasing, field));
  return out;
}

}  // namespace torchfit
