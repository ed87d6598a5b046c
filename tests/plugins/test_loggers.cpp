// csv_logger, event_log and plot: what they write after every epoch.
#define BOOST_TEST_MODULE loggers
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <regex>

#include "../support.hpp"

#include <torchfit/monitor.hpp>

namespace tf = torchfit;
using test::CaptureLogs;
BOOST_GLOBAL_FIXTURE(CaptureLogs);

namespace {

tf::History fit(const std::vector<std::shared_ptr<tf::Callback>>& callbacks, int64_t epochs,
                const std::filesystem::path& state = {}, bool resume = false) {
  torch::manual_seed(0);
  torch::nn::Linear net(2, 1);
  tf::Trainer trainer(net, torch::nn::MSELoss(), test::registry().make_metrics({"mae"}),
                      std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.5)));
  const auto data = test::regression_data(60, 1);
  auto options = tf::FitOptions().epochs(epochs).callbacks(callbacks).state_path(state);
  if (resume) options.resume_from(state);
  return trainer.fit(tf::DataLoader(data, tf::LoaderOptions(10)), tf::DataLoader(data, tf::LoaderOptions(30)), options);
}

std::vector<std::string> lines(const std::filesystem::path& p) {
  std::istringstream in(test::read_file(p));
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Tags balance and nest; attributes are quoted; returns the number of elements.
int check_xml(const std::string& xml) {
  std::vector<std::string> open;
  int elements = 0;
  for (size_t i = xml.find('<'); i != std::string::npos; i = xml.find('<', i + 1)) {
    const size_t end = xml.find('>', i);
    BOOST_REQUIRE(end != std::string::npos);
    const std::string tag = xml.substr(i + 1, end - i - 1);
    if (tag[0] == '?') continue;
    BOOST_REQUIRE_EQUAL(std::count(tag.begin(), tag.end(), '"') % 2, 0);
    if (tag[0] == '/') {
      BOOST_REQUIRE(!open.empty());
      BOOST_TEST(open.back() == tag.substr(1));
      open.pop_back();
      continue;
    }
    ++elements;
    const std::string name = tag.substr(0, tag.find_first_of(" />"));
    if (tag.back() != '/') open.push_back(name);
  }
  BOOST_TEST(open.empty());
  return elements;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t i = text.find(part); i != std::string::npos; i = text.find(part, i + 1)) ++n;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(csv_logger_holds_every_finished_epoch) {
  test::TempDir dir;
  struct Check : tf::Callback {
    std::filesystem::path file;
    std::vector<size_t> seen;
    void on_epoch_begin(tf::Context& ctx) override {
      if (ctx.epoch > 1) seen.push_back(lines(file).size());  // header + finished epochs, while training
    }
  };
  auto check = std::make_shared<Check>();
  check->file = dir / "log.csv";
  const auto h = fit({test::make_callback("csv_logger", {"--path=" + check->file.string()}), check}, 4);
  BOOST_TEST(check->seen == (std::vector<size_t>{2, 3, 4}));
  BOOST_TEST(test::read_file(check->file) == h.to_csv_string());
}

BOOST_AUTO_TEST_CASE(event_log_writes_one_json_object_per_line) {
  test::TempDir dir;
  const auto path = dir / "events.jsonl";
  fit({test::make_callback("event_log", {"--path=" + path.string(), "--every-steps=3"})}, 3);
  const auto all = lines(path);
  const std::regex object(R"(^\{"event": "[a-z_]+"(, "[a-z_0-9]+": ("[^"]*"|-?[0-9.e+-]+|null))*\}$)");
  std::map<std::string, int> events;
  for (const auto& line : all) {
    BOOST_TEST_INFO(line);
    BOOST_TEST(std::regex_match(line, object));
    events[line.substr(11, line.find('"', 11) - 11)]++;
  }
  BOOST_TEST(events["fit_begin"] == 1);
  BOOST_TEST(events["epoch"] == 3);
  BOOST_TEST(events["step"] == 6);  // 6 batches x 3 epochs, every 3 steps
  BOOST_TEST(events["new_best"] >= 1);
  BOOST_TEST(events["fit_end"] == 1);
  BOOST_TEST(all.front().find("\"epochs\": 3") != std::string::npos);
  BOOST_TEST(all[1].find("\"event\": \"step\", \"epoch\": 1, \"step\": 3, \"train_loss\": ") == 1u);
  BOOST_TEST(all.back().find("\"reason\": \"completed 3 epochs\"") != std::string::npos);
  const auto epoch = std::find_if(all.begin(), all.end(), [](const std::string& l) { return l.find("\"epoch\", ") != std::string::npos; });
  for (const char* key : {"\"train_loss\": ", "\"train_mae\": ", "\"val_loss\": ", "\"val_mae\": ", "\"time\": ", "\"elapsed\": "}) {
    BOOST_TEST(epoch->find(key) != std::string::npos, key);
  }
}

BOOST_AUTO_TEST_CASE(event_log_records_a_resume) {
  test::TempDir dir;
  const auto path = dir / "events.jsonl";
  struct Interrupt : tf::Callback {
    bool armed;
    explicit Interrupt(bool armed) : armed(armed) { set_name("interrupt"); }
    void on_epoch_end(tf::Context& ctx) override {
      if (armed && ctx.epoch == 2) std::raise(SIGINT);
    }
  };
  tf::install_stop_signal_handlers();
  tf::clear_stop_signal();
  fit({std::make_shared<Interrupt>(true), test::make_callback("event_log", {"--path=" + path.string()})}, 4,
      dir / "s.state");
  tf::clear_stop_signal();
  fit({std::make_shared<Interrupt>(false), test::make_callback("event_log", {"--path=" + path.string()})}, 4,
      dir / "s.state", true);
  const auto text = test::read_file(path);
  BOOST_TEST(count(text, "\"event\": \"fit_begin\"") == 1u);
  BOOST_TEST(count(text, "\"event\": \"resume\", \"epochs\": 4, \"epochs_done\": 2") == 1u);
  BOOST_TEST(count(text, "\"event\": \"epoch\"") == 4u);
  BOOST_TEST(count(text, "interrupted by SIGINT") == 1u);
}

BOOST_AUTO_TEST_CASE(plot_draws_one_path_per_curve_and_marks_the_best_epoch) {
  test::TempDir dir;
  const auto path = dir / "h.svg";
  struct Watch : tf::Callback {
    std::filesystem::path file;
    int rewrites = 0;
    void on_epoch_begin(tf::Context& ctx) override { rewrites += ctx.epoch > 1 && std::filesystem::exists(file); }
  };
  auto watch = std::make_shared<Watch>();
  watch->file = path;
  const auto h = fit({test::make_callback("plot", {"--path=" + path.string()}), watch}, 5);
  BOOST_TEST(watch->rewrites == 4);  // there after every epoch, while training
  const auto svg = test::read_file(path);
  BOOST_TEST(check_xml(svg) > 20);
  BOOST_TEST(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
  BOOST_TEST(count(svg, "class=\"curve\"") == 4u);
  for (const char* key : {"train_loss", "val_loss", "train_mae", "val_mae"}) {
    BOOST_TEST(count(svg, std::string("data-key=\"") + key + "\"") == 1u, key);
  }
  BOOST_TEST(count(svg, "class=\"panel\"") == 2u);
  const auto best = tf::Monitor("val_loss", tf::MonitorMode::Min).best_row(h.rows());
  BOOST_REQUIRE(best);
  BOOST_TEST(svg.find("best val_loss at epoch " + std::to_string(*best + 1)) != std::string::npos);
  BOOST_TEST(count(svg, "<circle class=\"best\"") == 1u);
  // Every curve has one point per epoch.
  const std::regex path_d("class=\"curve\" data-key=\"train_loss\"[^>]* d=\"([^\"]*)\"");
  std::smatch m;
  BOOST_REQUIRE(std::regex_search(svg, m, path_d));
  BOOST_TEST(count(m[1].str(), " L") == 4u);
}
