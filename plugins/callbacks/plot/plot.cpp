// plot: an SVG of the training curves, rewritten (atomically) after every epoch: one panel for
// the loss and one per metric, train and validation in each, the best epoch of the monitored
// value marked, like torchkeras' history plot. Open it in a browser and reload to watch.
#include <torchfit/errors.hpp>
#include <torchfit/io.hpp>
#include <torchfit/monitor.hpp>
#include <torchfit/plugin.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <map>
#include <sstream>

namespace {

namespace po = boost::program_options;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

// Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
std::vector<double> ticks(double lo, double hi, int target) {
  const double span = hi - lo;
  const double raw = span / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * power;
    if (span / step <= target) break;
  }
  std::vector<double> out;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    out.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  }
  return out;
}

std::string tick_label(double v) {
  std::ostringstream s;
  s << std::setprecision(4) << v;
  return s.str();
}

struct Curve {
  std::string key;  // "train_loss", "val_loss"
  std::vector<std::pair<double, double>> points;  // (epoch, value), finite values only
};

class Plot final : public torchfit::Callback {
 public:
  bool rank_zero_only() const override { return true; }
  Plot(std::filesystem::path path, torchfit::Monitor monitor) : path_(std::move(path)), monitor_(std::move(monitor)) {
    monitor_.key_may_be_missing();  // an epoch without it marks no best
  }

  std::vector<const torchfit::Monitor*> monitors() const override { return {&monitor_}; }

  void on_fit_begin(torchfit::Context& ctx) override { torchfit::check_writable_parent(path_, "plot.path"); }
  std::vector<OutputFile> output_files() const override {
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec)) return {};
    return {{path_.string(), "training curves, SVG (plot)"}};
  }

  void on_epoch_end(torchfit::Context& ctx) override {
    std::vector<torchfit::Logs> rows = ctx.history().rows();
    rows.push_back(ctx.logs);  // this epoch's row joins the history after on_epoch_end
    std::optional<double> best_epoch;
    monitor_.resolve(ctx);
    if (const auto best = monitor_.best_row(rows)) best_epoch = rows[*best].at("epoch");
    const std::string svg = render(rows, best_epoch);
    torchfit::atomic_write_text(path_, [&](std::ostream& out) { out << svg; });
  }

 private:
  // Panels: "loss" first, then each metric, from the keys train_<m> / val_<m>.
  static std::vector<std::string> panel_names(const std::vector<torchfit::Logs>& rows) {
    std::vector<std::string> names;
    for (const auto& row : rows) {
      for (const auto& [key, value] : row) {
        std::string name;
        if (key.rfind("train_", 0) == 0) name = key.substr(6);
        else if (key.rfind("val_", 0) == 0) name = key.substr(4);
        else continue;
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
      }
    }
    std::stable_partition(names.begin(), names.end(), [](const std::string& n) { return n == "loss"; });
    return names;
  }

  std::string render(const std::vector<torchfit::Logs>& rows, std::optional<double> best_epoch) const {
    const auto names = panel_names(rows);
    const int columns = names.size() > 1 ? 2 : 1;
    const int panel_w = 460, panel_h = 320;
    const int grid_rows = static_cast<int>((names.size() + columns - 1) / columns);
    const int width = columns * panel_w, height = std::max(1, grid_rows) * panel_h + 40;
    std::ostringstream svg;
    svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
        << "\" viewBox=\"0 0 " << width << " " << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
        << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        << "<text x=\"" << width / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">training history, "
        << rows.size() << " epochs" << (best_epoch ? ", best " + escape(monitor_.key()) + " at epoch " + tick_label(*best_epoch) : "")
        << "</text>\n";
    for (size_t i = 0; i < names.size(); ++i) {
      const int x0 = static_cast<int>(i % columns) * panel_w, y0 = 40 + static_cast<int>(i / columns) * panel_h;
      panel(svg, rows, names[i], x0, y0, panel_w, panel_h, best_epoch);
    }
    svg << "</svg>\n";
    return svg.str();
  }

  void panel(std::ostringstream& svg, const std::vector<torchfit::Logs>& rows, const std::string& name, int x0, int y0,
             int w, int h, std::optional<double> best_epoch) const {
    std::vector<Curve> curves;
    for (const char* prefix : {"train_", "val_"}) {
      Curve c{prefix + name, {}};
      for (const auto& row : rows) {
        const auto v = row.get(c.key);
        const auto e = row.get("epoch");
        if (v && e && std::isfinite(*v)) c.points.emplace_back(*e, *v);
      }
      if (!c.points.empty()) curves.push_back(std::move(c));
    }
    double xmin = 1, xmax = 1, ymin = INFINITY, ymax = -INFINITY;
    for (const auto& row : rows) xmax = std::max(xmax, row.get("epoch").value_or(1));
    for (const auto& c : curves) {
      for (const auto& [x, y] : c.points) {
        ymin = std::min(ymin, y);
        ymax = std::max(ymax, y);
      }
    }
    if (!std::isfinite(ymin)) ymin = 0, ymax = 1;
    if (ymax - ymin < 1e-12) ymin -= 0.5, ymax += 0.5;
    const double pad = (ymax - ymin) * 0.05;
    ymin -= pad;
    ymax += pad;
    if (xmax <= xmin) xmax = xmin + 1;
    const int left = x0 + 64, right = x0 + w - 16, top = y0 + 28, bottom = y0 + h - 64;
    auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * (right - left); };
    auto py = [&](double y) { return bottom - (y - ymin) / (ymax - ymin) * (bottom - top); };

    svg << "<g class=\"panel\" id=\"panel-" << escape(name) << "\">\n";
    svg << "<text x=\"" << (left + right) / 2 << "\" y=\"" << y0 + 18 << "\" text-anchor=\"middle\" font-size=\"14\">"
        << escape(name) << "</text>\n";
    for (double t : ticks(ymin, ymax, 5)) {
      svg << "<line x1=\"" << left << "\" y1=\"" << num(py(t)) << "\" x2=\"" << right << "\" y2=\"" << num(py(t))
          << "\" stroke=\"#e5e5e5\"/>\n<text x=\"" << left - 6 << "\" y=\"" << num(py(t) + 4)
          << "\" text-anchor=\"end\">" << tick_label(t) << "</text>\n";
    }
    for (double t : ticks(xmin, xmax, 6)) {
      if (t < xmin) continue;
      svg << "<line x1=\"" << num(px(t)) << "\" y1=\"" << bottom << "\" x2=\"" << num(px(t)) << "\" y2=\"" << bottom + 4
          << "\" stroke=\"#333\"/>\n<text x=\"" << num(px(t)) << "\" y=\"" << bottom + 18
          << "\" text-anchor=\"middle\">" << tick_label(t) << "</text>\n";
    }
    svg << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << right - left << "\" height=\"" << bottom - top
        << "\" fill=\"none\" stroke=\"#333\"/>\n";
    svg << "<text x=\"" << (left + right) / 2 << "\" y=\"" << bottom + 34 << "\" text-anchor=\"middle\">epoch</text>\n";
    if (best_epoch) {
      svg << "<line class=\"best\" x1=\"" << num(px(*best_epoch)) << "\" y1=\"" << top << "\" x2=\"" << num(px(*best_epoch))
          << "\" y2=\"" << bottom << "\" stroke=\"#2ca02c\" stroke-dasharray=\"4 3\"/>\n";
    }
    static const char* colors[] = {"#1f77b4", "#ff7f0e"};
    for (size_t c = 0; c < curves.size(); ++c) {
      const bool val = curves[c].key.rfind("val_", 0) == 0;
      svg << "<path class=\"curve\" data-key=\"" << escape(curves[c].key) << "\" fill=\"none\" stroke=\"" << colors[val]
          << "\" stroke-width=\"2\" d=\"";
      for (size_t p = 0; p < curves[c].points.size(); ++p) {
        svg << (p ? " L" : "M") << num(px(curves[c].points[p].first)) << " " << num(py(curves[c].points[p].second));
      }
      svg << "\"/>\n";
      if (curves[c].points.size() == 1) {  // one epoch: a dot, as a path of length zero shows nothing
        svg << "<circle cx=\"" << num(px(curves[c].points[0].first)) << "\" cy=\"" << num(py(curves[c].points[0].second))
            << "\" r=\"3\" fill=\"" << colors[val] << "\"/>\n";
      }
      if (best_epoch && curves[c].key == monitor_.key()) {
        for (const auto& [x, y] : curves[c].points) {
          if (x == *best_epoch) {
            svg << "<circle class=\"best\" cx=\"" << num(px(x)) << "\" cy=\"" << num(py(y)) << "\" r=\"4.5\" fill=\"#2ca02c\"/>\n";
          }
        }
      }
    }
    // Legend: one row under the axis, never over the curves.
    int lx = left;
    const int ly = bottom + 54;
    auto legend = [&](const std::string& color, const std::string& label, bool dashed) {
      svg << "<line x1=\"" << lx << "\" y1=\"" << ly - 4 << "\" x2=\"" << lx + 22 << "\" y2=\"" << ly - 4 << "\" stroke=\""
          << color << "\" stroke-width=\"2\"" << (dashed ? " stroke-dasharray=\"4 3\"" : "") << "/>\n<text x=\"" << lx + 28
          << "\" y=\"" << ly << "\">" << escape(label) << "</text>\n";
      lx += 40 + 7 * static_cast<int>(label.size());
    };
    for (const auto& c : curves) legend(colors[c.key.rfind("val_", 0) == 0], c.key, false);
    if (best_epoch) legend("#2ca02c", "best epoch (" + monitor_.key() + ")", true);
    svg << "</g>\n";
  }

  std::filesystem::path path_;
  torchfit::Monitor monitor_;
};

torchfit::PluginInfo describe() {
  torchfit::PluginInfo info(torchfit::PluginKind::Callback, "plot", "1.0.0",
                            "Draws the training curves to an SVG file after every epoch, the best epoch marked");
  info.options->add_options()                                                                               //
      ("path", po::value<std::string>()->default_value("history.svg"), "the SVG file, rewritten every epoch");
  torchfit::add_monitor_options(*info.options, "the best epoch marked", false);
  return info;
}

std::shared_ptr<torchfit::Callback> create(const torchfit::PluginOptions& o) {
  const auto path = o["path"].as<std::string>();
  if (path.empty()) throw torchfit::ConfigError("plot.path must not be empty");
  return std::make_shared<Plot>(path, torchfit::monitor_from_options(o, "plot"));
}

}  // namespace

TORCHFIT_CALLBACK_PLUGIN(describe, create)
