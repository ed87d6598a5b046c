// The bridge to Python and plain LibTorch: torchfit export read by Python's torch.load and by a
// program linking LibTorch alone; weights saved by Python start a torchfit run; bad weight files
// are refused with one line and run nothing. Python's side is tests/cli/bridge.py, run with
// Debian's python3-torch (/usr/bin/python3).
#define BOOST_TEST_MODULE bridge
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <torchfit/weights.hpp>

#include "run.hpp"

namespace fs = std::filesystem;
namespace tf = torchfit;

namespace {

using test::has;
using test::run_torchfit;

// Runs bridge.py; its output and exit code.
test::Result python(const std::string& args, const fs::path& dir) {
  const std::string script = TORCHFIT_SOURCE_DIR "/tests/cli/bridge.py";
  const auto out = dir / ".py-out";
  const std::string cmd = "/usr/bin/python3 '" + script + "' " + args + " >'" + out.string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  test::Result r{test::exit_code(status), test::read_file(out), ""};
  fs::remove(out);
  BOOST_TEST_MESSAGE("bridge.py " << args << " -> " << r.rc << "\n" << r.out);
  return r;
}

// Every test needs Debian's python3-torch: without it they fail, saying so.
struct PythonTorch {
  PythonTorch() {
    BOOST_REQUIRE_MESSAGE(std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0,
                          "these tests need Debian's python3-torch (scripts/install-deps.sh installs it)");
  }
};

const std::string kTrain = "train --model dnn_binary --dnn_binary.per-ring 200 -q ";

}  // namespace

BOOST_FIXTURE_TEST_CASE(exports_and_pythons_weights_cross_both_ways, PythonTorch) {
  test::TempDir dir;
  BOOST_REQUIRE(python("write '" + dir.path.string() + "'", dir.path).rc == 0);
  BOOST_REQUIRE(run_torchfit(kTrain + "--epochs 4", dir.path).rc == 0);
  for (const char* format : {"libtorch", "state_dict", "safetensors"}) {
    auto e = run_torchfit(std::string("export --format ") + format + " --output w." + format, dir.path);
    BOOST_TEST(e.rc == 0, e.err);
    BOOST_TEST(has(e.out, std::string("wrote w.") + format + " (" + format + "): the 6 tensors of model dnn_binary"));
  }
  // The format from the file's name, when it says it.
  BOOST_TEST(run_torchfit("export --output again.safetensors", dir.path).rc == 0);
  BOOST_TEST(test::read_file(dir / "again.safetensors") == test::read_file(dir / "w.safetensors"));
  BOOST_TEST(run_torchfit("predict --data in.csv --output p.csv", dir.path).rc == 0);
  // A program that links LibTorch alone loads the libtorch export and predicts.
  std::string pairs;
  {
    std::ifstream in(dir / "in.csv");
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) pairs += " " + line.replace(line.find(','), 1, " ");
  }
  const int plain = std::system(("'" TORCHFIT_LOAD_EXPORTED "' '" + (dir / "w.libtorch").string() + "'" + pairs +
                                 " > '" + (dir / "le.txt").string() + "'")
                                    .c_str());
  BOOST_TEST(plain == 0);
  // Weights Python saved (an OrderedDict) start a run; lr ~0 leaves them as they were.
  test::TempDir from;
  for (const char* f : {"py_od.pt", "py_plain.pt", "py_nested.pt", "in.csv"}) fs::copy(dir / f, from / f);
  auto start = run_torchfit(kTrain + "--epochs 1 --callbacks model_checkpoint --optimizer sgd --momentum 0 --lr 1e-30 "
                                     "--init-weights py_od.pt --log-level info",
                            from.path);
  BOOST_TEST(start.rc == 0, start.err);
  BOOST_TEST(has(start.err + start.out, "--init-weights py_od.pt: loaded 6 of the net's 6 tensors"));
  BOOST_TEST(run_torchfit("export --format state_dict --output init.state_dict", from.path).rc == 0);
  fs::copy(from / "init.state_dict", dir / "init.state_dict");
  auto check = python("check '" + dir.path.string() + "'", dir.path);
  BOOST_TEST(check.rc == 0, check.out);
  BOOST_TEST(has(check.out, "ok"));
  // A plain dict, a dict that holds the state_dict (a training script's checkpoint), the exports.
  // A TorchScript module (torch.jit.script(net).save) gives its parameters too.
  for (const char* f : {"py_plain.pt", "py_nested.pt", "scripted.pt", "w.safetensors", "w.libtorch", "w.state_dict"}) {
    if (!fs::exists(from / f)) fs::copy(dir / f, from / f);
    auto r = run_torchfit(kTrain + "--epochs 1 --callbacks none --ckpt-path c --history h.csv --log-level info "
                                   "--init-weights-strict --init-weights " + f,
                          from.path);
    BOOST_TEST(r.rc == 0, f << ": " << r.err);
    BOOST_TEST(has(r.err + r.out, "loaded 6 of the net's 6 tensors"), f);
  }
}

BOOST_FIXTURE_TEST_CASE(every_type_round_trips_through_safetensors_and_state_dict_files, PythonTorch) {
  test::TempDir dir;
  tf::NamedTensors tensors;
  const std::vector<std::pair<std::string, torch::ScalarType>> types = {
      {"f64", torch::kDouble}, {"f32", torch::kFloat}, {"f16", torch::kHalf}, {"bf16", torch::kBFloat16},
      {"i64", torch::kLong},   {"i32", torch::kInt},   {"i16", torch::kShort}, {"i8", torch::kChar},
      {"u8", torch::kByte},    {"bool", torch::kBool}};
  for (const auto& [name, type] : types) tensors[name] = torch::arange(6).reshape({2, 3}).to(type);
  tensors["transposed"] = torch::arange(6, torch::kFloat).reshape({2, 3}).t();  // not contiguous
  tf::save_safetensors(tensors, dir / "all.safetensors", {{"note", "types"}});
  tf::save_state_dict(tensors, dir / "all.pt");
  auto r = python("dtypes '" + (dir / "all.safetensors").string() + "' '" + (dir / "all.pt").string() + "'", dir.path);
  BOOST_TEST(r.rc == 0, r.out);
  // torchfit's own readers give them back, exactly.
  for (const auto& read : {tf::read_safetensors(dir / "all.safetensors"), tf::read_state_dict(dir / "all.pt"),
                           tf::read_weights(dir / "all.safetensors"), tf::read_weights(dir / "all.pt")}) {
    BOOST_REQUIRE_EQUAL(read.size(), tensors.size());
    for (const auto& [name, t] : tensors) {
      BOOST_TEST(read.at(name).scalar_type() == t.scalar_type(), name);
      BOOST_TEST(torch::equal(read.at(name), t), name);
    }
  }
}

BOOST_FIXTURE_TEST_CASE(bad_weight_files_get_one_line_and_run_nothing, PythonTorch) {
  test::TempDir dir;
  BOOST_REQUIRE(python("write '" + dir.path.string() + "'", dir.path).rc == 0);
  test::write_file(dir / "text.txt", "these are not weights\n");
  {
    // A state_dict cut short: its zip directory is gone.
    const auto whole = test::read_file(dir / "py_od.pt");
    test::write_file(dir / "cut.pt", whole.substr(0, whole.size() / 2));
  }
  struct Case {
    std::string args, message;
    int rc;
  };
  const std::vector<Case> cases = {
      {"--init-weights evil.pt",
       "'evil.pt' is not a PyTorch state_dict torchfit can read: it asks for the Python global 'posix.system', which a "
       "state_dict never needs: refused, nothing was run",
       1},
      {"--init-weights text.txt", "'text.txt' is none of the weight formats torchfit reads", 1},
      {"--init-weights cut.pt", "'cut.pt' is a damaged zip archive: no zip directory at its end (truncated?)", 1},
      {"--init-weights missing.pt", "weights file 'missing.pt' does not exist", 1},
      {"--init-weights wrong_shape.pt",
       "weights file 'wrong_shape.pt': tensor '0.weight' has shape [5, 2] in the file, [4, 2] in the net", 1},
      {"--init-weights other_names.pt",
       "weights file 'other_names.pt': no tensor name matches the net's (loaded 0 of the net's 6 tensors; missing "
       "from the file (kept as initialized): 0.weight, 0.bias, 2.weight, 2.bias, 4.weight, 4.bias; in the file but "
       "not the net (ignored): encoder.weight); is it a checkpoint of another model?",
       1},
      {"--init-weights extra.pt --init-weights-strict",
       "weights file 'extra.pt' does not match the net exactly (loaded 6 of the net's 6 tensors; in the file but not "
       "the net (ignored): head.weight)",
       1},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.args) {
      auto r = run_torchfit(kTrain + "--epochs 1 " + c.args, dir.path);
      BOOST_TEST(r.rc == c.rc);
      BOOST_TEST(has(r.err, c.message));
      BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one clear line
      BOOST_TEST(!fs::exists(dir / "checkpoint.ini"));                 // nothing written
      BOOST_TEST(!fs::exists(dir / "history.csv"));
    }
  }
  BOOST_TEST(!fs::exists(dir / "pwned"));  // the pickle's os.system never ran
  // Export: a format that does not exist, no format at all, a checkpoint that is missing.
  auto f = run_torchfit("export --model dnn_binary --format onnx --output x.onnx", dir.path);
  BOOST_TEST(f.rc == 2);
  BOOST_TEST(has(f.err, "--format must be libtorch, state_dict, safetensors or torchscript (the torchscript model's module), got 'onnx'"));
  auto none = run_torchfit("export --model dnn_binary --output x.pt", dir.path);
  BOOST_TEST(none.rc == 2);
  BOOST_TEST(has(none.err, "'torchfit export' needs --format libtorch, state_dict, safetensors or torchscript"));
  auto missing = run_torchfit("export --model dnn_binary --output x.safetensors", dir.path);
  BOOST_TEST(missing.rc == 1);
  BOOST_TEST(has(missing.err, "checkpoint 'checkpoint' does not exist"));
  BOOST_TEST(!fs::exists(dir / "x.safetensors"));
}

BOOST_FIXTURE_TEST_CASE(a_module_scripted_in_python_trains_resumes_and_goes_back_to_python, PythonTorch) {
  test::TempDir dir;
  BOOST_REQUIRE(python("script '" + dir.path.string() + "'", dir.path).rc == 0);
  const std::string train = "train --model torchscript --torchscript.file net.pt --data train.csv --target label -q ";
  auto t = run_torchfit(train + "--epochs 4", dir.path);
  BOOST_REQUIRE_MESSAGE(t.rc == 0, t.err);
  // Its task came from the module's `task` attribute: binary, so acc and auc are logged.
  const auto history = test::read_file(dir / "history.csv");
  BOOST_TEST(has(history, "epoch,train_loss,train_acc,train_auc,"));
  BOOST_TEST(run_torchfit("evaluate", dir.path).rc == 0);
  BOOST_TEST(run_torchfit("predict --data in.csv --output p.csv", dir.path).rc == 0);
  auto e = run_torchfit("export --format torchscript --output trained.pt", dir.path);
  BOOST_TEST(e.rc == 0, e.err);
  auto check = python("check_script '" + dir.path.string() + "'", dir.path);
  BOOST_TEST(check.rc == 0, check.out);
  // summary: the module's submodules by class, their parameters.
  auto s = run_torchfit("summary --model torchscript --torchscript.file net.pt --data train.csv --target label", dir.path);
  BOOST_TEST(has(s.out, "BatchNorm1d-3"));
  BOOST_TEST(has(s.out, "Total params: 97"));
  // Two epochs, then --resume to four: the same run, to the bit.
  test::TempDir half;
  for (const char* f : {"net.pt", "train.csv"}) fs::copy(dir / f, half / f);
  BOOST_REQUIRE(run_torchfit(train + "--epochs 2", half.path).rc == 0);
  auto r = run_torchfit("train --resume --epochs 4 -q", half.path);
  BOOST_TEST(r.rc == 0, r.err);
  // (every column but the last, time)
  auto without_time = [](const std::string& csv) {
    std::string out;
    std::istringstream in(csv);
    for (std::string line; std::getline(in, line);) out += line.substr(0, line.rfind(',')) + "\n";
    return out;
  };
  BOOST_TEST(without_time(test::read_file(half / "history.csv")) == without_time(history));
  // A C++ model has no TorchScript form.
  BOOST_REQUIRE(run_torchfit("train --model dnn_binary --dnn_binary.per-ring 100 --epochs 1 -q --ckpt-path ring", half.path).rc == 0);
  auto c = run_torchfit("export --ckpt-path ring --format torchscript --output ring.pt", half.path);
  BOOST_TEST(c.rc == 2);
  BOOST_TEST(has(c.err, "this model's net is written in C++ and has no TorchScript form"));
}

BOOST_FIXTURE_TEST_CASE(a_torchscript_file_that_cannot_train_gets_one_line, PythonTorch) {
  test::TempDir dir;
  BOOST_REQUIRE(python("script '" + dir.path.string() + "'", dir.path).rc == 0);
  test::write_file(dir / "junk.pt", "not a module\n");
  struct Case {
    std::string args, message;
    int rc;
  };
  const std::string data = " --data train.csv --target label --epochs 1";
  const std::vector<Case> cases = {
      {"--torchscript.file two.pt" + data,
       "the TorchScript module in 'two.pt' takes 2 inputs (forward(x, y)), but the data's batches have 1", 1},
      {"--torchscript.file junk.pt" + data, "'junk.pt' is not a TorchScript module torchfit can load", 1},
      {"--torchscript.file none.pt" + data, "TorchScript module 'none.pt' (--torchscript.file) does not exist", 1},
      {"--torchscript.file net.pt --torchscript.loss msee" + data, "unknown loss 'msee' for the torchscript model", 2},
      {"--torchscript.file net.pt --torchscript.task binaryy" + data, "unknown --task 'binaryy'; did you mean 'binary'?", 2},
      {data, "the torchscript model needs --torchscript.file FILE.pt", 2},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.args) {
      auto r = run_torchfit("train --model torchscript " + c.args, dir.path);
      BOOST_TEST(r.rc == c.rc);
      BOOST_TEST(has(r.err, c.message));
      BOOST_TEST(!fs::exists(dir / "checkpoint.ini"));
    }
  }
}

BOOST_AUTO_TEST_CASE(frozen_parameters_stay_and_groups_train_at_their_own_rate) {
  test::TempDir dir;
  const std::string ring = "train --model dnn_binary --dnn_binary.per-ring 200 -q ";
  BOOST_REQUIRE(run_torchfit(ring + "--epochs 2 --callbacks model_checkpoint --ckpt-path base --history base.csv",
                             dir.path).rc == 0);
  // Fine-tune from it with the first layer and the second's weight fixed, the last layer at its own rate.
  const std::string tune = ring + "--init-weights base --freeze 0,2.weight --lr-groups 4=0.01 "
                                  "--callbacks model_checkpoint,lr_monitor --model_checkpoint.save-best-only false ";
  auto t = run_torchfit(tune + "--epochs 3 --ckpt-path ft --history ft.csv", dir.path);
  BOOST_REQUIRE_MESSAGE(t.rc == 0, t.err);
  const auto before = tf::read_checkpoint_weights(dir / "base"), after = tf::read_checkpoint_weights(dir / "ft");
  for (const char* fixed : {"0.weight", "0.bias", "2.weight"}) BOOST_TEST(torch::equal(before.at(fixed), after.at(fixed)), fixed);
  for (const char* moved : {"2.bias", "4.weight", "4.bias"}) BOOST_TEST(!torch::equal(before.at(moved), after.at(moved)), moved);
  const auto history = test::read_file(dir / "ft.csv");
  BOOST_TEST(has(history, ",lr,lr_1,"));  // two groups, two rates
  BOOST_TEST(has(history, ",0.001,0.01,"));
  // One epoch, then --resume to three: the same run.
  auto first = run_torchfit(tune + "--epochs 1 --ckpt-path half --history half.csv", dir.path);
  BOOST_REQUIRE(first.rc == 0);
  auto rest = run_torchfit("train --resume --ckpt-path half --epochs 3 -q", dir.path);
  BOOST_TEST(rest.rc == 0, rest.err);
  const auto resumed = tf::read_checkpoint_weights(dir / "half");
  for (const auto& [name, t] : after) BOOST_TEST(torch::equal(resumed.at(name), t), name);
  // A pattern that matches nothing, a rate that is not one.
  auto none = run_torchfit(ring + "--freeze encoder", dir.path);
  BOOST_TEST(none.rc == 2);
  BOOST_TEST(has(none.err, "'encoder' matches none of the net's parameters (0.weight, 0.bias"));
  auto bad = run_torchfit(ring + "--lr-groups 4=-1", dir.path);
  BOOST_TEST(bad.rc == 2);
  BOOST_TEST(has(bad.err, "--lr-groups takes PATTERN=LR pairs with a positive finite LR"));
}

BOOST_AUTO_TEST_CASE(unfreeze_releases_the_frozen_parameters_with_a_warm_up_and_resumes_exactly) {
  test::TempDir dir;
  BOOST_REQUIRE(run_torchfit("train --model dnn_binary --dnn_binary.per-ring 200 --epochs 1 -q --callbacks "
                             "model_checkpoint --ckpt-path base --history base.csv",
                             dir.path).rc == 0);
  const std::string run = "train --model dnn_binary --dnn_binary.per-ring 200 -q --init-weights base --freeze 0,2 "
                          "--callbacks unfreeze,lr_monitor,model_checkpoint --model_checkpoint.save-best-only false "
                          "--unfreeze.epoch 3 --unfreeze.warmup-epochs 2 ";
  BOOST_REQUIRE(run_torchfit(run + "--epochs 2 --ckpt-path two --history two.csv", dir.path).rc == 0);
  auto whole = run_torchfit(run + "--epochs 5 --ckpt-path five --history five.csv", dir.path);
  BOOST_REQUIRE_MESSAGE(whole.rc == 0, whole.err);
  const auto base = tf::read_checkpoint_weights(dir / "base"), two = tf::read_checkpoint_weights(dir / "two"),
             five = tf::read_checkpoint_weights(dir / "five");
  // Epochs 1 and 2 trained the last layer alone; from epoch 3 the first ones move too.
  for (const char* frozen : {"0.weight", "0.bias", "2.weight", "2.bias"}) {
    BOOST_TEST(torch::equal(base.at(frozen), two.at(frozen)), frozen);
    BOOST_TEST(!torch::equal(two.at(frozen), five.at(frozen)), frozen);
  }
  BOOST_TEST(!torch::equal(base.at("4.weight"), two.at("4.weight")));
  // The released group's rate: a third, two thirds, then the full rate (lr_1 logged while it differs).
  const auto history = test::read_file(dir / "five.csv");
  BOOST_TEST(has(history, ",time,lr_1\n"));
  BOOST_TEST(has(history, ",0.0003333333333333333\n4,"));
  BOOST_TEST(has(history, ",0.0006666666666666666\n5,"));
  // Stopped in the warm-up (after epoch 3) and resumed: the same weights as the whole run.
  BOOST_REQUIRE(run_torchfit(run + "--epochs 3 --ckpt-path half --history half.csv", dir.path).rc == 0);
  auto rest = run_torchfit("train --resume --ckpt-path half --epochs 5 -q", dir.path);
  BOOST_TEST(rest.rc == 0, rest.err);
  const auto resumed = tf::read_checkpoint_weights(dir / "half");
  for (const auto& [name, t] : five) BOOST_TEST(torch::equal(resumed.at(name), t), name);
  // Nothing frozen: nothing to release.
  auto none = run_torchfit("train --model dnn_binary --epochs 1 --callbacks unfreeze", dir.path);
  BOOST_TEST(none.rc == 1);
  BOOST_TEST(has(none.err, "unfreeze has nothing to release: no parameter is frozen"));
}
