// Data-parallel training on c10d/Gloo: processes on 127.0.0.1, and threads for the collectives.
#define BOOST_TEST_MODULE distributed
#include <boost/test/unit_test.hpp>

#include <set>

#include <chrono>
#include <future>
#include <thread>

#include "run.hpp"

namespace fs = std::filesystem;
namespace tf = torchfit;

namespace {

using test::has;
using test::run_torchfit;

const std::string kTestPlugins = " --plugin-dir '" TORCHFIT_TEST_PLUGIN_DIR "'";

// A world of `n` communicators in this process, one per thread (Gloo over loopback), each
// running `body(comm)`; returns what each returned, by rank.
template <typename Body>
auto in_threads(int n, Body body) {
  static int port = 29600 + static_cast<int>(::getpid() % 2000);
  ++port;
  using Out = decltype(body(std::declval<tf::Communicator&>()));
  std::vector<std::future<Out>> futures;
  for (int r = 0; r < n; ++r) {
    futures.push_back(std::async(std::launch::async, [&, r] {
      tf::DistributedOptions o;
      o.rank = r;
      o.world_size = n;
      o.master_port = port;
      o.timeout = std::chrono::seconds(30);
      auto comm = tf::connect(o);
      return body(*comm);
    }));
  }
  std::vector<Out> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

// History rows of a CSV history file: column -> values.
std::map<std::string, std::vector<double>> history(const fs::path& file) {
  const auto t = tf::read_numeric_csv(file);
  std::map<std::string, std::vector<double>> out;
  for (size_t c = 0; c < t.header.size(); ++c) {
    const auto col = t.values.select(1, static_cast<int64_t>(c)).to(torch::kDouble).contiguous();
    out[t.header[c]] = std::vector<double>(col.data_ptr<double>(), col.data_ptr<double>() + col.numel());
  }
  return out;
}

std::map<std::string, torch::Tensor> weights(const fs::path& checkpoint, const std::string& model) {
  auto registry = tf::Registry(tf::Registry::search_path());
  auto m = registry.make_model(model, registry.parse_options(registry.find(model, tf::PluginKind::Model)));
  auto net = m->make_net();
  tf::load_weights(net, checkpoint);
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : net.module().named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(shards_cover_every_sample_once_and_padding_evens_them) {
  tf::TensorDataset ds(torch::arange(10, torch::kFloat).reshape({-1, 1}), torch::zeros({10, 1}));
  tf::DataLoader loader(ds, tf::LoaderOptions(2).shuffle(true).seed(3));
  const auto whole = loader.epoch(4);
  std::vector<float> global;
  for (const auto& b : whole) {
    for (int64_t i = 0; i < b.size(); ++i) global.push_back(b.input()[i][0].item<float>());
  }
  for (const bool pad : {false, true}) {
    std::vector<std::vector<float>> parts(3);
    for (int r = 0; r < 3; ++r) {
      for (const auto& b : loader.shard(r, 3, pad).epoch(4)) {  // the epoch keeps its loader
        for (int64_t i = 0; i < b.size(); ++i) parts[r].push_back(b.input()[i][0].item<float>());
      }
    }
    // Rank r has positions r, r+3, ... of the epoch's global order (padded with its start).
    for (int r = 0; r < 3; ++r) {
      BOOST_TEST_CONTEXT("pad " << pad << ", rank " << r) {
        BOOST_TEST(parts[r].size() == (pad ? 4u : (r == 0 ? 4u : 3u)));
        for (size_t k = 0; k < parts[r].size(); ++k) BOOST_TEST(parts[r][k] == global[(3 * k + r) % 10]);
      }
    }
  }
  BOOST_CHECK_THROW(loader.shard(3, 3, false), tf::DataError);
}

BOOST_AUTO_TEST_CASE(collectives_sum_gather_and_broadcast) {
  const auto out = in_threads(3, [](tf::Communicator& comm) {
    auto t = torch::full({2}, static_cast<double>(comm.rank() + 1), torch::kDouble);
    comm.all_reduce_sum(t);
    // Rank r contributes r rows: 0 + 1 + 2 = 3 rows, in rank order.
    auto rows = comm.all_gather_rows(torch::full({comm.rank(), 2}, static_cast<float>(comm.rank())));
    std::vector<torch::Tensor> b{torch::full({3}, static_cast<float>(comm.rank() + 7))};
    comm.broadcast(b, 1);
    const bool any = comm.any(comm.rank() == 2);
    return std::make_tuple(t, rows, b[0], any);
  });
  for (const auto& [sum, rows, broadcast, any] : out) {
    BOOST_TEST(torch::equal(sum, torch::full({2}, 6.0, torch::kDouble)));
    BOOST_TEST(torch::equal(rows, torch::tensor({{1.0f, 1.0f}, {2.0f, 2.0f}, {2.0f, 2.0f}})));
    BOOST_TEST(torch::equal(broadcast, torch::full({3}, 8.0f)));
    BOOST_TEST(any);
  }
}

BOOST_AUTO_TEST_CASE(every_standard_metric_over_shards_equals_the_whole) {
  auto registry = tf::Registry(tf::Registry::search_path());
  auto gen = tf::compat::make_generator(11);
  const auto logits = torch::randn({301, 1}, gen);
  const auto labels = (torch::rand({301, 1}, gen) < 0.4).to(torch::kFloat);
  const auto scores = torch::randn({301, 4}, gen);
  const auto classes = torch::randint(0, 4, {301}, gen);
  const std::vector<std::string> names = {"acc",  "auc", "precision", "recall",         "f1",       "mae",
                                          "mse",  "rmse", "r2",       "accuracy",       "macro_f1", "confusion_matrix",
                                          "top_k_accuracy"};
  const std::set<std::string> multiclass = {"accuracy", "macro_f1", "confusion_matrix", "top_k_accuracy"};
  auto data_for = [&](const std::string& name) {
    return multiclass.count(name) ? std::make_pair(scores, classes) : std::make_pair(logits, labels);
  };
  std::map<std::string, double> whole;
  for (const auto& name : names) {
    auto m = registry.make_metrics({name})[0].second;
    const auto [p, t] = data_for(name);
    for (int64_t i = 0; i < 301; i += 37) m->update(p.narrow(0, i, std::min<int64_t>(37, 301 - i)), t.narrow(0, i, std::min<int64_t>(37, 301 - i)));
    whole[name] = m->compute();
  }
  // Three processes with uneven shards (one of them empty for "r2", to check a process that
  // saw nothing still takes part).
  const auto per_rank = in_threads(3, [&](tf::Communicator& comm) {
    std::map<std::string, double> values;
    for (const auto& name : names) {
      auto m = registry.make_metrics({name})[0].second;
      const auto [p, t] = data_for(name);
      const int64_t begin = comm.rank() == 0 ? 0 : comm.rank() == 1 ? 100 : 250;
      const int64_t end = comm.rank() == 0 ? 100 : comm.rank() == 1 ? 250 : 301;
      if (!(name == "r2" && comm.rank() == 1)) {
        for (int64_t i = begin; i < end; i += 16) m->update(p.narrow(0, i, std::min<int64_t>(16, end - i)), t.narrow(0, i, std::min<int64_t>(16, end - i)));
      }
      BOOST_REQUIRE(m->sync(comm));
      values[name] = m->compute();
    }
    return values;
  });
  for (const auto& values : per_rank) {
    for (const auto& name : names) {
      BOOST_TEST_CONTEXT(name) {
        if (name == "r2") continue;  // rank 1 left out its samples: checked below
        BOOST_TEST(values.at(name) == whole.at(name), boost::test_tools::tolerance(1e-9));
      }
    }
    BOOST_TEST(values.at("r2") == per_rank[0].at("r2"));
  }
}

BOOST_AUTO_TEST_CASE(two_processes_equal_one_process_with_twice_the_batch) {
  for (const std::string model : {"linear_regression", "dnn_binary"}) {
    BOOST_TEST_CONTEXT(model) {
      test::TempDir one, two;
      const int64_t batch = model == "dnn_binary" ? 100 : 16;
      const std::string common = "train --model " + model + " --epochs 3 --callbacks model_checkpoint -q "
                                 "--model_checkpoint.save-best-only false";
      auto a = run_torchfit(common + " --batch-size " + std::to_string(batch), one.path);
      auto b = run_torchfit(common + " --nproc 2 --batch-size " + std::to_string(batch / 2), two.path);
      BOOST_REQUIRE(a.rc == 0);
      BOOST_REQUIRE(b.rc == 0);
      BOOST_TEST(b.err.find("error") == std::string::npos);
      // The same sample order in the same steps: the same weights, losses and metrics (train
      // and validation, reduced exactly over the shards), to float tolerance.
      const auto ha = history(one / "history.csv"), hb = history(two / "history.csv");
      BOOST_TEST(ha.size() == hb.size());
      for (const auto& [column, values] : ha) {
        if (column == "time") continue;
        BOOST_TEST_CONTEXT(column) {
          BOOST_TEST(hb.at(column).size() == 3u);
          for (size_t e = 0; e < values.size(); ++e) {
            BOOST_TEST(hb.at(column)[e] == values[e], boost::test_tools::tolerance(2e-4));
          }
        }
      }
      const auto wa = weights(one / "checkpoint", model), wb = weights(two / "checkpoint", model);
      for (const auto& [name, w] : wa) {
        BOOST_TEST_CONTEXT(name) { BOOST_TEST(torch::allclose(w, wb.at(name), 1e-4, 1e-5)); }
      }
      // Files are written once, by rank 0.
      BOOST_TEST(!fs::exists(two / "history.csv.tmp"));
      BOOST_TEST(has(test::read_file(two / "checkpoint.ini"), "nproc = 2\n"));
    }
  }
}

BOOST_AUTO_TEST_CASE(early_stopping_stops_every_rank_at_the_same_epoch) {
  test::TempDir dir;
  auto r = run_torchfit("train --model dnn_binary --epochs 40 --patience 2 --monitor val_acc --mode max --nproc 2 "
                        "--batch-size 50 -q "
                        "--callbacks early_stopping,hook_recorder --hook_recorder.file hooks" + kTestPlugins,
                        dir.path);
  BOOST_REQUIRE(r.rc == 0);
  BOOST_TEST(has(r.out, "stopped: early stopping"));
  const auto rows = history(dir / "history.csv").at("epoch").size();
  BOOST_TEST(rows < 40u);
  for (const char* file : {"hooks.rank0", "hooks.rank1"}) {
    const auto text = test::read_file(dir / file);
    size_t epochs = 0;
    for (size_t pos = 0; (pos = text.find("on_epoch_end\n", pos)) != std::string::npos; ++pos) ++epochs;
    BOOST_TEST_CONTEXT(file) {
      BOOST_TEST(epochs == rows);
      BOOST_TEST(has(text, "on_fit_end"));
    }
  }
}

BOOST_AUTO_TEST_CASE(a_dead_or_hung_rank_ends_the_run_with_an_error) {
  test::TempDir dir;
  const std::string run = "train --model dnn_binary --epochs 5 --nproc 2 --batch-size 50 -q --dist-timeout 5 "
                          "--callbacks kill_switch" + kTestPlugins;
  const auto start = std::chrono::steady_clock::now();
  auto killed = run_torchfit(run, dir.path, "TORCHFIT_TEST_KILL=train_batch:2:3 TORCHFIT_TEST_KILL_RANK=1");
  BOOST_TEST((killed.rc == 137 || killed.rc == 1));  // whichever the launcher saw end first
  BOOST_TEST(has(killed.err, "rank 1 of 2 exited with signal 9"));
  BOOST_TEST(has(killed.err, "a collective with the other processes failed"));
  // Stopped (SIGSTOP), not dead: the others give up after --dist-timeout, then it is killed.
  auto hung = run_torchfit(run, dir.path,
                           "TORCHFIT_TEST_KILL=train_batch:2:3 TORCHFIT_TEST_KILL_RANK=1 TORCHFIT_TEST_KILL_SIGNAL=19");
  BOOST_TEST(hung.rc == 1);
  BOOST_TEST(has(hung.err, "rank 0 of 2 exited with 1"));
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  BOOST_TEST_MESSAGE("dead and hung rank runs took " << seconds << " s");
  BOOST_TEST(seconds < 60);
}

BOOST_AUTO_TEST_CASE(resume_with_another_process_count) {
  test::TempDir dir;
  const std::string run = "train --model dnn_binary --batch-size 50 -q --callbacks early_stopping,kill_switch "
                          "--patience 100" + kTestPlugins;
  // Ctrl-C on rank 0 in epoch 2: every process stops at the same step; rank 0 saves the state.
  auto cut = run_torchfit(run + " --epochs 4 --nproc 2", dir.path,
                          "TORCHFIT_TEST_KILL=train_batch:2:5 TORCHFIT_TEST_KILL_SIGNAL=2 TORCHFIT_TEST_KILL_RANK=0");
  BOOST_TEST(cut.rc == 130);
  BOOST_TEST(has(cut.out, "continue with: torchfit train --resume"));
  // A state from the middle of an epoch needs the same count...
  auto other = run_torchfit("train --resume --nproc 1" + kTestPlugins, dir.path);
  BOOST_TEST(other.rc == 1);
  BOOST_TEST(has(other.err, "saved in the middle of epoch 2 by 2 processes; resume it with that many"));
  // ... and with it the run finishes its epochs (4 rows).
  auto same = run_torchfit("train --resume" + kTestPlugins, dir.path);
  BOOST_REQUIRE(same.rc == 0);
  BOOST_TEST(history(dir / "history.csv").at("epoch").size() == 4u);
  // A state from an epoch's end continues with any count: 4 more epochs in one process.
  auto more = run_torchfit("train --resume --nproc 1 --epochs 6" + kTestPlugins, dir.path);
  BOOST_REQUIRE(more.rc == 0);
  const auto h = history(dir / "history.csv");
  BOOST_TEST(h.at("epoch").size() == 6u);
  BOOST_TEST(h.at("val_acc").back() > 0.5);
}
