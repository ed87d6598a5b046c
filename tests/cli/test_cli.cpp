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
const std::string kBrokenPlugins = " --plugin-dir '" TORCHFIT_TEST_BROKEN_DIR "'";

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
  // A model's options are shown without the prefix, which they also accept.
  BOOST_TEST(has(th.out, "model plugin 'dnn_binary' (--<option> or --dnn_binary.<option>"));
  BOOST_TEST(has(th.out, "  --per-ring arg (=2000)"));
  BOOST_TEST(has(th.out, "--data FILE.csv"));
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

namespace {

// Changes the noop plugin's description in an index, so that a listing made from that index
// shows it (the runner, which loads the plugins, never would).
void mark_index(const fs::path& index) {
  auto text = test::read_file(index);
  const std::string description = "Test: does nothing in every hook";
  const auto at = text.find(description);
  BOOST_TEST_REQUIRE(at != std::string::npos);
  test::write_file(index, text.replace(at, description.size(), "(from the index)"));
}

}  // namespace

BOOST_AUTO_TEST_CASE(plugins_listing_comes_from_the_users_cache_until_a_plugin_file_changes) {
  test::TempDir dir;
  const std::string env = "XDG_CACHE_HOME='" + (dir / "cache").string() + "'";
  fs::create_directories(dir / "extra");
  fs::copy_file(TORCHFIT_TEST_PLUGIN_DIR "/noop.so", dir / "extra" / "noop.so");
  const std::string args = "plugins --plugin-dir '" + (dir / "extra").string() + "'";
  const auto cold = run_torchfit(args, dir.path, env);
  BOOST_TEST(cold.rc == 0);
  BOOST_TEST(has(cold.out, "noop"));
  // Only the extra folder needs the cache: the standard one has its own index (from the build).
  const auto cached = files_in(dir / "cache" / "torchfit");
  BOOST_TEST_REQUIRE(cached.size() == 1u);
  const auto cache_file = dir / "cache" / "torchfit" / *cached.begin();
  BOOST_TEST(run_torchfit(args, dir.path, env).out == cold.out);

  // The next run answers from the cache ...
  mark_index(cache_file);
  BOOST_TEST(has(run_torchfit(args, dir.path, env).out, "(from the index)"));
  // ... but not with other options, which change the listing,
  BOOST_TEST(!has(run_torchfit(args + " --log-level warn", dir.path, env).out, "(from the index)"));
  // ... and not once a plugin is added, replaced or removed.
  fs::copy_file(TORCHFIT_TEST_PLUGIN_DIR "/hook_recorder.so", dir / "extra" / "hook_recorder.so");
  auto added = run_torchfit(args, dir.path, env);
  BOOST_TEST(!has(added.out, "(from the index)"));
  BOOST_TEST(has(added.out, "hook_recorder"));
  mark_index(cache_file);
  fs::remove(dir / "extra" / "hook_recorder.so");
  auto removed = run_torchfit(args, dir.path, env);
  BOOST_TEST(!has(removed.out, "(from the index)"));
  BOOST_TEST(!has(removed.out, "hook_recorder"));
  BOOST_TEST(removed.out == cold.out);
  mark_index(cache_file);
  fs::copy_file(TORCHFIT_TEST_PLUGIN_DIR "/noop.so", dir / "extra" / "noop.so", fs::copy_options::overwrite_existing);
  BOOST_TEST(run_torchfit(args, dir.path, env).out == cold.out);
  // A damaged cache file is ignored and replaced.
  test::write_file(cache_file, "torchfit plugin index 1\ngarbage");
  BOOST_TEST(run_torchfit(args, dir.path, env).out == cold.out);
  BOOST_TEST(run_torchfit(args, dir.path, env).out == cold.out);
  // No cache folder at all (no HOME, no XDG_CACHE_HOME): listed as always.
  BOOST_TEST(run_torchfit(args, dir.path, "env -u HOME -u XDG_CACHE_HOME").out == cold.out);
}

BOOST_AUTO_TEST_CASE(a_tampered_index_lists_but_never_loads) {
  // The index only answers `torchfit plugins`; every command that makes a plugin finds it by
  // loading the folder's files. An index that names a library elsewhere (here one whose
  // describe() throws, which loaded would say so) gets it neither loaded nor found.
  test::TempDir dir;
  const std::string env = "XDG_CACHE_HOME='" + (dir / "cache").string() + "'";
  fs::create_directories(dir / "extra");
  fs::create_directories(dir / "evil");
  fs::copy_file(TORCHFIT_TEST_PLUGIN_DIR "/noop.so", dir / "extra" / "noop.so");
  fs::copy_file(TORCHFIT_TEST_BROKEN_DIR "/exploding_describe.so", dir / "evil" / "evil.so");
  const std::string folder = " --plugin-dir '" + (dir / "extra").string() + "'";
  BOOST_REQUIRE(run_torchfit("plugins --update-index" + folder, dir.path, env).rc == 0);
  const auto index = dir / "extra" / "plugins.index";
  auto text = test::read_file(index);
  const auto at = text.find("callback\tnoop\t");
  BOOST_TEST_REQUIRE(at != std::string::npos);
  text.insert(at, "callback\tevil\t1.0\tinjected\t../evil/evil.so\n");
  const auto count = text.find("\nplugins 1\n");
  BOOST_TEST_REQUIRE(count != std::string::npos);
  text.replace(count, 11, "\nplugins 2\n");
  test::write_file(index, text);
  auto t = run_torchfit("train --model dnn_binary --callbacks evil" + folder, dir.path, env);
  BOOST_TEST(t.rc == 2);
  BOOST_TEST(has(t.err, "unknown callback 'evil'"), t.err);
  BOOST_TEST(!has(t.err + t.out, "exploded"));
  auto p = run_torchfit("plugins" + folder, dir.path, env);
  BOOST_TEST(has(p.out, "injected"));  // the listing came from the tampered index ...
  BOOST_TEST(!has(p.err + p.out, "exploded"));  // ... and loaded nothing
}

BOOST_AUTO_TEST_CASE(plugins_update_index_writes_each_folders_own_index) {
  test::TempDir dir;
  const std::string env = "XDG_CACHE_HOME='" + (dir / "cache").string() + "'";
  // The build indexed the standard folder: listing it alone needs no cache.
  const auto standard = fs::weakly_canonical(test::standard_plugin_dirs().front());
  BOOST_TEST(fs::exists(standard / "plugins.index"));
  BOOST_TEST(run_torchfit("plugins", dir.path, env).rc == 0);
  BOOST_TEST(!fs::exists(dir / "cache" / "torchfit"));

  const auto extra = dir / "extra";
  fs::create_directories(extra);
  for (const char* p : {"noop.so", "wrong_abi.so"}) fs::copy_file(fs::path(TORCHFIT_TEST_PLUGIN_DIR) / p, extra / p);
  const std::string args = "plugins --plugin-dir '" + extra.string() + "'";
  const auto cold = run_torchfit(args, dir.path, "env -u HOME -u XDG_CACHE_HOME");  // nothing cached
  BOOST_TEST(has(cold.out, "wrong_abi.so: was built for plugin ABI"));

  const auto u = run_torchfit(args + " --update-index", dir.path, env);
  BOOST_TEST(u.rc == 0);
  BOOST_TEST(has(u.out, "wrote " + (extra / "plugins.index").string() + " (1 plugin)"));
  BOOST_TEST(has(u.out, "up to date: " + (standard / "plugins.index").string()));  // not rewritten
  // The same listing from the folder's own index (refused plugins included), nothing cached.
  BOOST_TEST(run_torchfit(args, dir.path, env).out == cold.out);
  BOOST_TEST(!fs::exists(dir / "cache" / "torchfit"));
  mark_index(extra / "plugins.index");
  BOOST_TEST(has(run_torchfit(args, dir.path, env).out, "(from the index)"));
  // The index moves with its folder.
  fs::rename(extra, dir / "moved");
  const auto moved = run_torchfit("plugins --plugin-dir '" + (dir / "moved").string() + "'", dir.path, env);
  BOOST_TEST(has(moved.out, "(from the index)"));
  BOOST_TEST(has(moved.out, (dir / "moved" / "noop.so").string()));
  BOOST_TEST(has(moved.out, (dir / "moved" / "wrong_abi.so").string() + ": was built for plugin ABI"));
  // A stale index is not used: the plugins are loaded as without one.
  fs::remove(dir / "moved" / "wrong_abi.so");
  const auto stale = run_torchfit("plugins --plugin-dir '" + (dir / "moved").string() + "'", dir.path, env);
  BOOST_TEST(!has(stale.out, "(from the index)"));
  BOOST_TEST(!has(stale.out, "wrong_abi"));
  // An index that cannot be written is an error that says which; the other folders are done.
  fs::remove(dir / "moved" / "plugins.index");
  fs::create_directories(dir / "moved" / "plugins.index" / "in-the-way");
  const auto blocked = run_torchfit("plugins --update-index --plugin-dir '" + (dir / "moved").string() + "'",
                                    dir.path, env);
  BOOST_TEST(blocked.rc == 1);
  BOOST_TEST(has(blocked.err, "cannot write " + (dir / "moved" / "plugins.index").string()));
  BOOST_TEST(has(blocked.out, "up to date: " + (standard / "plugins.index").string()));
}

BOOST_AUTO_TEST_CASE(main_job_ring_classifier) {
  test::TempDir dir;
  auto r = run_torchfit(kRing, dir.path);
  BOOST_REQUIRE(r.rc == 0);
  // --device auto: the GPU where there is one (scripts/cuda-check.sh runs this suite there too)
  BOOST_TEST(has(r.err, torch::cuda::is_available() ? "<<<<<< cuda is used >>>>>>" : "<<<<<< cpu is used >>>>>>"));
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
  auto p = run_torchfit("predict --model linear_regression --data points.csv --output predictions.csv", dir.path);
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

BOOST_AUTO_TEST_CASE(the_end_of_a_run_lists_every_file_its_callbacks_wrote) {
  // Each callback says what it wrote (Callback::output_files); the runner knows no plugin names.
  // --quiet leaves out the progress display even when it is listed.
  test::TempDir dir;
  auto r = run_torchfit("train --model dnn_binary --dnn_binary.per-ring 100 --epochs 3 -q "
                        "--callbacks model_checkpoint,csv_logger,plot,event_log,progress_bar "
                        "--model_checkpoint.save-last true --model_checkpoint.top-k 2",
                        dir.path);
  BOOST_REQUIRE(r.rc == 0);
  BOOST_TEST(r.err.empty(), r.err);  // no progress lines
  const auto info = torchfit::read_checkpoint_info(dir / "checkpoint");
  const std::string best = "  checkpoint           weights of epoch " + torchfit::format_value(info.logs.at("epoch")) +
                           " (val_loss " + torchfit::format_value(info.logs.at("val_loss")) + ")\n";
  BOOST_TEST(has(r.out, "files:\n" + best), r.out);
  for (const char* line : {"  checkpoint.last      latest weights, of epoch 3 (val_loss ",
                           "  checkpoint.epochNNN  weights of the 2 best epochs by val_loss\n",
                           "  training_log.csv     history as CSV (csv_logger)\n",
                           "  history.svg          training curves, SVG (plot)\n",
                           "  events.jsonl         events, JSON Lines (event_log)\n",
                           "  history.csv          history, 3 epochs\n"}) {
    BOOST_TEST(has(r.out, line), line);
  }
  BOOST_TEST(has(test::read_file(dir / "checkpoint.ini"), "callbacks = model_checkpoint,csv_logger,plot,event_log\n"));
}

BOOST_AUTO_TEST_CASE(threads_sets_the_kernels_thread_count) {
  test::TempDir dir;
  auto r = run_torchfit("train --model dnn_binary --epochs 1 --callbacks model_checkpoint --threads 3 --log-level debug", dir.path);
  BOOST_REQUIRE_MESSAGE(r.rc == 0, r.err);
  BOOST_TEST(has(r.out + r.err, "3 intra-op threads for the net's CPU kernels"));
  // OMP_NUM_THREADS, LibTorch's own setting, wins over auto (what --nproc sets for each process).
  auto e = run_torchfit("evaluate --threads auto --log-level debug", dir.path, "OMP_NUM_THREADS=1");
  BOOST_REQUIRE_MESSAGE(e.rc == 0, e.err);
  BOOST_TEST(!has(e.out + e.err, "intra-op thread"));
}

BOOST_AUTO_TEST_CASE(any_number_of_workers_gives_the_same_run) {
  test::TempDir a, b;
  BOOST_REQUIRE(run_torchfit("train --model dnn_binary --epochs 3 --quiet --workers 0", a.path).rc == 0);
  BOOST_REQUIRE(run_torchfit("train --model dnn_binary --epochs 3 --quiet --workers 3", b.path).rc == 0);
  const auto ha = torchfit::read_numeric_csv(a / "history.csv"), hb = torchfit::read_numeric_csv(b / "history.csv");
  BOOST_REQUIRE(ha.header == hb.header);
  const auto time = std::find(ha.header.begin(), ha.header.end(), "time") - ha.header.begin();
  auto without_time = [&](const torch::Tensor& v) {
    return torch::cat({v.narrow(1, 0, time), v.narrow(1, time + 1, v.size(1) - time - 1)}, 1);
  };
  BOOST_TEST(torch::equal(without_time(ha.values), without_time(hb.values)));
  BOOST_TEST(has(test::read_file(b / "checkpoint.ini"), "workers = 3"));
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
  fs::create_directory(dir / "a_folder");
  test::write_file(dir / "section.ini", "[no_such_plugin]\nx = 1\n");
  const std::vector<Case> cases = {
      {"trian", "unknown command 'trian'; did you mean 'train'?"},
      {"", "no command given"},
      {"train", "'torchfit train' needs --model NAME (models: cnn, dnn_binary, linear_regression, mlp, torchscript)"},
      {"train --model dnn_binar", "unknown model 'dnn_binar'; did you mean 'dnn_binary'?"},
      {"train --model dnn_binary --callbacks early_stoping", "did you mean 'early_stopping'?"},
      {"train --model dnn_binary --metrics acc,aucc", "unknown metric 'aucc'; did you mean"},
      {"train --model dnn_binary --epoch 3", "unknown option 'epoch' for 'train'; did you mean '--epochs'?"},
      {"train --model dnn_binary --frobnicate 3", "unknown option 'frobnicate' for 'train'. See: torchfit train --help"},
      {"train --model dnn_binary --workers many", "--workers takes auto or a number of threads from 0 to 64, got 'many'"},
      {"train --model dnn_binary --threads 0", "--threads takes auto or a number of threads from 1 to 1024, got '0'"},
      {"evaluate --model dnn_binary --threads 2x", "--threads takes auto or a number of threads from 1 to 1024, got '2x'"},
      {"train --model dnn_binary --early_stopping.patiense 3", "did you mean 'early_stopping.patience'?"},
      {"train --model dnn_binary --callbacks none --early_stopping.patience 3",
       "belongs to plugin 'early_stopping', which this command does not load"},
      {"train --model dnn_binary --mode avg", "--mode must be min, max or auto, got 'avg'"},
      // A word option (one_of) names the words and the closest one.
      {"train --model dnn_binary --callbacks lr_monitor --lr_monitor.logging-interval stpe",
       "--lr_monitor.logging-interval must be epoch or step, got 'stpe' (did you mean 'step'?)"},
      {"train --model dnn_binary --early_stopping.mode mix", "--early_stopping.mode must be min, max or auto, got 'mix'"},
      {"train --model dnn_binary --epochs 0", "--epochs must be a positive number, got 0"},
      {"train --model dnn_binary --batch-size 0", "--batch-size must be a positive number, got 0"},
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
      {"predict --model dnn_binary --data in.csv", "needs --output"},
      {"train --model dnn_binary --precision bf16", "got 'bf16'; did you mean 'bf16-mixed'?"},
      {"train --model dnn_binary --precision 16-mixed --device cpu", "16-mixed precision needs a CUDA device"},
      // Values that are not finite or out of range are refused by name.
      {"train --model dnn_binary --lr inf", "--lr must be a positive number up to 3.40282e+38 (float32's largest), got inf"},
      {"train --model dnn_binary --lr nan", "--lr must be a positive number up to 3.40282e+38 (float32's largest), got nan"},
      {"train --model dnn_binary --lr 1e308", "--lr must be a positive number up to 3.40282e+38 (float32's largest), got 1e308"},
      {"train --model dnn_binary --nproc 0", "--nproc must be between 1 and 1024, got 0"},
      // Files that could only fail at the end of the run are refused before it starts.
      {"train --model dnn_binary --history ''", "history file '' names no file"},
      {"train --model dnn_binary --history .", "history file '.' names no file"},
      {"train --model dnn_binary --history a_folder", "history file 'a_folder' is a folder"},
      {"train --model dnn_binary --patience -1", "--patience must be a whole number of 0 or more, got -1"},
      {"train --model dnn_binary --nan_guard.lr-factor 1.5 --callbacks nan_guard",
       "--nan_guard.lr-factor must be between 0 and 1 (exclusive), got 1.5"},
      {"train --model dnn_binary --metrics acc --metrics.threshold nan", "--metrics.threshold must be between 0 and 1"},
      {"train --model dnn_binary --early_stopping.divergence-threshold -inf", "must be a finite number, got -inf"},
      {"train --model dnn_binary --clip-grad-norm nan", "--clip-grad-norm must be a finite number of 0 or more"},
      {"train --model dnn_binary --clip-grad-value nan", "--clip-grad-value must be a finite number of 0 or more"},
      {"train --model dnn_binary --momentum nan", "--momentum must be a finite number of 0 or more, got nan"},
      {"train --model dnn_binary --weight-decay inf", "--weight-decay must be a finite number of 0 or more"},
      {"train --model dnn_binary --early_stopping.min-delta nan", "early_stopping.min-delta must be a finite number"},
      {"train --model dnn_binary --val-split -0.1", "--val-split must be between 0 and 1"},
      {"train --model dnn_binary --val-split 0", "--val-split must be between 0 and 1"},
      {"train --model dnn_binary --val-split 1", "--val-split must be between 0 and 1"},
      {"train --model dnn_binary --val-split 1.5", "--val-split must be between 0 and 1"},
      {"train --model dnn_binary --val-split nan", "--val-split must be between 0 and 1"},
      {"train --model dnn_binary --val-split 0.3", "--val-split does not apply: model dnn_binary's own data"},
      // A monitor that no epoch logs is refused before epoch 1, listing the keys that are.
      {"train --model dnn_binary --monitor val_accuracy",
       "callback 'early_stopping' monitors 'val_accuracy', which no epoch of this fit logs (did you mean 'val_acc'?). "
       "The logged values are: epoch, train_loss, train_acc, val_loss, val_acc, lr, time"},
      {"train --model dnn_binary --callbacks reduce_lr_on_plateau --reduce_lr_on_plateau.monitor lr",
       "callback 'reduce_lr_on_plateau' monitors 'lr', which no epoch of this fit logs"},
      // ... and one that is logged but whose direction nothing knows needs a mode: no guess.
      {"train --model dnn_binary --callbacks lr_monitor,reduce_lr_on_plateau --reduce_lr_on_plateau.monitor lr",
       "reduce_lr_on_plateau watches 'lr' with mode auto, but nothing in this fit says whether a higher or a lower lr "
       "is better (the loss and the metrics say it for their values): set --reduce_lr_on_plateau.mode to min or max"},
      // Two schedules would each set the rate: refused, whatever the order.
      {"train --model dnn_binary --callbacks step_lr,progress_bar,cosine_lr",
       "two learning-rate schedules in one fit, 'step_lr' and 'cosine_lr': each sets the optimizer's rate"},
      // A broken plugin asked for is refused by name and file.
      {"train --model dnn_binary --callbacks exploding_describe" + kBrokenPlugins,
       "exploding_describe.so) failed to describe itself: describe() exploded"},
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
  BOOST_TEST((files_in(dir.path) == std::set<std::string>{"a_folder", "malformed.ini", "section.ini", "unknown.ini"}));
}

BOOST_AUTO_TEST_CASE(runtime_errors_exit_1_and_keep_what_was_saved) {
  test::TempDir dir;
  // A plugin that throws in epoch 2: epoch 1's checkpoint and history row survive, loadable.
  test::TempDir run;
  auto t = run_torchfit("train --model dnn_binary --epochs 5 --callbacks model_checkpoint,throwing" + kTestPlugins, run.path);
  BOOST_TEST(t.rc == 1);
  BOOST_TEST(has(t.err, "callback 'throwing' failed in on_epoch_end: deliberate failure in on_epoch_end"));
  BOOST_TEST(has(test::read_file(run / "history.csv"), "\n1,"));
  auto e = run_torchfit("evaluate" + kTestPlugins, run.path);
  BOOST_TEST(e.rc == 0, e.err);
  for (const auto& f : files_in(run.path)) BOOST_TEST(f.find(".tmp") == std::string::npos);
  // The epoch whose on_epoch_end failed keeps its row: the checkpoint saved before the failing
  // callback ran and the history agree on how far the run got.
  const auto history = test::read_file(run / "history.csv");
  BOOST_TEST(std::count(history.begin(), history.end(), '\n') == 3);  // header, epochs 1 and 2
  BOOST_TEST(has(test::read_file(run / "checkpoint.ini"), "model = dnn_binary"));
  // A factory that fails at run time is a runtime error (1), not a usage error (2).
  test::TempDir factory;
  auto f = run_torchfit("train --model dnn_binary --callbacks throwing --throwing.hook create" + kTestPlugins,
                        factory.path);
  BOOST_TEST(f.rc == 1);
  BOOST_TEST(has(f.err, "callback plugin 'throwing' could not be created: cannot open /dev/nothing-here"));
}

BOOST_AUTO_TEST_CASE(a_refused_run_leaves_an_earlier_runs_files_as_they_were) {
  // The settings file is written once the run has passed its checks: one refused before epoch 1
  // on the same checkpoint path does not pair the earlier checkpoint with its own settings.
  test::TempDir dir;
  BOOST_REQUIRE(run_torchfit("train --model dnn_binary --dnn_binary.per-ring 100 --epochs 2 -q", dir.path).rc == 0);
  const auto before = files_in(dir.path);
  const auto settings = test::read_file(dir / "checkpoint.ini");
  auto r = run_torchfit("train --model dnn_binary --dnn_binary.per-ring 100 --epochs 3 --lr 0.5 --monitor val_auc",
                        dir.path);
  BOOST_TEST(r.rc == 2);
  BOOST_TEST(has(r.err, "monitors 'val_auc', which no epoch of this fit logs"));
  BOOST_TEST(test::read_file(dir / "checkpoint.ini") == settings);
  BOOST_TEST(files_in(dir.path) == before);
  // Monitoring a value a callback logs (lr_monitor's lr), its direction given, passes the check.
  auto lr = run_torchfit("train --model dnn_binary --dnn_binary.per-ring 100 --epochs 2 -q "
                         "--callbacks reduce_lr_on_plateau,lr_monitor --reduce_lr_on_plateau.monitor lr "
                         "--reduce_lr_on_plateau.mode min",
                         dir.path);
  BOOST_TEST(lr.rc == 0, lr.err);
}

BOOST_AUTO_TEST_CASE(a_diverged_run_fails_with_its_reason) {
  // Lightning's check_finite, Keras' TerminateOnNaN: NaN is no result.
  test::TempDir dir;
  auto r = run_torchfit("train --model dnn_binary --dnn_binary.per-ring 200 --epochs 5 --lr 1e30", dir.path);
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(has(r.err, "the run diverged"));
  BOOST_TEST(!has(r.out, "stopped: completed"));
  // Turned off, the run goes on to its end: the user asked for it.
  auto off = run_torchfit("train --model dnn_binary --dnn_binary.per-ring 200 --epochs 2 --lr 1e30 "
                          "--early_stopping.check-finite false -q",
                          dir.path);
  BOOST_TEST(off.rc == 0);
  // Without early_stopping the run goes to its end, and still fails, its files saved.
  test::TempDir bare;
  auto none = run_torchfit("train --model dnn_binary --dnn_binary.per-ring 200 --epochs 2 --lr 1e30 --callbacks none",
                           bare.path);
  BOOST_TEST(none.rc == 1);
  BOOST_TEST(has(none.err, "at epoch 2: the run diverged"), none.err);
  BOOST_TEST(!has(none.out, "stopped: completed"));
  BOOST_TEST(fs::exists(bare / "history.csv"));
  BOOST_TEST(fs::exists(bare / "checkpoint.state"));
}

BOOST_AUTO_TEST_CASE(broken_plugins_on_the_path_do_not_break_commands_that_do_not_use_them) {
  // A truncated plugin, a text file named .so, a library with a missing dependency, half a
  // plugin, a describe() that throws: listed with the reason, and every other command works.
  test::TempDir dir;
  test::TempDir folder;
  const auto whole = test::read_file(fs::path(TORCHFIT_TEST_PLUGIN_DIR) / "noop.so");
  test::write_file(folder / "grad_norm.so", whole.substr(0, whole.size() / 2));
  test::write_file(folder / "x.so", std::string(4096, '#'));
  const std::string dirs = kBrokenPlugins + " --plugin-dir '" + folder.path.string() + "'";
  auto p = run_torchfit("plugins" + dirs, dir.path);
  BOOST_TEST(p.rc == 0);
  BOOST_TEST(has(p.out, "grad_norm.so: cannot be loaded: the file is truncated or damaged"));
  BOOST_TEST(has(p.out, "x.so: cannot be loaded: "));
  BOOST_TEST(has(p.out, "invalid ELF header"));
  BOOST_TEST(has(p.out, "missing_dep.so: cannot be loaded: libtorchfit_test_dep.so: cannot open shared object file"));
  BOOST_TEST(has(p.out, "abi_only.so: exports torchfit_plugin_abi but no torchfit_plugin_info"));
  BOOST_TEST(has(p.out, "exploding_describe.so: failed to describe itself: describe() exploded"));
  BOOST_TEST(has(p.out, "early_stopping"));
  auto t = run_torchfit("train --model dnn_binary --dnn_binary.per-ring 100 --epochs 1 -q" + dirs, dir.path);
  BOOST_TEST(t.rc == 0, t.err);
  auto g = run_torchfit("train --model dnn_binary --callbacks grad_norm" + dirs, dir.path);
  BOOST_TEST(g.rc == 2);
  BOOST_TEST(has(g.err, "grad_norm.so) cannot be loaded: the file is truncated or damaged"));
}

BOOST_AUTO_TEST_CASE(files_in_a_run_folder_never_choose_where_code_is_loaded_from) {
  // torch.load(weights_only=True) is the anchor: evaluating a run someone hands you runs none
  // of their code. checkpoint.ini is read implicitly; its plugin-dir is not followed.
  test::TempDir run;
  BOOST_REQUIRE(run_torchfit("train --model dnn_binary --dnn_binary.per-ring 100 --epochs 1 -q", run.path).rc == 0);
  fs::create_directory(run / "evil");
  fs::copy_file(fs::path(TORCHFIT_TEST_BROKEN_DIR) / "exploding_describe.so", run / "evil" / "evil.so");
  test::write_file(run / "checkpoint.ini", "plugin-dir = evil\n" + test::read_file(run / "checkpoint.ini"));
  auto e = run_torchfit("evaluate", run.path);
  BOOST_TEST(e.rc == 0, e.err);
  BOOST_TEST(!has(e.err, "exploded"));
  BOOST_TEST(has(e.err, "not loading plugins from 'evil'"));
  BOOST_TEST(has(e.err, "Give --plugin-dir evil if you trust that folder"));
  // Named by the user, the folder is searched: its broken plugin is listed, and skipped.
  auto named = run_torchfit("evaluate --plugin-dir evil", run.path);
  BOOST_TEST(named.rc == 0, named.err);
  BOOST_TEST(!has(named.err, "not loading plugins"));
  auto config = run_torchfit("evaluate --config checkpoint.ini", run.path);
  BOOST_TEST(config.rc == 0, config.err);
  BOOST_TEST(!has(config.err, "not loading plugins"));
  // Nor where files are written: an output outside the folder is refused, nothing written.
  test::TempDir outside;
  test::write_file(run / "in.csv", "x1,x2\n0.5,0.5\n");
  const auto ini = test::read_file(run / "checkpoint.ini");
  const auto target = (outside / "elsewhere.csv").string();
  test::write_file(run / "checkpoint.ini", "output = " + target + "\n" + ini);
  auto p = run_torchfit("predict --data in.csv", run.path);
  BOOST_TEST(p.rc == 2);
  BOOST_TEST(has(p.err, "sets output to '" + target + "', outside this folder and the run's folder"), p.err);
  BOOST_TEST(has(p.err, "Give --output " + target + " on the command line if you mean it"));
  BOOST_TEST(!fs::exists(target));
  test::write_file(run / "checkpoint.ini", "output = ../escaped.csv\n" + ini);
  BOOST_TEST(run_torchfit("predict --data in.csv", run.path).rc == 2);
  BOOST_TEST(!fs::exists(run.path.parent_path() / "escaped.csv"));
  // Inside the folder, or named on the command line, it is written.
  test::write_file(run / "checkpoint.ini", "output = mine.csv\n" + ini);
  auto inside = run_torchfit("predict --data in.csv", run.path);
  BOOST_TEST(inside.rc == 0, inside.err);
  BOOST_TEST(fs::exists(run / "mine.csv"));
  test::write_file(run / "checkpoint.ini", "output = " + target + "\n" + ini);
  auto named_output = run_torchfit("predict --data in.csv --output '" + target + "'", run.path);
  BOOST_TEST(named_output.rc == 0, named_output.err);
  BOOST_TEST(fs::exists(target));
}

BOOST_AUTO_TEST_CASE(a_state_file_never_chooses_where_a_resume_writes) {
  // A run whose history went to another folder, handed over as its folder: resuming it there
  // does not write into that other folder unless the command line names it again.
  test::TempDir run;
  test::TempDir elsewhere;
  const auto history = (elsewhere / "history.csv").string();
  BOOST_REQUIRE(run_torchfit("train --model dnn_binary --dnn_binary.per-ring 100 --epochs 1 -q --history '" +
                                 history + "'",
                             run.path)
                    .rc == 0);
  fs::remove(history);
  auto r = run_torchfit("train --resume --epochs 2 -q", run.path);
  BOOST_TEST(r.rc == 2);
  BOOST_TEST(has(r.err, "checkpoint.state (the run's settings):"), r.err);
  BOOST_TEST(has(r.err, "sets history to '" + history + "', outside this folder and the run's folder"));
  BOOST_TEST(!fs::exists(history));
  auto again = run_torchfit("train --resume --epochs 2 -q --history '" + history + "'", run.path);
  BOOST_TEST(again.rc == 0, again.err);
  BOOST_TEST(has(test::read_file(history), "\n2,"));
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
      {"predict --model dnn_binary --data wide.csv --output p.csv", "wide.csv:1: 3 columns, but the model takes 2"},
      {"predict --model dnn_binary --data text.csv --output p.csv", "text.csv:3:2 ('x2'): 'abc' is not a number"},
      {"predict --model dnn_binary --data ragged.csv --output p.csv", "ragged.csv:2: 1 columns, expected 2"},
      {"predict --model dnn_binary --data none.csv --output p.csv", "cannot read 'none.csv'"},
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
  auto unwritable = run_torchfit("predict --model dnn_binary --data wide.csv --output missing/p.csv", dir.path);
  BOOST_TEST(unwritable.rc == 2);
  BOOST_TEST(has(unwritable.err, "which does not exist"));
}

BOOST_AUTO_TEST_CASE(predict_writes_probabilities_and_classes_for_the_rings) {
  test::TempDir dir;
  BOOST_REQUIRE(run_torchfit(kRing + " -q", dir.path).rc == 0);
  test::write_file(dir / "in.csv", "0,5\n8,0\n-5,0\n0,-8\n");
  auto r = run_torchfit("predict --data in.csv --output out.csv", dir.path);
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
  BOOST_TEST(has(bad.err, "--loss_ratio.warn-above must be a positive number, got -1"));
}

// ---- the user's CSV data: the mlp model through the runner ---------------------------------

namespace {

// Rows "f1,f2,f3,label" of two blobs, features on different scales; the label column sits
// between the features to show that --target picks it by name.
std::string blobs_csv(int64_t rows, uint64_t seed, bool with_target = true) {
  auto gen = torchfit::compat::make_generator(seed);
  auto y = (torch::rand({rows}, gen) < 0.5).to(torch::kFloat);
  auto x = torch::randn({rows, 3}, gen) + 2.5 * y.unsqueeze(1);
  x = x * torch::tensor({1.0f, 100.0f, 0.01f}) + torch::tensor({0.0f, 1000.0f, 5.0f});
  std::ostringstream out;
  out << (with_target ? "f1,label,f2,f3\n" : "f1,f2,f3\n");
  for (int64_t r = 0; r < rows; ++r) {
    out << x[r][0].item<float>() << ",";
    if (with_target) out << y[r].item<float>() << ",";
    out << x[r][1].item<float>() << "," << x[r][2].item<float>() << "\n";
  }
  return out.str();
}

}  // namespace

BOOST_AUTO_TEST_CASE(mlp_trains_evaluates_and_predicts_on_csv_files) {
  test::TempDir dir;
  test::write_file(dir / "train.csv", blobs_csv(600, 1));
  test::write_file(dir / "test.csv", blobs_csv(200, 2));
  auto t = run_torchfit("train --model mlp --data train.csv --target label --task binary --hidden 16 --standardize "
                        "--epochs 15 -q", dir.path);
  BOOST_REQUIRE(t.rc == 0);
  BOOST_TEST(has(t.out, "train_auc"));  // the task's default metrics: acc and auc
  const auto ini = test::read_file(dir / "checkpoint.ini");
  // The data settings and what the model learned are recorded, for evaluate and predict.
  BOOST_TEST(has(ini, "data = train.csv\n"));
  BOOST_TEST(has(ini, "target = label\n"));
  BOOST_TEST(has(ini, "[mlp]\ntask = binary\n"));
  BOOST_TEST(has(ini, "inputs = 3\n"));
  BOOST_TEST(has(ini, "standardize = true\n"));

  // evaluate without --data: the run's validation split (120 rows held out by --val-split 0.2),
  // so its loss is the checkpoint's; with --data: every row of that file.
  auto e = run_torchfit("evaluate --json", dir.path);
  BOOST_REQUIRE(e.rc == 0);
  const auto info = torchfit::read_checkpoint_info(dir / "checkpoint");
  BOOST_TEST(json_value(e.out, "val_loss") == *info.logs.get("val_loss"), boost::test_tools::tolerance(1e-5));
  auto held_out = run_torchfit("evaluate --json --data test.csv", dir.path);
  BOOST_REQUIRE(held_out.rc == 0);
  BOOST_TEST(json_value(held_out.out, "val_acc") >= 0.9);
  BOOST_TEST(json_value(held_out.out, "val_auc") >= 0.95);

  // predict: one row per input row; the target column may be there or not.
  auto p = run_torchfit("predict --data test.csv --output with_target.csv", dir.path);
  BOOST_REQUIRE(p.rc == 0);
  BOOST_TEST(has(p.out, "wrote 200 predictions (probability, class)"));
  test::write_file(dir / "features.csv", blobs_csv(200, 2, false));
  BOOST_REQUIRE(run_torchfit("predict --data features.csv --output without.csv", dir.path).rc == 0);
  BOOST_TEST(test::read_file(dir / "with_target.csv") == test::read_file(dir / "without.csv"));
  const auto predicted = torchfit::read_numeric_csv(dir / "without.csv");
  torchfit::CsvOptions o;
  o.target = "label";
  const auto truth = torchfit::read_csv(dir / "test.csv", o).targets.reshape({-1}).to(torch::kDouble);
  const double acc = (predicted.values.select(1, 1) == truth).to(torch::kDouble).mean().item<double>();
  BOOST_TEST(acc == json_value(held_out.out, "val_acc"), boost::test_tools::tolerance(1e-6));

  // The model's options work with or without its prefix; the command line wins over the ini.
  auto again = run_torchfit("train --model mlp --data train.csv --target 2 --mlp.task binary --hidden none "
                            "--val-data test.csv --epochs 2 -q --ckpt-path linear", dir.path);
  BOOST_REQUIRE(again.rc == 0);
  BOOST_TEST(has(test::read_file(dir / "linear.ini"), "hidden = none\n"));
  BOOST_TEST(has(test::read_file(dir / "linear.ini"), "val-data = test.csv\n"));
}

BOOST_AUTO_TEST_CASE(mlp_multiclass_and_regression_through_the_runner) {
  test::TempDir dir;
  std::ostringstream classes, numbers;
  classes << "x;y;kind\n";
  numbers << "# y = 2 a - 3 b + 10\na,b,y\n";
  auto gen = torchfit::compat::make_generator(7);
  auto noise = torch::randn({600, 2}, gen);
  for (int64_t i = 0; i < 600; ++i) {
    const int64_t k = i % 3;
    classes << 3 * std::cos(2.1 * k) + noise[i][0].item<float>() << ";" << 3 * std::sin(2.1 * k) + noise[i][1].item<float>()
            << ";" << k << "\n";
    const double a = (i % 20) / 2.0 - 5, b = (i / 20) / 3.0 - 5;
    numbers << a << "," << b << "," << 2 * a - 3 * b + 10 + 0.1 * noise[i][0].item<float>() << "\n";
  }
  test::write_file(dir / "classes.csv", classes.str());
  test::write_file(dir / "numbers.csv", numbers.str());
  auto m = run_torchfit("train --model mlp --data classes.csv --delimiter semicolon --target kind --task multiclass "
                        "--epochs 10 -q --ckpt-path m", dir.path);
  BOOST_REQUIRE(m.rc == 0);
  BOOST_TEST(has(test::read_file(dir / "m.ini"), "classes = 3\n"));
  BOOST_TEST(json_value(run_torchfit("evaluate --json --ckpt-path m", dir.path).out, "val_accuracy") >= 0.9);
  auto p = run_torchfit("predict --ckpt-path m --data classes.csv --output p.csv", dir.path);
  BOOST_REQUIRE(p.rc == 0);
  BOOST_TEST(has(p.out, "(probability_0, probability_1, probability_2, class)"));

  auto r = run_torchfit("train --model mlp --data numbers.csv --target y --task regression --standardize --lr 0.01 "
                        "--epochs 60 -q --ckpt-path r", dir.path);
  BOOST_REQUIRE(r.rc == 0);
  const auto e = run_torchfit("evaluate --json --ckpt-path r", dir.path).out;
  BOOST_TEST(json_value(e, "val_r2") >= 0.97);
  test::write_file(dir / "ab.csv", "a,b\n0,0\n1,0\n");
  BOOST_REQUIRE(run_torchfit("predict --ckpt-path r --data ab.csv --output ab_out.csv", dir.path).rc == 0);
  const auto v = torchfit::read_numeric_csv(dir / "ab_out.csv").values;
  BOOST_TEST(std::abs(v[0][0].item<double>() - 10) < 1.0);
  BOOST_TEST(std::abs(v[1][0].item<double>() - v[0][0].item<double>() - 2) < 1.0);
}

BOOST_AUTO_TEST_CASE(bad_data_gets_a_clear_error_and_writes_nothing) {
  test::TempDir dir;
  test::write_file(dir / "train.csv", blobs_csv(100, 1));
  test::write_file(dir / "three.csv", "f1,label,f2,f3\n1,2,3,4\n");
  struct Case {
    std::string args, message;
    int rc;
  };
  const std::string mlp = "train --model mlp --data train.csv --task binary";
  const std::vector<Case> cases = {
      {mlp, "--data needs --target COLUMN: the column to predict, a header name or a 1-based index (train.csv begins: "
            "f1,label,f2,f3)", 2},
      {mlp + " --target lable", "'train.csv' has no column named 'lable' (the target); did you mean 'label'?", 1},
      {mlp + " --target label --val-data three.csv", "'three.csv', data row 1: target 2 is not 0 or 1", 1},
      {mlp + " --target label --val-split 1", "--val-split must be between 0 and 1", 2},
      {"train --model mlp --data train.csv --target label", "the mlp model needs --task: binary", 2},
      {"train --model mlp --task binary", "the mlp model has no data of its own: give --data FILE.csv", 2},
      {"train --model dnn_binary --target label", "--target goes with --data FILE.csv", 2},
      {"train --model dnn_binary --data train.csv --target label", "this model takes 2 features per sample, the data "
                                                                  "has 3; choose the columns with --features", 1},
      {mlp + " --target label --mlp.task binary", "--task and --mlp.task are the same option; give it once", 2},
      {mlp + " --target label --delimiter colon", "--delimiter must be comma, semicolon", 2},
  };
  for (const auto& c : cases) {
    auto r = run_torchfit(c.args + " --epochs 1", dir.path);
    BOOST_TEST_CONTEXT(c.args) {
      BOOST_TEST(r.rc == c.rc);
      BOOST_TEST(has(r.err, c.message));
      BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
  }
  BOOST_TEST((files_in(dir.path) == std::set<std::string>{"three.csv", "train.csv"}));
  auto summary = run_torchfit("summary --model mlp --task binary", dir.path);
  BOOST_TEST(summary.rc == 2);
  BOOST_TEST(has(summary.err, "the mlp model has no data of its own"));
  auto p = run_torchfit("predict --model mlp --task binary --data train.csv --output p.csv --ckpt-path none", dir.path);
  BOOST_TEST(p.rc == 2);
  BOOST_TEST(has(p.err, "learns its input width from the data"));
}

namespace {
// `n` 8x8 byte images: class 0 bright above, class 1 bright below (a flip keeps the class), with noise.
void write_image_set(const fs::path& dir, const std::string& prefix, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto labels = torch::arange(n, torch::kLong).remainder(2);
  auto rows = torch::arange(8).view({1, 8, 1}).expand({n, 8, 8});
  auto bright = torch::where(labels.view({-1, 1, 1}) == 0, rows < 4, rows >= 4);
  auto images = (bright.to(torch::kFloat) * 150 + torch::rand({n, 8, 8}) * 100).to(torch::kByte);
  torchfit::write_idx(dir / (prefix + "-images.gz"), images, true);
  torchfit::write_idx(dir / (prefix + "-labels"), labels.to(torch::kByte));
}
}  // namespace

BOOST_AUTO_TEST_CASE(cnn_trains_evaluates_and_predicts_on_idx_images) {
  test::TempDir dir;
  write_image_set(dir.path, "train", 160, 1);
  write_image_set(dir.path, "test", 40, 2);
  const std::string data = " --dataset idx --idx.images train-images.gz --idx.labels train-labels --idx.classes up,down";
  auto t = run_torchfit("train --model cnn --cnn.widths 4 --cnn.hidden 8 --epochs 8 --batch-size 16 --lr 0.01 -q" + data +
                            " --idx.flip 0.5 --idx.crop-padding 1 --idx.mean 0.5 --idx.std 0.3",
                        dir.path);
  BOOST_REQUIRE_MESSAGE(t.rc == 0, t.err);
  const auto ini = test::read_file(dir / "checkpoint.ini");
  // The dataset, its options and the image shape the cnn learned are recorded for evaluate and predict.
  BOOST_TEST(has(ini, "dataset = idx\n"));
  BOOST_TEST(has(ini, "[idx]\n"));
  BOOST_TEST(has(ini, "crop-padding = 1\n"));
  BOOST_TEST(has(ini, "channels = 1\nheight = 8\nwidth = 8\nclasses = 2\n"));
  // evaluate: the run's validation split by default (the checkpoint's own loss), all of a named set otherwise.
  auto e = run_torchfit("evaluate --json", dir.path);
  BOOST_REQUIRE_MESSAGE(e.rc == 0, e.err);
  const auto info = torchfit::read_checkpoint_info(dir / "checkpoint");
  BOOST_TEST(json_value(e.out, "val_loss") == *info.logs.get("val_loss"), boost::test_tools::tolerance(1e-5));
  auto test_set = run_torchfit("evaluate --json --idx.images test-images.gz --idx.labels test-labels", dir.path);
  BOOST_REQUIRE_MESSAGE(test_set.rc == 0, test_set.err);
  BOOST_TEST(json_value(test_set.out, "val_accuracy") >= 0.9);
  // A classifier's evaluate also gives the per-class table and the confusion matrix, by class name.
  BOOST_TEST(has(test_set.out, "\"per_class\": [{\"class\": \"up\", \"support\": "));
  BOOST_TEST(has(test_set.out, "\"confusion_matrix\": [["));
  BOOST_TEST(!has(test_set.out, "val_confusion_matrix"));  // added by evaluate, not a metric of the run
  auto table = run_torchfit("evaluate --idx.images test-images.gz --idx.labels test-labels", dir.path);
  BOOST_REQUIRE_MESSAGE(table.rc == 0, table.err);
  BOOST_TEST(has(table.out, "val_accuracy="));
  BOOST_TEST(has(table.out, "macro average"));
  BOOST_TEST(has(table.out, "confusion matrix (rows: true class, columns: predicted class)"));
  BOOST_TEST(has(table.out, "\ndown "));
  // predict: one row per image, class and probabilities; labels are not needed.
  auto p = run_torchfit("predict --idx.images test-images.gz --output p.csv", dir.path);
  BOOST_REQUIRE_MESSAGE(p.rc == 0, p.err);
  BOOST_TEST(has(p.out, "wrote 40 predictions (class, probability_0, probability_1)"));
  const auto rows = torchfit::read_numeric_csv(dir / "p.csv");
  BOOST_TEST(rows.values.size(0) == 40);
  BOOST_TEST(torch::allclose(rows.values.narrow(1, 1, 2).sum(1).to(torch::kDouble), torch::ones({40}, torch::kDouble), 1e-5));
  // summary: exact shapes from the dataset.
  auto s = run_torchfit("summary --model cnn --cnn.widths 4 --cnn.hidden 8" + data, dir.path);
  BOOST_REQUIRE_MESSAGE(s.rc == 0, s.err);
  BOOST_TEST(has(s.out, "[-1, 4, 4, 4]"));
  BOOST_TEST(!has(s.out, "?"));
}

BOOST_AUTO_TEST_CASE(bad_image_data_gets_one_line_naming_the_file) {
  test::TempDir dir;
  write_image_set(dir.path, "train", 20, 1);
  torchfit::write_idx(dir / "five-labels", torch::zeros({5}, torch::kByte));
  test::write_file(dir / "short.gz", std::string("\x00\x00\x08\x03", 4));
  struct Case {
    std::string args, message;
    int rc;
  };
  const std::string cnn = "train --model cnn --epochs 1 --dataset idx";
  const std::vector<Case> cases = {
      {cnn + " --idx.images train-images.gz --idx.labels five-labels", "are 20 but the labels", 1},
      {cnn + " --idx.images short.gz --idx.labels five-labels", "short.gz", 1},
      {cnn + " --idx.images none.gz --idx.labels five-labels", "none.gz", 1},
      {cnn + " --idx.images train-images.gz", "need their labels: give --idx.labels FILE", 2},
      {cnn + " --idx.images train-images.gz --idx.labels train-labels --cnn.widths 8,8,8,8",
       "too small for the cnn's 4 pooling blocks", 1},
      {cnn + " --idx.images train-images.gz --idx.labels train-labels --target x", "--target is an option of the csv dataset", 2},
      {"train --model cnn --epochs 1 --dataset fashion_mnist --fashion_mnist.folder nowhere",
       "apt-get install dataset-fashion-mnist", 1},
      {"train --model cnn --epochs 1", "the cnn model has no data of its own: give --dataset fashion_mnist", 2},
      {"train --model cnn --dataset imagenet", "unknown dataset 'imagenet'", 2},
  };
  for (const auto& c : cases) {
    auto r = run_torchfit(c.args, dir.path);
    BOOST_TEST_CONTEXT(c.args) {
      BOOST_TEST(r.rc == c.rc);
      BOOST_TEST(has(r.err, c.message));
      BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
  }
  BOOST_TEST((files_in(dir.path) == std::set<std::string>{"five-labels", "short.gz", "train-images.gz", "train-labels"}));
}
