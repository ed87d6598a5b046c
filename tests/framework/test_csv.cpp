// The CSV reader: headers, delimiters, comments, column selection, quotes, missing values,
// and every bad file with the line, column and text in the message.
#define BOOST_TEST_MODULE csv
#include <boost/test/unit_test.hpp>

#include <chrono>

#include "../support.hpp"

namespace tf = torchfit;

namespace {

tf::CsvData read(const std::string& text, tf::CsvOptions o = {}) {
  std::istringstream in(text);
  return tf::read_csv(in, "d.csv", o);
}

std::string error(const std::string& text, tf::CsvOptions o = {}) {
  try {
    read(text, o);
  } catch (const tf::DataError& e) {
    return e.what();
  }
  return "no error";
}

std::vector<float> values(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

tf::CsvOptions target(const std::string& t) {
  tf::CsvOptions o;
  o.target = t;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(header_target_by_name_and_the_rest_as_features) {
  const auto d = read("x1,y,x2\n1,10,2\n# a comment\n\n3,30,4\n", target("y"));
  BOOST_TEST(d.header == std::vector<std::string>({"x1", "y", "x2"}), boost::test_tools::per_element());
  BOOST_TEST(d.feature_names == std::vector<std::string>({"x1", "x2"}), boost::test_tools::per_element());
  BOOST_TEST(d.target_name == "y");
  BOOST_TEST(values(d.features) == std::vector<float>({1, 2, 3, 4}), boost::test_tools::per_element());
  BOOST_TEST(values(d.targets) == std::vector<float>({10, 30}), boost::test_tools::per_element());
  BOOST_TEST(d.targets.sizes() == torch::IntArrayRef({2, 1}));
}

BOOST_AUTO_TEST_CASE(no_header_target_by_index_features_by_list_and_range) {
  auto o = target("1");
  o.features = "5,2-3";
  const auto d = read("9,1,2,3,4\n8,5,6,7,8\n", o);
  BOOST_TEST(d.header.empty());
  BOOST_TEST(d.feature_names == std::vector<std::string>({"column 5", "column 2", "column 3"}),
             boost::test_tools::per_element());
  BOOST_TEST(values(d.features) == std::vector<float>({4, 1, 2, 8, 5, 6}), boost::test_tools::per_element());
  BOOST_TEST(values(d.targets) == std::vector<float>({9, 8}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(delimiters_comments_and_forced_header) {
  tf::CsvOptions o;
  o.delimiter = ';';
  o.comment = '%';
  BOOST_TEST(values(read("% note\n1;2\n3;4\n", o).features) == std::vector<float>({1, 2, 3, 4}),
             boost::test_tools::per_element());
  o.delimiter = '\t';
  o.header = tf::CsvHeader::Yes;
  const auto d = read("1\t2\n3\t4\n", o);  // numeric names, a header all the same
  BOOST_TEST(d.header == std::vector<std::string>({"1", "2"}), boost::test_tools::per_element());
  BOOST_TEST(d.features.size(0) == 1);
  BOOST_TEST(tf::parse_csv_delimiter("tab", "--delimiter") == '\t');
  BOOST_CHECK_THROW(tf::parse_csv_delimiter("::", "--delimiter"), tf::ConfigError);
}

BOOST_AUTO_TEST_CASE(quoted_fields) {
  const auto d = read("\"a, b\",\"say \"\"hi\"\"\"\n\"1\", 2 \n", target("say \"hi\""));
  BOOST_TEST(d.feature_names == std::vector<std::string>({"a, b"}), boost::test_tools::per_element());
  BOOST_TEST(values(d.targets) == std::vector<float>({2}), boost::test_tools::per_element());
  BOOST_TEST(error("a,b\n\"1,2\n").find("d.csv:2: a quoted field is not closed") != std::string::npos);
  // Several cells with escaped quotes on one line (each kept apart while the line is read).
  const auto many = read("\"a\"\"1\",\"b\"\"2\",\"c\"\"3\",\"d\"\"4\",\"e\"\"5\"\n1,2,3,4,5\n");
  BOOST_TEST(many.header == std::vector<std::string>({"a\"1", "b\"2", "c\"3", "d\"4", "e\"5"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(missing_values_rejected_or_filled) {
  const std::string text = "a,b\n1,\n3,NA\n5,6\n";
  BOOST_TEST(error(text).find("d.csv:2:2 ('b'): missing value; fill it in, or choose a policy") != std::string::npos);
  tf::CsvOptions o;
  o.missing = tf::CsvMissing::Zero;
  auto d = read(text, o);
  BOOST_TEST(values(d.features) == std::vector<float>({1, 0, 3, 0, 5, 6}), boost::test_tools::per_element());
  BOOST_TEST(d.filled == 2);
  o.missing = tf::CsvMissing::Mean;
  d = read(text, o);
  BOOST_TEST(values(d.features) == std::vector<float>({1, 6, 3, 6, 5, 6}), boost::test_tools::per_element());
  BOOST_TEST(error("a,b\n1,\n2,\n", o).find("column 'b' of 'd.csv' has no values at all") != std::string::npos);
  o.target = "b";
  BOOST_TEST(error(text, o).find("d.csv:2:2 ('b'): the target is missing") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_files_name_line_column_and_text) {
  BOOST_TEST(error("a,b\n1,2\n3,x7\n").find("d.csv:3:2 ('b'): 'x7' is not a number") != std::string::npos);
  BOOST_TEST(error("1,2\n3,1e999\n").find("d.csv:2:2: '1e999' is not a number") != std::string::npos);
  BOOST_TEST(error("a,b\n1,2\n3\n").find("d.csv:3: 1 columns, expected 2 like the header") != std::string::npos);
  BOOST_TEST(error("1,2\n3,4,5\n").find("d.csv:2: 3 columns, expected 2 like the lines before") != std::string::npos);
  BOOST_TEST(error("").find("'d.csv' has no data rows (it is empty)") != std::string::npos);
  BOOST_TEST(error("# only a comment\n\n").find("has no data rows") != std::string::npos);
  BOOST_TEST(error("a,b\n").find("'d.csv' has a header but no data rows") != std::string::npos);
  BOOST_TEST(error("a,b\n1,2\n", target("c")).find("'d.csv' has no column named 'c' (the target)") !=
             std::string::npos);
  BOOST_TEST(error("alpha,beta\n1,2\n", target("bta")).find("did you mean 'beta'? Columns: alpha, beta") !=
             std::string::npos);
  BOOST_TEST(error("a,b\n1,2\n", target("3")).find("has 2 columns; target column 3 does not exist") !=
             std::string::npos);
  auto o = target("a");
  o.features = "a";
  BOOST_TEST(error("a,b\n1,2\n", o).find("is both the target and a feature") != std::string::npos);
  o.features = "2-5";
  BOOST_TEST(error("a,b\n1,2\n", o).find("feature range 2-5 does not fit") != std::string::npos);
  tf::CsvOptions width;
  width.expected_features = 3;
  BOOST_TEST(error("1,2\n", width).find("d.csv:1: 2 columns, but the model takes 3 features") != std::string::npos);
  test::TempDir dir;
  BOOST_CHECK_THROW(tf::read_csv(dir / "missing.csv"), tf::DataError);
  BOOST_TEST(std::string([&] {
               try {
                 tf::read_csv(dir.path);
               } catch (const tf::DataError& e) {
                 return std::string(e.what());
               }
               return std::string();
             }()).find("is a folder") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(large_files_stream_fast) {
  // 200,000 rows x 20 columns (~31 MB): read from a file, timed; the guide's target is a
  // million rows in a few seconds.
  test::TempDir dir;
  const auto path = dir / "big.csv";
  {
    std::ofstream out(path);
    out << "y";
    for (int c = 1; c < 20; ++c) out << ",x" << c;
    out << "\n";
    for (int r = 0; r < 200000; ++r) {
      out << r % 2;
      for (int c = 1; c < 20; ++c) out << ',' << (r * 31 + c * 7) % 1000 * 0.001 - 0.5;
      out << '\n';
    }
  }
  const auto start = std::chrono::steady_clock::now();
  tf::CsvOptions o;
  o.target = "y";
  const auto d = tf::read_csv(path, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  BOOST_TEST_MESSAGE("200000 x 20 CSV read in " << seconds << " s");
  BOOST_TEST(d.features.sizes() == torch::IntArrayRef({200000, 19}));
  BOOST_TEST(d.targets.sum().item<float>() == 100000.0f);
  BOOST_TEST(seconds < 10.0);  // generous: a loaded CI machine; about 1 s here
}
