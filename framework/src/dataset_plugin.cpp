// The image transform options every image dataset plugin shares.
#include "torchfit/dataset_plugin.hpp"

#include <cmath>
#include <sstream>

#include "torchfit/errors.hpp"
#include "torchfit/logs.hpp"
#include "torchfit/option_values.hpp"

namespace torchfit {

namespace po = boost::program_options;

namespace {

std::string list_text(const std::vector<double>& values) {
  std::string out;
  for (double v : values) out += (out.empty() ? "" : ",") + format_value(v);
  return out;
}

std::vector<double> parse_list(const std::string& text, const std::string& option) {
  const auto values = parse_number_list(text);
  if (!values) {
    throw ConfigError("--" + option + " takes one number or one per channel, separated by commas, got '" + text + "'");
  }
  if (values->empty()) throw ConfigError("--" + option + " takes one number or one per channel, got nothing");
  return *values;
}

}  // namespace

void add_csv_column_options(po::options_description& options) {
  options.add_options()  //
      ("target", po::value<std::string>()->value_name("COLUMN"), "the column to predict: a header name or a 1-based index")  //
      ("features", po::value<std::string>()->value_name("LIST"),
       "feature columns: names, 1-based indices and ranges like 2-5 (default: every column but the target)")  //
      ("delimiter", po::value<std::string>()->value_name("C")->default_value("comma"),
       "cell separator: comma, semicolon, tab, pipe, space or the character")  //
      ("missing", po::value<std::string>()->value_name("POLICY")->default_value("error"),
       "empty or NA feature cells: error (names the cell), zero, or mean (of the column in that file)");
}

void add_image_transform_options(po::options_description& options, const ImageTransformDefaults& d) {
  options.add_options()  //
      ("mean", po::value<std::string>()->value_name("LIST")->default_value(list_text(d.mean)),
       "normalize: the images' mean after scaling to [0, 1] (one value, or one per channel)")  //
      ("std", po::value<std::string>()->value_name("LIST")->default_value(list_text(d.std)),
       "normalize: their standard deviation (one value, or one per channel)")  //
      ("flip", number<double>(NumberRange::between(0, 1))->value_name("P")->default_value(d.flip, format_value(d.flip)),
       "training: flip each image horizontally with probability P")  //
      ("crop-padding", number<int64_t>(NumberRange::between(0, 64))->value_name("N")->default_value(d.crop_padding),
       "training: pad by N zero pixels, then crop back at random (shifts of up to N pixels; 0: off)")  //
      ("erasing", number<double>(NumberRange::between(0, 1))->value_name("P")->default_value(d.erasing, format_value(d.erasing)),
       "training: zero a random rectangle (2% to 33% of the image) with probability P");
}

std::vector<Transform> image_transforms(const po::variables_map& options, const std::string& plugin,
                                        const std::string& field, bool training) {
  const auto mean = parse_list(options["mean"].as<std::string>(), plugin + ".mean");
  const auto std = parse_list(options["std"].as<std::string>(), plugin + ".std");
  const double flip = options["flip"].as<double>();
  const int64_t padding = options["crop-padding"].as<int64_t>();
  const double erasing = options["erasing"].as<double>();
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
