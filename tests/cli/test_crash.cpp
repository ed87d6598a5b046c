// Crashes and signals on a real `torchfit train` process: SIGKILL at chosen points and at
// random instants, SIGINT / SIGTERM, a full disk, bad resumes. A resumed run must give the
// same history rows and the same weights, bit for bit, as the run never interrupted.
#define BOOST_TEST_MODULE crash
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <random>
#include <thread>

#include "run.hpp"

namespace tf = torchfit;
namespace fs = std::filesystem;
using test::has;
using test::run_torchfit;

namespace {

// 600 samples, 6 epochs of 5 batches (batch 100 on the 420-sample training split), a state
// every 3 steps, the best and the last weights written.
std::string run_args(int epochs) {
  return "train --model dnn_binary --dnn_binary.per-ring 300 --epochs " + std::to_string(epochs) +
         " --patience 100 --metrics acc,auc --callbacks early_stopping,model_checkpoint,lr_monitor,kill_switch"
         " --model_checkpoint.save-last true --state-every-steps 3 -q --plugin-dir '" TORCHFIT_TEST_PLUGIN_DIR "'";
}
const std::string kRun = run_args(6);
// Plugin folders are given again: the state's settings do not choose where code is loaded from.
const std::string kResume = "train --resume -q --plugin-dir '" TORCHFIT_TEST_PLUGIN_DIR "'";

// history.csv without its time column.
std::string rows_without_time(const fs::path& csv) {
  std::istringstream in(test::read_file(csv));
  std::string line, out;
  int time_column = -1;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream s(line);
    for (std::string c; std::getline(s, c, ',');) cells.push_back(c);
    if (time_column < 0) {
      for (size_t i = 0; i < cells.size(); ++i) {
        if (cells[i] == "time") time_column = static_cast<int>(i);
      }
    }
    for (size_t i = 0; i < cells.size(); ++i) {
      if (static_cast<int>(i) != time_column) out += cells[i] + ",";
    }
    out += "\n";
  }
  return out;
}

tf::WeightSnapshot weights(const fs::path& file) {
  auto& reg = test::registry();
  auto net = reg.make_model("dnn_binary", reg.parse_options(reg.find("dnn_binary", tf::PluginKind::Model), {}))
                 ->make_net();
  tf::load_weights(net, file);
  return tf::snapshot_weights(net);
}

void check_same_result(const fs::path& dir, const fs::path& reference) {
  BOOST_TEST(rows_without_time(dir / "history.csv") == rows_without_time(reference / "history.csv"));
  for (const char* file : {"checkpoint", "checkpoint.last"}) {
    const auto a = weights(dir / file), b = weights(reference / file);
    BOOST_REQUIRE_EQUAL(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      BOOST_TEST_INFO(file << ": " << a[i].first);
      BOOST_TEST(torch::equal(a[i].second, b[i].second));
    }
  }
  // No temporary file survives a finished run.
  for (const auto& name : test::files_in(dir)) BOOST_TEST(name.find(".tmp-") == std::string::npos, name);
}

// The run never interrupted, once per executable.
const fs::path& reference() {
  static test::TempDir dir;
  static bool done = [] {
    const auto r = run_torchfit(kRun, dir.path);
    BOOST_REQUIRE_EQUAL(r.rc, 0);
    return true;
  }();
  (void)done;
  return dir.path;
}

// Killed with SIGKILL at `where` (kill_switch syntax), then resumed until it completes.
void kill_and_resume(const std::string& env) {
  const auto& ref = reference();
  test::TempDir dir;
  const auto killed = run_torchfit(kRun, dir.path, env);
  BOOST_REQUIRE_EQUAL(killed.rc, 128 + SIGKILL);
  const auto resumed = run_torchfit(kResume, dir.path);
  BOOST_REQUIRE_EQUAL(resumed.rc, 0);
  check_same_result(dir.path, ref);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sigkill)

BOOST_AUTO_TEST_CASE(in_the_middle_of_an_epoch) { kill_and_resume("TORCHFIT_TEST_KILL=train_batch:2:3"); }
BOOST_AUTO_TEST_CASE(at_an_epoch_boundary) { kill_and_resume("TORCHFIT_TEST_KILL=epoch_begin:4"); }
BOOST_AUTO_TEST_CASE(during_validation) { kill_and_resume("TORCHFIT_TEST_KILL=validation_batch:3:0"); }
BOOST_AUTO_TEST_CASE(during_a_state_save) {
  // The 5th state save is killed after its temporary file is written, before the rename.
  kill_and_resume("TORCHFIT_TEST_CRASH_IN_SAVE=checkpoint.state:5");
}
BOOST_AUTO_TEST_CASE(during_a_checkpoint_save) {
  kill_and_resume("TORCHFIT_TEST_CRASH_IN_SAVE=checkpoint.last:3");
}

BOOST_AUTO_TEST_CASE(at_random_instants) {
  // Killed from outside after a random delay, again and again, until a run completes.
  const auto& ref = reference();
  test::TempDir dir;
  std::mt19937 rng(std::random_device{}());
  bool started = false;
  int kills = 0;
  for (int attempt = 0; attempt < 12; ++attempt) {
    const std::string args = started && fs::exists(dir / "checkpoint.state") ? kResume : kRun;
    started = true;
    const pid_t pid = test::start_torchfit(args, dir.path);
    const int delay_ms = 500 + static_cast<int>(rng() % 1500);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(pid, SIGKILL);
    const auto r = test::finish(pid, dir.path);
    BOOST_TEST_MESSAGE("attempt " << attempt << ": killed after " << delay_ms << " ms -> " << r.rc);
    if (r.rc == 0) break;
    BOOST_REQUIRE_EQUAL(r.rc, 128 + SIGKILL);
    ++kills;
  }
  // Finish whatever is left without killing it.
  const auto last = run_torchfit(fs::exists(dir / "checkpoint.state") ? kResume : kRun, dir.path);
  BOOST_REQUIRE(last.rc == 0);
  BOOST_TEST_MESSAGE(kills << " kills");
  check_same_result(dir.path, ref);
}

BOOST_AUTO_TEST_CASE(after_early_stopping) {
  // Early stopping ends this run; killed in the epoch end where it decides to stop (before that
  // epoch's state is saved), the resume trains that epoch again, stops the same way, and a
  // second resume says there is nothing to do.
  const std::string args =
      "train --model dnn_binary --dnn_binary.per-ring 300 --epochs 40 --patience 2 --early_stopping.min-delta 0.01"
      " --callbacks early_stopping,model_checkpoint,lr_monitor,kill_switch -q --plugin-dir '" TORCHFIT_TEST_PLUGIN_DIR "'";
  test::TempDir ref, dir;
  const auto full = run_torchfit(args, ref.path);
  BOOST_REQUIRE_EQUAL(full.rc, 0);
  BOOST_REQUIRE(has(full.out, "stopped: early stopping"));
  const auto last_epoch = tf::read_state_info(ref / "checkpoint.state").epochs_done;
  BOOST_REQUIRE(last_epoch < 40);
  const auto killed =
      run_torchfit(args, dir.path, "TORCHFIT_TEST_KILL=epoch_end:" + std::to_string(last_epoch));
  BOOST_REQUIRE_EQUAL(killed.rc, 128 + SIGKILL);
  const auto resumed = run_torchfit(kResume, dir.path);
  BOOST_REQUIRE_EQUAL(resumed.rc, 0);
  BOOST_TEST(has(resumed.out, "stopped: early stopping"));
  BOOST_TEST(rows_without_time(dir / "history.csv") == rows_without_time(ref / "history.csv"));
  const auto a = weights(dir / "checkpoint"), b = weights(ref / "checkpoint");
  for (size_t i = 0; i < a.size(); ++i) BOOST_TEST(torch::equal(a[i].second, b[i].second));
  const auto again = run_torchfit(kResume, dir.path);
  BOOST_TEST(again.rc == 0);
  BOOST_TEST(has(again.out, "nothing to resume: the run in checkpoint.state already ended after " +
                                std::to_string(last_epoch) + " epochs (early stopping"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(signals)

BOOST_AUTO_TEST_CASE(sigint_saves_the_state_and_exits_130) {
  const auto& ref = reference();
  test::TempDir dir;
  const auto r = run_torchfit(kRun, dir.path, "TORCHFIT_TEST_KILL=train_batch:3:1 TORCHFIT_TEST_KILL_SIGNAL=2");
  BOOST_TEST(r.rc == 130);
  BOOST_TEST(has(r.out, "interrupted by SIGINT after 2 complete epochs"));
  BOOST_TEST(has(r.out, "continue with: torchfit train --resume"));
  const auto info = tf::read_state_info(dir / "checkpoint.state");
  BOOST_TEST(info.next_epoch == 3);
  BOOST_TEST(info.next_batch == 2);
  BOOST_TEST(!info.finished);
  const auto resumed = run_torchfit(kResume, dir.path);
  BOOST_REQUIRE_EQUAL(resumed.rc, 0);
  check_same_result(dir.path, ref);
}

BOOST_AUTO_TEST_CASE(sigterm_exits_143) {
  test::TempDir dir;
  const auto r = run_torchfit(kRun, dir.path, "TORCHFIT_TEST_KILL=epoch_end:2 TORCHFIT_TEST_KILL_SIGNAL=15");
  BOOST_TEST(r.rc == 143);
  BOOST_TEST(has(r.out, "interrupted by SIGTERM after 2 complete epochs"));
  BOOST_TEST(tf::read_state_info(dir / "checkpoint.state").next_epoch == 3);
}

BOOST_AUTO_TEST_CASE(a_second_sigint_exits_at_once_and_corrupts_nothing) {
  test::TempDir dir;
  // A long run, interrupted from outside once it has saved a state.
  const pid_t pid = test::start_torchfit(
      "train --model dnn_binary --epochs 1000 --patience 1000 --state-every-steps 1 -q", dir.path);
  for (int i = 0; i < 400 && !fs::exists(dir / "checkpoint.state"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  BOOST_REQUIRE(fs::exists(dir / "checkpoint.state"));
  ::kill(pid, SIGINT);
  ::kill(pid, SIGINT);
  const auto r = test::finish(pid, dir.path);
  BOOST_TEST(r.rc == 130);
  // Whichever signal won, the state file on disk is whole.
  BOOST_CHECK_NO_THROW(tf::read_state_info(dir / "checkpoint.state"));
}

BOOST_AUTO_TEST_CASE(a_signal_during_startup_exits_with_its_code_and_says_so) {
  // Loading LibTorch alone takes about half a second: a signal then (or while the data loads)
  // ends the run at once, with exit 128 + signal and a line saying why; later, training stops
  // after its batch. Either way the exit code and the message are there.
  for (const int delay_ms : {100, 300, 700}) {
    for (const int signal : {SIGINT, SIGTERM}) {
      test::TempDir dir;
      const pid_t pid = test::start_torchfit("train --model dnn_binary --epochs 1000 --patience 1000 -q", dir.path);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      ::kill(pid, signal);
      const auto r = test::finish(pid, dir.path);
      BOOST_TEST_INFO("signal " << signal << " after " << delay_ms << " ms");
      BOOST_TEST(r.rc == 128 + signal);
      BOOST_TEST(has(r.err + r.out, std::string("interrupted by ") + tf::signal_name(signal)));
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(faults_and_bad_resumes)

BOOST_AUTO_TEST_CASE(a_full_disk_stops_cleanly_and_keeps_the_previous_state) {
  test::TempDir dir;
  BOOST_REQUIRE_EQUAL(run_torchfit(run_args(2), dir.path).rc, 0);
  const auto before = test::read_file(dir / "checkpoint.state");
  // Files may not grow past 16 KiB from now on: the next state file cannot be written.
  const auto r = run_torchfit(kResume + " --epochs 4", dir.path, "ulimit -f 16;");
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(has(r.err, "File too large"));
  BOOST_TEST(has(r.err, "the previous state file is unchanged"));
  BOOST_TEST(test::read_file(dir / "checkpoint.state") == before);
  BOOST_TEST(tf::read_state_info(dir / "checkpoint.state").epochs_done == 2);
  for (const auto& name : test::files_in(dir.path)) BOOST_TEST(name.find(".tmp-") == std::string::npos, name);
}

BOOST_AUTO_TEST_CASE(the_first_cause_is_reported_when_the_history_cannot_be_written_either) {
  test::TempDir dir;
  BOOST_REQUIRE_EQUAL(run_torchfit(run_args(2), dir.path).rc, 0);
  // The state cannot grow past 16 KiB, and the history's first write fails too.
  const auto r = run_torchfit(kResume + " --epochs 4", dir.path,
                              "ulimit -f 16; TORCHFIT_TEST_CRASH_IN_SAVE=history.csv:1:fail");
  BOOST_TEST(r.rc == 1);
  const auto error = r.err.substr(r.err.find("torchfit: error: "));
  BOOST_TEST(has(error, "File too large"));
  BOOST_TEST(has(error, "the previous state file is unchanged"));
  BOOST_TEST(has(r.err, "the history could not be saved either"));
}

BOOST_AUTO_TEST_CASE(a_history_lost_after_the_run_ended_is_written_again_by_resume) {
  // Killed while writing the history, after the state was saved as finished (a full disk fails
  // there the same way): the run is over, and --resume makes the history whole from the state.
  test::TempDir dir;
  const auto killed = run_torchfit(run_args(2), dir.path, "TORCHFIT_TEST_CRASH_IN_SAVE=history.csv:1");
  BOOST_REQUIRE_EQUAL(killed.rc, 128 + SIGKILL);
  BOOST_REQUIRE(!fs::exists(dir / "history.csv"));
  BOOST_REQUIRE(tf::read_state_info(dir / "checkpoint.state").finished);
  const auto resumed = run_torchfit(kResume + " --epochs 2", dir.path);
  BOOST_TEST(resumed.rc == 0);
  BOOST_TEST(has(resumed.out, "history.csv did not hold the run's 2 epochs"));
  BOOST_TEST(has(resumed.out, "nothing to resume"));
  test::TempDir whole;
  BOOST_REQUIRE_EQUAL(run_torchfit(run_args(2), whole.path).rc, 0);
  BOOST_TEST(rows_without_time(dir / "history.csv") == rows_without_time(whole / "history.csv"));
  // Whole already: left as it is, and nothing said.
  const auto again = run_torchfit(kResume + " --epochs 2", dir.path);
  BOOST_TEST(!has(again.out, "did not hold"));
}

BOOST_AUTO_TEST_CASE(changed_settings_are_refused_by_name) {
  test::TempDir dir;
  BOOST_REQUIRE_EQUAL(run_torchfit(run_args(2), dir.path).rc, 0);
  const auto r = run_torchfit(kResume + " --epochs 3 --lr 0.5 --batch-size 50", dir.path);
  BOOST_TEST(r.rc == 2);
  BOOST_TEST(has(r.err, "cannot resume checkpoint.state with different settings"));
  BOOST_TEST(has(r.err, "lr was 0.001, now 0.5"));
  BOOST_TEST(has(r.err, "batch-size was 100, now 50"));
  // A finished run says so; more epochs continue it.
  const auto done = run_torchfit(kResume, dir.path);
  BOOST_TEST(done.rc == 0);
  BOOST_TEST(has(done.out, "nothing to resume"));
  BOOST_TEST(has(done.out, "give a larger --epochs"));
  BOOST_TEST(run_torchfit(kResume + " --epochs 3", dir.path).rc == 0);
  BOOST_TEST(tf::read_state_info(dir / "checkpoint.state").epochs_done == 3);
}

BOOST_AUTO_TEST_CASE(missing_damaged_or_wrong_state_files) {
  test::TempDir dir;
  auto r = run_torchfit(kResume, dir.path);
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(has(r.err, "state file 'checkpoint.state' does not exist"));
  test::write_file(dir / "junk.state", "not a state file at all");
  r = run_torchfit("train --resume junk.state", dir.path);
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(has(r.err, "'junk.state' cannot be read: it is damaged"));
  BOOST_REQUIRE_EQUAL(run_torchfit(run_args(1), dir.path).rc, 0);
  r = run_torchfit("train --resume=checkpoint", dir.path);
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(has(r.err, "is a torchfit weights checkpoint, not a state file"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(a_second_run_on_a_checkpoint_path_in_use_is_refused_and_a_killed_runs_lock_never_blocks) {
  // Two runs on one path would mix their files (the checkpoint of one, the settings of the
  // other): the second is refused at once, naming the first; after kill -9 the kernel has
  // released the lock, and a new run goes ahead.
  test::TempDir dir;
  const pid_t first = test::start_torchfit("train --model dnn_binary --epochs 100000 --callbacks none -q", dir.path);
  for (int i = 0; i < 300 && !fs::exists(dir / "checkpoint.ini"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  BOOST_REQUIRE(fs::exists(dir / "checkpoint.lock"));
  const auto settings = test::read_file(dir / "checkpoint.ini");
  auto second = run_torchfit("train --model dnn_binary --epochs 2 --lr 0.01 -q", dir.path);
  BOOST_TEST(second.rc == 1);
  BOOST_TEST(has(second.err, "checkpoint path 'checkpoint' is in use by another torchfit train (process " +
                                 std::to_string(first) + "): two runs would mix their files"));
  BOOST_TEST(test::read_file(dir / "checkpoint.ini") == settings);  // nothing of the second run written
  // Another path is free.
  BOOST_TEST(run_torchfit("train --model dnn_binary --epochs 1 -q --ckpt-path other --history other.csv", dir.path).rc == 0);
  ::kill(first, SIGKILL);
  test::finish(first, dir.path);
  auto third = run_torchfit("train --model dnn_binary --epochs 1 -q", dir.path);
  BOOST_TEST(third.rc == 0, third.err);
  BOOST_TEST(!fs::exists(dir / "checkpoint.lock"));  // a run that ends removes its lock file
}
