// History and Logs: column order, CSV/JSON files, the tail table; Monitor: the best value so far.
#define BOOST_TEST_MODULE history
#include <boost/test/unit_test.hpp>

#include "../support.hpp"

#include <cmath>
#include <limits>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <torchfit/log.hpp>
#include <torchfit/monitor.hpp>

namespace tf = torchfit;

namespace {
tf::History sample() {
  tf::History h;
  for (int e = 1; e <= 3; ++e) {
    tf::Logs row;
    row.set("epoch", e);
    row.set("train_loss", 1.0 / e);
    row.set("lr", 0.001);
    row.set("val_loss", e == 2 ? 0.25 : 0.5);
    row.set("val_acc", 0.5 + 0.1 * e);
    h.append(row);
  }
  return h;
}
}  // namespace

BOOST_AUTO_TEST_CASE(logs_keep_insertion_order_and_list_keys_when_missing) {
  tf::Logs logs;
  logs.set("b", 1);
  logs.set("a", 2);
  logs.set("b", 3);
  BOOST_TEST(logs.keys() == std::vector<std::string>({"b", "a"}), boost::test_tools::per_element());
  BOOST_TEST(logs.at("b") == 3);
  try {
    logs.at("val_acc");
    BOOST_FAIL("expected ConfigError");
  } catch (const tf::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("the logged values are: b, a") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(csv_and_json_files) {
  test::TempDir dir;
  auto h = sample();
  h.to_csv(dir / "h.csv");
  h.to_json(dir / "h.json");
  const auto csv = test::read_file(dir / "h.csv");
  BOOST_TEST(csv.substr(0, csv.find('\n')) == "epoch,train_loss,lr,val_loss,val_acc");
  BOOST_TEST(csv.find("\n2,0.5,0.001,0.25,0.7\n") != std::string::npos);
  const auto json = test::read_file(dir / "h.json");
  BOOST_TEST(json.find("{\"epoch\": 1, \"train_loss\": 1, \"lr\": 0.001") != std::string::npos);
  BOOST_TEST(json.front() == '[');
  // Atomic writes leave no temporary files behind.
  BOOST_TEST(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator()) == 2);
}

BOOST_AUTO_TEST_CASE(writing_into_a_missing_folder_fails_cleanly) {
  test::TempDir dir;
  BOOST_CHECK_THROW(sample().to_csv(dir / "missing" / "h.csv"), tf::CheckpointError);
  BOOST_TEST(!std::filesystem::exists(dir / "missing"));
}

BOOST_AUTO_TEST_CASE(best_row_and_tail) {
  auto h = sample();
  BOOST_TEST(*tf::Monitor("val_loss", tf::MonitorMode::Min).best_row(h.rows()) == 1u);
  BOOST_TEST(*tf::Monitor("val_acc", tf::MonitorMode::Max).best_row(h.rows()) == 2u);
  BOOST_TEST(!tf::Monitor("nothing", tf::MonitorMode::Max).best_row(h.rows()));
  // min-delta: neither 0.7 nor 0.8 improves on 0.6 by more than 0.25, so row 0 stays the best.
  BOOST_TEST(*tf::Monitor("val_acc", tf::MonitorMode::Max, 0.25).best_row(h.rows()) == 0u);
  const auto tail = h.tail(2);
  BOOST_TEST(tail.find("val_acc") != std::string::npos);
  BOOST_TEST(tail.find("\n1 ") != std::string::npos);
  BOOST_TEST(tail.find("\n0 ") == std::string::npos);
  BOOST_CHECK_THROW(h.column("missing"), tf::ConfigError);
}

BOOST_AUTO_TEST_CASE(numeric_csv_with_and_without_header) {
  test::TempDir dir;
  test::write_file(dir / "a.csv", "x1,x2\n1,2\n# comment\n\n3.5,-4\n");
  auto t = tf::read_numeric_csv(dir / "a.csv", 2);
  BOOST_TEST(t.header == std::vector<std::string>({"x1", "x2"}), boost::test_tools::per_element());
  BOOST_TEST(t.values.sizes() == torch::IntArrayRef({2, 2}));
  BOOST_TEST(t.values[1][0].item<float>() == 3.5f);
  test::write_file(dir / "b.csv", "1,2\n3,4\n");
  BOOST_TEST(tf::read_numeric_csv(dir / "b.csv").header.empty());
}

BOOST_AUTO_TEST_CASE(numeric_csv_errors_point_at_line_and_column) {
  test::TempDir dir;
  auto message = [&](const std::string& text, std::optional<int64_t> cols) {
    test::write_file(dir / "c.csv", text);
    try {
      tf::read_numeric_csv(dir / "c.csv", cols);
    } catch (const tf::DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(message("1,2\n3,x\n", 2).find("c.csv:2:2: 'x' is not a number") != std::string::npos);
  BOOST_TEST(message("1,2\n3\n", 2).find("c.csv:2: 1 columns, expected 2") != std::string::npos);
  BOOST_TEST(message("1,2,3\n", 2).find("3 columns, but the model takes 2") != std::string::npos);
  BOOST_TEST(message("a,b\n", 2).find("no data rows") != std::string::npos);
  BOOST_TEST(message("", std::nullopt).find("no data rows") != std::string::npos);
  BOOST_CHECK_THROW(tf::read_numeric_csv(dir / "missing.csv"), tf::DataError);
}

BOOST_AUTO_TEST_CASE(a_monitor_keeps_the_best_value_and_its_epoch) {
  const double inf = std::numeric_limits<double>::infinity();
  tf::Monitor m("val_loss", tf::MonitorMode::Min, 0.1);
  BOOST_TEST(!m.has_best());
  BOOST_TEST(m.best() == inf);  // the worst value, while there is none
  BOOST_TEST(!m.update(std::nan(""), 1));  // NaN is never a best, not even the first
  BOOST_TEST(m.update(1.0, 2));
  BOOST_TEST(!m.update(0.95, 3));  // better, but by less than min-delta
  BOOST_TEST(m.update(0.85, 4));
  BOOST_TEST(m.best() == 0.85);
  BOOST_TEST(m.best_epoch() == 4);
  BOOST_TEST(m.mode_name() == "min");
  m.reset();
  BOOST_TEST(!m.has_best());
  BOOST_TEST(m.best_epoch() == 0);

  // Relative: PyTorch's ReduceLROnPlateau threshold_mode "rel".
  tf::Monitor rel("val_acc", tf::MonitorMode::Max, 0.1, "reduce_lr_on_plateau", true);
  BOOST_TEST(rel.update(0.5, 1));
  BOOST_TEST(!rel.update(0.54, 2));  // not above 0.5 * 1.1
  BOOST_TEST(rel.update(0.56, 3));
}

BOOST_AUTO_TEST_CASE(a_monitor_state_survives_and_reads_the_old_keys) {
  tf::Monitor m("val_acc", tf::MonitorMode::Max);
  m.update(0.7, 3);
  torch::serialize::OutputArchive out;
  m.save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  tf::Monitor back("val_acc", tf::MonitorMode::Max);
  torch::serialize::InputArchive in;
  std::istringstream read(bytes.str());
  in.load_from(read);
  back.load(in);
  BOOST_TEST(back.has_best());
  BOOST_TEST(back.best() == 0.7);
  BOOST_TEST(back.best_epoch() == 3);
  BOOST_TEST(!back.update(0.7, 4));
  BOOST_TEST(back.update(0.71, 5));

  // The keys early_stopping and model_checkpoint wrote before the Monitor kept them.
  torch::serialize::OutputArchive old;
  old.write("has_best", c10::IValue(true));
  old.write("best", c10::IValue(0.25));
  old.write("best_epoch", c10::IValue(int64_t{2}));
  std::ostringstream old_bytes;
  old.save_to(old_bytes);
  torch::serialize::InputArchive old_in;
  std::istringstream old_read(old_bytes.str());
  old_in.load_from(old_read);
  tf::Monitor loss("val_loss", tf::MonitorMode::Min);
  loss.load(old_in);
  BOOST_TEST(loss.best() == 0.25);
  BOOST_TEST(loss.best_epoch() == 2);
}

BOOST_AUTO_TEST_CASE(auto_mode_that_cannot_tell_the_direction_is_an_error) {
  tf::Monitor m("lr", tf::MonitorMode::Auto, 0, "early_stopping");
  BOOST_TEST(!m.resolved());
  BOOST_CHECK_THROW(m.higher_is_better(), std::logic_error);
  try {
    m.resolve(std::nullopt);
    BOOST_FAIL("expected ConfigError");
  } catch (const tf::ConfigError& e) {
    const std::string what = e.what();
    BOOST_TEST(what.find("'lr'") != std::string::npos, what);
    BOOST_TEST(what.find("--early_stopping.mode to min or max") != std::string::npos, what);
  }
  m.resolve(true);
  BOOST_TEST(m.mode_name() == "max");
  // An explicit mode needs nothing, and is not changed by what the fit knows.
  tf::Monitor explicit_min("lr", tf::MonitorMode::Min);
  explicit_min.resolve(std::nullopt);
  explicit_min.resolve(true);
  BOOST_TEST(!explicit_min.higher_is_better());
}

BOOST_AUTO_TEST_CASE(library_log_lines_go_to_stderr_in_a_program_that_set_up_no_logging) {
  // This test module leaves spdlog's default logger (stdout) as a program would.
  for (const auto& sink : tf::logger("test_history")->sinks()) {
    BOOST_TEST(!std::dynamic_pointer_cast<spdlog::sinks::stdout_color_sink_mt>(sink));
    BOOST_TEST(static_cast<bool>(std::dynamic_pointer_cast<spdlog::sinks::stderr_color_sink_mt>(sink)));
  }
  BOOST_TEST(!tf::logger("test_history")->sinks().empty());
}
