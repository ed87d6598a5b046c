// End-to-end: the built torchfit binary, every command and every bad input, in temp folders.
#define BOOST_TEST_MODULE cli
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <set>

#include "run.hpp"

namespace fs = std::filesystem;

namespace {

using test::files_in;
using test::has;
using test::Result;
using test::run_torchfit;

double json_value(const std::string& json, const std::string& key) {
  const auto pos = json.find("\"" + key + "\": ");
  BOOST_REQUIRE(pos != std::string::npos);
  return std::stod(json.substr(pos + key.size() + 4));
}

const std::string kRing = "train --model dnn_binary --epochs 100 --patience 10 --monitor val_acc --mode max";
const std::string kTestPlugins = " --plugin-dir '" TORCHFIT_TEST_PLUGIN_DIR "'";

}  // namespace

BOOST_AUTO_TEST_CASE(version_and_help) {
  test::TempDir dir;
  auto v = run_torchfit("--version", dir.path);
  BOOST_TEST(v.rc == 0);
  BOOST_TEST(has(v.out, "torchfit " + torchfit::version() + " (plugin ABI " +
                            std::to_string(torchfit::kPluginAbiVersion)));
  auto h = run_torchfit("--help", dir.path);
  BOOST_TEST(h.rc == 0);
  for (const char* c : {"train", "evaluate", "predict", "summary", "plugins"}) BOOST_TEST(has(h.out, c));
  auto th = run_torchfit("train --help --model dnn_binary", dir.path);
  BOOST_TEST(th.rc == 0);
  BOOST_TEST(has(th.out, "--epochs"));
  BOOST_TEST(has(th.out, "--early_stopping.patience"));
  BOOST_TEST(has(th.out, "--model_checkpoint.top-k"));
  BOOST_TEST(has(th.out, "--dnn_binary.per-ring"));
  BOOST_TEST(has(th.out, "--metrics.threshold"));
  BOOST_TEST(files_in(dir.path).empty());
}

BOOST_AUTO_TEST_CASE(plugins_lists_every_plugin_with_its_file) {
  test::TempDir dir;
  auto r = run_torchfit("plugins", dir.path);
  BOOST_TEST(r.rc == 0);
  for (const char* p : {"early_stopping", "model_checkpoint", "progress_bar", "lr_monitor", "metrics", "dnn_binary",
                        "linear_regression"}) {
    BOOST_TEST(has(r.out, p));
    BOOST_TEST(has(r.out, std::string(p) + ".so"));
  }
  BOOST_TEST(has(r.out, "plugin ABI " + std::to_string(torchfit::kPluginAbiVersion)));
  auto t = run_torchfit("plugins" + kTestPlugins, dir.path);
  BOOST_TEST(has(t.out, "hook_recorder"));
  BOOST_TEST(has(t.out, "wrong_abi.so: was built for plugin ABI"));
}

BOOST_AUTO_TEST_CASE(main_job_ring_classifier) {
  test::TempDir dir;
  auto r = run_torchfit(kRing, dir.path);
  BOOST_REQUIRE(r.rc == 0);
  BOOST_TEST(has(r.err, "<<<<<< cpu is used >>>>>>"));
  BOOST_TEST(has(r.err, "Epoch 1/100 - "));  // not a terminal: one plain line per epoch
  BOOST_TEST(!has(r.err, "\r"));
  BOOST_TEST(has(r.err, "<<<<<< reach best val_acc : "));
  BOOST_TEST(has(r.out, "best val_acc: "));
  BOOST_TEST(has(r.out, "checkpoint.ini"));
  BOOST_TEST((files_in(dir.path) == std::set<std::string>{"checkpoint", "checkpoint.ini", "checkpoint.state", "history.csv"}));
  const auto csv = test::read_file(dir / "history.csv");
  BOOST_TEST(csv.substr(0, csv.find('\n')) == "epoch,train_loss,train_acc,lr,val_loss,val_acc,time");
  auto e = run_torchfit("evaluate --json", dir.path);  // model and seed come from checkpoint.ini
  BOOST_TEST(e.rc == 0);
  BOOST_TEST(json_value(e.out, "val_acc") >= 0.88);
  auto plain = run_torchfit("evaluate --model dnn_binary", dir.path);
  BOOST_TEST(has(plain.out, "val_loss="));
  BOOST_TEST(has(plain.out, " val_acc="));
  auto s = run_torchfit("summary --model dnn_binary", dir.path);
  BOOST_TEST(s.rc == 0);
  BOOST_TEST(has(s.out, "Total params: 61"));
}

BOOST_AUTO_TEST_CASE(main_job_linear_regression_and_predict) {
  test::TempDir dir;
  auto r = run_torchfit("train --model linear_regression --epochs 100 --patience 10", dir.path);
  BOOST_REQUIRE(r.rc == 0);
  test::write_file(dir / "points.csv", "x1,x2\n0,0\n1,0\n0,1\n");
  auto p = run_torchfit("predict --model linear_regression --input points.csv --output predictions.csv", dir.path);
  BOOST_REQUIRE(p.rc == 0);
  BOOST_TEST(has(p.out, "wrote 3 predictions"));
  auto table = torchfit::read_numeric_csv(dir / "predictions.csv");
  BOOST_TEST(table.header == std::vector<std::string>({"prediction"}), boost::test_tools::per_element());
  const double b = table.values[0][0].item<double>();
  BOOST_TEST(std::abs(b - 10) < 0.3);
  BOOST_TEST(std::abs(table.values[1][0].item<double>() - b - 2) < 0.3);
  BOOST_TEST(std::abs(table.values[2][0].item<double>() - b + 3) < 0.3);
  auto e = run_torchfit("evaluate --json", dir.path);
  BOOST_TEST(json_value(e.out, "val_mae") < 1.8);
}

BOOST_AUTO_TEST_CASE(config_file_and_resolved_settings_repeat_a_run) {
  test::TempDir dir;
  test::write_file(dir / "run.ini",
                   "# a short run\nmodel = dnn_binary\nepochs = 4\nmonitor = val_acc\n\n[early_stopping]\npatience = 2\n"
                   "[dnn_binary]\nper-ring = 300\n");
  auto r = run_torchfit("train --config run.ini --epochs 3 --history first.json -q", dir.path);
  BOOST_REQUIRE(r.rc == 0);
  BOOST_TEST(r.err.empty());  // quiet: no progress, no messages
  const auto json = test::read_file(dir / "first.json");
  BOOST_TEST(has(json, "\"epoch\": 3"));
  BOOST_TEST(!has(json, "\"epoch\": 4"));  // the command line wins over the file
  const auto ini = test::read_file(dir / "checkpoint.ini");
  BOOST_TEST(has(ini, "epochs = 3"));
  BOOST_TEST(ini.find("patience = 2", ini.find("[early_stopping]")) != std::string::npos);
  BOOST_TEST(has(ini, "[dnn_binary]\nper-ring = 300"));
  BOOST_TEST(has(ini, "lr = 0.001"));
  fs::copy_file(dir / "checkpoint.ini", dir / "again.ini");
  auto again = run_torchfit("train --config again.ini --history second.json -q", dir.path);
  BOOST_REQUIRE(again.rc == 0);
  auto strip_time = [](std::string s) {
    std::string out;
    for (size_t pos = 0, next; pos < s.size(); pos = next) {
      next = s.find(", \"time\"", pos);
      if (next == std::string::npos) return out + s.substr(pos);
      out += s.substr(pos, next - pos);
      next = s.find('}', next);
    }
    return out;
  };
  BOOST_TEST(strip_time(test::read_file(dir / "second.json")) == strip_time(json));
}

BOOST_AUTO_TEST_CASE(usage_errors_exit_2_with_suggestions_and_write_nothing) {
  test::TempDir dir;
  struct Case {
    std::string args, message;
  };
  test::write_file(dir / "unknown.ini", "epochs = 3\nepohcs = 4\n");
  test::write_file(dir / "malformed.ini", "epochs = 3\nthis line has no equals sign\n");
  test::write_file(dir / "section.ini", "[no_such_plugin]\nx = 1\n");
  const std::vector<Case> cases = {
      {"trian", "unknown command 'trian'; did you mean 'train'?"},
      {"", "no command given"},
      {"train", "'torchfit train' needs --model NAME (models: dnn_binary, linear_regression)"},
      {"train --model dnn_binar", "unknown model 'dnn_binar'; did you mean 'dnn_binary'?"},
      {"train --model dnn_binary --callbacks early_stoping", "did you mean 'early_stopping'?"},
      {"train --model dnn_binary --metrics acc,aucc", "unknown metric 'aucc'; did you mean"},
      {"train --model dnn_binary --epoch 3", "unknown option 'epoch' for 'train'; did you mean '--epochs'?"},
      {"train --model dnn_binary --early_stopping.patiense 3", "did you mean 'early_stopping.patience'?"},
      {"train --model dnn_binary --callbacks none --early_stopping.patience 3",
       "belongs to plugin 'early_stopping', which this command does not load"},
      {"train --model dnn_binary --mode avg", "--mode must be min, max or auto, got 'avg'"},
      {"train --model dnn_binary --epochs 0", "--epochs must be positive, got 0"},
      {"train --model dnn_binary --batch-size 0", "--batch-size must be positive, got 0"},
      {"train --model dnn_binary --epochs", "--epochs"},
      {"train --model dnn_binary --early_stopping.patience soon", "early_stopping.patience"},
      {"train --model dnn_binary --optimizer adamm", "unknown optimizer 'adamm'; did you mean 'adam'?"},
      {"train --model dnn_binary --history missing/h.csv", "folder 'missing', which does not exist"},
      {"train --model dnn_binary --config unknown.ini", "unknown.ini:2: unknown option 'epohcs'"},
      {"train --model dnn_binary --config malformed.ini", "malformed.ini:2: malformed line"},
      {"train --model dnn_binary --config section.ini", "section.ini:2: section [no_such_plugin] names no plugin"},
      {"train --model dnn_binary --config nothing.ini", "cannot read config file 'nothing.ini'"},
      {"train --model dnn_binary stray", "unexpected argument 'stray'"},
      {"train --model dnn_binary --device tpu", "device 'tpu' is not a device name"},
      {"train --model dnn_binary --callbacks wrong_abi" + kTestPlugins, "this torchfit speaks"},
      {"train --model dnn_binary --callbacks not_a_plugin" + kTestPlugins, "is not a torchfit plugin"},
      {"predict --model dnn_binary --input in.csv", "needs --output"},
  };
  for (const auto& c : cases) {
    auto r = run_torchfit(c.args, dir.path);
    BOOST_TEST_CONTEXT(c.args) {
      BOOST_TEST(r.rc == 2);
      BOOST_TEST(has(r.err, "torchfit: error: " ));
      BOOST_TEST(has(r.err, c.message));
      BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one clear line
    }
  }
  BOOST_TEST((files_in(dir.path) == std::set<std::string>{"malformed.ini", "section.ini", "unknown.ini"}));
}

BOOST_AUTO_TEST_CASE(runtime_errors_exit_1_and_keep_what_was_saved) {
  test::TempDir dir;
  // A monitor that is never logged: the error lists the keys that are.
  auto m = run_torchfit("train --model dnn_binary --epochs 3 --monitor val_accuracy", dir.path);
  BOOST_TEST(m.rc == 1);
  BOOST_TEST(has(m.err, "no value named 'val_accuracy' was logged; the logged values are: epoch, train_loss, train_acc, lr, val_loss, val_acc"));
  // A plugin that throws in epoch 2: epoch 1's checkpoint and history row survive, loadable.
  test::TempDir run;
  auto t = run_torchfit("train --model dnn_binary --epochs 5 --callbacks model_checkpoint,throwing" + kTestPlugins, run.path);
  BOOST_TEST(t.rc == 1);
  BOOST_TEST(has(t.err, "callback 'throwing' failed in on_epoch_end: deliberate failure in on_epoch_end"));
  BOOST_TEST(has(test::read_file(run / "history.csv"), "\n1,"));
  auto e = run_torchfit("evaluate", run.path);
  BOOST_TEST(e.rc == 0);
  for (const auto& f : files_in(run.path)) BOOST_TEST(f.find(".tmp") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_checkpoints_and_inputs_exit_1_with_the_reason) {
  test::TempDir dir;
  BOOST_REQUIRE(run_torchfit("train --model dnn_binary --epochs 2 -q", dir.path).rc == 0);
  const auto good = test::read_file(dir / "checkpoint");
  test::write_file(dir / "truncated", good.substr(0, good.size() / 2));
  test::write_file(dir / "noise", std::string(2000, '\x5a'));
  test::write_file(dir / "empty", "");
  BOOST_REQUIRE(run_torchfit("train --model linear_regression --epochs 2 -q --ckpt-path linear", dir.path).rc == 0);
  test::write_file(dir / "wide.csv", "1,2,3\n");
  test::write_file(dir / "text.csv", "x1,x2\n1,2\n3,abc\n");
  test::write_file(dir / "ragged.csv", "1,2\n3\n");
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"evaluate --model dnn_binary --ckpt-path missing", "checkpoint 'missing' does not exist"},
      {"evaluate --model dnn_binary --ckpt-path truncated", "is damaged: truncated"},
      {"evaluate --model dnn_binary --ckpt-path noise", "cannot be read"},
      {"evaluate --model dnn_binary --ckpt-path empty", "is empty"},
      {"evaluate --model dnn_binary --ckpt-path linear", "written for model 'linear_regression', not 'dnn_binary'"},
      {"predict --model dnn_binary --input wide.csv --output p.csv", "wide.csv:1: 3 columns, but the model takes 2"},
      {"predict --model dnn_binary --input text.csv --output p.csv", "text.csv:3:2 ('x2'): 'abc' is not a number"},
      {"predict --model dnn_binary --input ragged.csv --output p.csv", "ragged.csv:2: 1 columns, expected 2"},
      {"predict --model dnn_binary --input none.csv --output p.csv", "cannot read 'none.csv'"},
  };
  for (const auto& c : cases) {
    auto r = run_torchfit(c.args, dir.path);
    BOOST_TEST_CONTEXT(c.args) {
      BOOST_TEST(r.rc == 1);
      BOOST_TEST(has(r.err, c.message));
      BOOST_TEST(!has(r.err, "Exception raised from"));
    }
  }
  BOOST_TEST(!fs::exists(dir / "p.csv"));
  auto unwritable = run_torchfit("predict --model dnn_binary --input wide.csv --output missing/p.csv", dir.path);
  BOOST_TEST(unwritable.rc == 2);
  BOOST_TEST(has(unwritable.err, "which does not exist"));
}

BOOST_AUTO_TEST_CASE(predict_writes_probabilities_and_classes_for_the_rings) {
  test::TempDir dir;
  BOOST_REQUIRE(run_torchfit(kRing + " -q", dir.path).rc == 0);
  test::write_file(dir / "in.csv", "0,5\n8,0\n-5,0\n0,-8\n");
  auto r = run_torchfit("predict --input in.csv --output out.csv", dir.path);
  BOOST_REQUIRE(r.rc == 0);
  auto t = torchfit::read_numeric_csv(dir / "out.csv");
  BOOST_TEST(t.header == std::vector<std::string>({"probability", "class"}), boost::test_tools::per_element());
  BOOST_TEST(t.values.size(0) == 4);
  // Radius 5 is the positive ring, radius 8 the negative one.
  BOOST_TEST(t.values[0][1].item<double>() == 1.0);
  BOOST_TEST(t.values[1][1].item<double>() == 0.0);
  BOOST_TEST(t.values[2][1].item<double>() == 1.0);
  BOOST_TEST(t.values[3][1].item<double>() == 0.0);
}

BOOST_AUTO_TEST_CASE(hook_order_through_a_loaded_plugin) {
  test::TempDir dir;
  auto r = run_torchfit("train --model dnn_binary --dnn_binary.per-ring 100 --batch-size 70 --epochs 1 "
                    "--callbacks hook_recorder --hook_recorder.file hooks.txt" + kTestPlugins,
                    dir.path);
  BOOST_REQUIRE(r.rc == 0);
  const std::string batch = "on_train_batch_begin\non_before_backward\non_after_backward\non_before_optimizer_step\n"
                            "on_train_batch_end\n";
  const std::string expected = "on_fit_begin\non_epoch_begin\non_train_epoch_begin\n" + batch + batch +
                               "on_train_epoch_end\non_validation_begin\non_validation_batch_begin\n"
                               "on_validation_batch_end\non_validation_end\non_epoch_end\non_fit_end\n";
  BOOST_TEST(test::read_file(dir / "hooks.txt") == expected);
}

BOOST_AUTO_TEST_CASE(the_documented_plugin_adds_a_column_and_warns) {
  test::TempDir dir;
  auto r = run_torchfit("train --model dnn_binary --epochs 2 --callbacks loss_ratio --loss_ratio.warn-above 0.5" +
                            kTestPlugins,
                        dir.path);
  BOOST_REQUIRE(r.rc == 0);
  BOOST_TEST(has(r.err, "torchfit: warning: epoch 1: val_loss is "));
  const auto csv = test::read_file(dir / "history.csv");
  BOOST_TEST(csv.substr(0, csv.find('\n')) == "epoch,train_loss,train_acc,val_loss,val_acc,loss_ratio,time");
  auto bad = run_torchfit("train --model dnn_binary --callbacks loss_ratio --loss_ratio.warn-above -1" + kTestPlugins,
                          dir.path);
  BOOST_TEST(bad.rc == 2);
  BOOST_TEST(has(bad.err, "loss_ratio.warn-above must be positive"));
}
