// History and Logs: column order, CSV/JSON files, the tail table, the best row; CSV input.
#define BOOST_TEST_MODULE history
#include <boost/test/unit_test.hpp>

#include "../support.hpp"

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
  BOOST_TEST(*h.best_row("val_loss", false) == 1u);
  BOOST_TEST(*h.best_row("val_acc", true) == 2u);
  BOOST_TEST(!h.best_row("nothing", true));
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
