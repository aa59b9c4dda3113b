// `moesim run --model M --plan P --steps N [--data D] [--device cpu] [...]`: trains the
// model under the plan for real, one process per rank under mpirun, and logs fairseq's
// train_inner figures as JSON lines (or one JSON document with --json).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <unistd.h>
#include <optional>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "src/cli/commands.hpp"
#include "src/cli/world.hpp"
#include "src/core/atomic_file.hpp"
#include "src/core/error.hpp"
#include "src/core/json_reader.hpp"
#include "src/core/table.hpp"
#include "src/cluster/cluster_spec.hpp"
#include "src/profile/profile.hpp"
#include "src/routing/routing_model.hpp"
#include "src/simulate/event.hpp"
#include "src/executor/backend.hpp"
#include "src/executor/rank_grid.hpp"
#include "src/executor/trainer.hpp"
#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"

#if MOESIM_KERNELS_CUDA
#include <cuda_runtime_api.h>
#endif

namespace moesim::cli {
namespace {

struct RunArgs {
  std::string model, plan, data = "synthetic", device = "cpu", routing_trace, log_file;
  std::string scheduler = "constant", betas = "0.9,0.999";
  std::string cluster, profile, trace;
  bool compare = false;
  std::string save_dir;
  std::int64_t save_interval = 0;
  bool resume = false;
  std::int64_t steps = 0, warmup = 0;
  std::uint64_t seed = 1;
  double lr = 5e-4, warmup_init_lr = 0, end_lr = 0, eps = 1e-8, weight_decay = 0, clip_norm = 0;
  float init_std = 0.02f;
  int log_interval = 1;
  bool json = false;
  // fairseq's fp16 loss-scaling flags (precision=fp16 only); window 0: fairseq's default.
  double fp16_init_scale = 128, min_loss_scale = 1e-4;
  std::int64_t fp16_scale_window = 0;
};

std::pair<float, float> parse_betas(const std::string& text) {
  std::istringstream in(text);
  float b1 = 0, b2 = 0;
  char comma = 0;
  if (!(in >> b1 >> comma >> b2) || comma != ',' || !(in >> std::ws).eof() || b1 < 0 || b1 >= 1 || b2 < 0 || b2 >= 1)
    throw InputError("--adam-betas", "", "expected two numbers in [0, 1) as B1,B2, got \"" + text + "\"");
  return {b1, b2};
}

// The figures of the updates since the last log line, as fairseq's train_inner averages them.
nlohmann::ordered_json log_line(const std::vector<exec::StepRecord>& steps, std::size_t from, double wall) {
  const std::size_t n = steps.size() - from;
  auto mean = [&](auto field) {
    double s = 0;
    for (std::size_t i = from; i < steps.size(); ++i) s += steps[i].*field;
    return s / static_cast<double>(n);
  };
  double seconds = 0;
  std::int64_t tokens = 0;
  std::size_t peak = 0;
  for (std::size_t i = from; i < steps.size(); ++i) {
    seconds += steps[i].seconds;
    tokens += steps[i].tokens;
    peak = std::max(peak, steps[i].peak_bytes);
  }
  const exec::StepRecord& last = steps.back();
  nlohmann::ordered_json j;
  j["loss"] = mean(&exec::StepRecord::loss);
  j["nll_loss"] = mean(&exec::StepRecord::nll_loss);
  j["moe_gate_loss"] = mean(&exec::StepRecord::moe_gate_loss);
  j["overflow_expert1"] = mean(&exec::StepRecord::overflow_expert1);
  j["overflow_expert2"] = mean(&exec::StepRecord::overflow_expert2);
  j["entropy_gating"] = mean(&exec::StepRecord::entropy_gating);
  j["expert1_balance_top"] = mean(&exec::StepRecord::expert1_balance_top);
  j["expert1_balance_bottom"] = mean(&exec::StepRecord::expert1_balance_bottom);
  j["unused_expert1_count"] = mean(&exec::StepRecord::unused_expert1_count);
  // moe.dense_to_sparse (EvoMoE) only: the gate's phase and temperature at the line's last
  // update, and the experts per token averaged over the line's updates.
  if (!last.dts_phase.empty()) {
    j["dts_phase"] = last.dts_phase;
    j["dts_temperature"] = last.dts_temperature;
    j["dts_active_experts"] = mean(&exec::StepRecord::dts_active_experts);
  }
  j["wps"] = seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0;
  j["ups"] = seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
  j["wpb"] = last.tokens;
  j["bsz"] = last.sequences;
  j["num_updates"] = last.num_updates;
  j["lr"] = last.lr;
  j["gnorm"] = mean(&exec::StepRecord::gnorm);
  // fp16: the scale after the line's last update; fp32 and bf16 scale no loss.
  j["loss_scale"] = last.loss_scale > 0 ? nlohmann::ordered_json(last.loss_scale) : nlohmann::ordered_json(nullptr);
  j["gb_allocated"] = static_cast<double>(peak) / double(1 << 30);
  j["wall"] = wall;
  return j;
}

// Tokens per expert over the run, in the form `simulate --routing trace:FILE` reads, with
// every update's and every MoE layer's counts beside the totals.
nlohmann::ordered_json routing_trace(const ModelSpec& model, const std::vector<exec::StepRecord>& steps) {
  const auto E = static_cast<std::size_t>(model.moe.experts);
  std::vector<std::int64_t> e1(E), e2(model.moe.top_k == 2 ? E : 0);
  std::int64_t tokens = 0;
  nlohmann::ordered_json per_step = nlohmann::json::array();
  for (const exec::StepRecord& s : steps) {
    nlohmann::ordered_json layers = nlohmann::json::array();
    for (std::size_t l = 0; l < s.expert1.size(); ++l) {
      tokens += s.tokens;
      for (std::size_t e = 0; e < E; ++e) {
        e1[e] += s.expert1[l][e];
        if (!e2.empty()) e2[e] += s.expert2[l][e];
      }
      nlohmann::ordered_json layer;
      layer["expert1"] = s.expert1[l];
      if (!e2.empty()) layer["expert2"] = s.expert2[l];
      layers.push_back(layer);
    }
    per_step.push_back({{"num_updates", s.num_updates}, {"tokens", s.tokens}, {"layers", layers}});
  }
  nlohmann::ordered_json j;
  j["experts"] = model.moe.experts;
  j["top_k"] = model.moe.top_k;
  j["tokens"] = tokens;
  j["expert1"] = e1;
  if (!e2.empty()) j["expert2"] = e2;
  j["source"] = "moesim run: " + model.name;
  j["per_step"] = per_step;
  return j;
}

// The backend of this rank. With cuda, ranks go one per GPU as open_world() gives them
// NCCL: the node-local rank modulo the visible GPUs.
std::unique_ptr<exec::Backend> open_backend(const std::string& device, Communicator& world) {
  if (device != "cuda") return exec::make_cpu_backend();
  if (world.size() > 1 && world.name() != "nccl")
    throw InputError("--device", "cuda", "expected a build with NCCL to run more than one GPU rank");
  int gpu = 0;
#if MOESIM_KERNELS_CUDA
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < 1)
    throw InputError("--device", "cuda", "expected a GPU visible to the CUDA runtime, found none");
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  gpu = (local ? std::atoi(local) : world.rank()) % devices;
#endif
  return exec::make_cuda_backend(gpu);
}

// The measured step: the median over updates after the first (which pays one-time
// allocation and cache warm-up), or the only one.
double median_step_seconds(const std::vector<exec::StepRecord>& steps) {
  std::vector<double> t;
  for (std::size_t i = steps.size() > 1 ? 1 : 0; i < steps.size(); ++i) t.push_back(steps[i].seconds);
  std::sort(t.begin(), t.end());
  const std::size_t n = t.size();
  return n % 2 == 1 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

// One op of a timeline, in milliseconds from the start of the update.
struct TimelineOp {
  std::string name, category;
  double start_ms = 0, duration_ms = 0;
};

struct Comparison {
  SimResult predicted;
  // The first stage's (rank 0's) iteration: the simulator's, and the run's last update.
  std::vector<TimelineOp> predicted_ops, measured_ops;
  double step_s = 0, wps = 0, peak_bytes = 0;  // measured
  std::string cluster, profile, routing;
};

// The simulator's event tier on the same model and plan, routed as the run routed (its
// recorded trace), beside what the run measured.
// The ops of the first stage in a Chrome trace the simulator wrote (process 1).
std::vector<TimelineOp> first_stage_ops(const nlohmann::json& trace) {
  std::vector<TimelineOp> ops;
  for (const nlohmann::json& e : trace.at("traceEvents"))
    if (e.value("ph", "") == "X" && e.value("pid", 0) == 1)
      ops.push_back({e.at("name").get<std::string>(), e.value("cat", ""), e.at("ts").get<double>() / 1e3,
                     e.at("dur").get<double>() / 1e3});
  return ops;
}

// This rank's ops of its last update, from the update's first op: its compute thread's
// (the gradient all-reduces overlapped with the backward run beside them and are left to
// the --trace file; what the update still waited for is its grad_reduce op).
std::vector<TimelineOp> last_update_ops(const std::vector<exec::TimelineEvent>& events) {
  std::vector<TimelineOp> ops;
  if (events.empty()) return ops;
  const long long last = events.back().update;
  double start = -1;
  for (const exec::TimelineEvent& e : events) {
    if (e.update != last || e.category == exec::kOverlappedReduce) continue;
    if (start < 0) start = e.start_s;
    ops.push_back({e.name, e.category, (e.start_s - start) * 1e3, (e.end_s - e.start_s) * 1e3});
  }
  return ops;
}

Comparison compare_with_simulation(const ModelSpec& model, const Plan& plan, const std::string& cluster_file,
                                   const std::string& profile_file, const std::string& trace_file,
                                   const std::vector<exec::StepRecord>& steps,
                                   const std::vector<exec::TimelineEvent>& timeline) {
  Comparison c;
  const ClusterSpec cluster = load_cluster(cluster_file);
  check_plan(plan, cluster, "--plan");
  const Profile profile = load_profile(profile_file.empty() ? default_profile_path(cluster) : profile_file);
  std::optional<ExpertLoad> load;
  RoutingSpec routing;
  if (model.is_moe()) {
    routing = parse_routing("trace:" + trace_file);
    load = route_tokens(model, routing, routed_tokens(plan, model));
  }
  const std::string sim_trace = trace_file + ".predicted.json";
  c.predicted = simulate_event(model, plan, cluster, profile, load ? &*load : nullptr, sim_trace);
  c.predicted_ops = first_stage_ops(read_json_file(sim_trace));
  std::remove(sim_trace.c_str());
  c.measured_ops = last_update_ops(timeline);
  c.cluster = cluster.name;
  c.profile = profile.name;
  c.routing = model.is_moe() ? "the run's recorded trace" : "dense";
  c.step_s = median_step_seconds(steps);
  c.wps = static_cast<double>(steps.back().tokens) / c.step_s;
  for (const exec::StepRecord& s : steps) c.peak_bytes = std::max(c.peak_bytes, static_cast<double>(s.peak_bytes));
  return c;
}

nlohmann::ordered_json comparison_json(const Comparison& c) {
  auto row = [](double predicted, double measured) {
    return nlohmann::ordered_json{{"predicted", predicted}, {"measured", measured},
                                  {"error", (predicted - measured) / measured}};
  };
  nlohmann::ordered_json j;
  j["cluster"] = c.cluster;
  j["profile"] = c.profile;
  j["routing"] = c.routing;
  j["step_s"] = row(c.predicted.iteration_s, c.step_s);
  j["wps"] = row(c.predicted.wps, c.wps);
  // The same model FLOPs over the measured time.
  const double speed = c.predicted.iteration_s / c.step_s;
  j["tflops_per_gpu"] = row(c.predicted.tflops_per_gpu, c.predicted.tflops_per_gpu * speed);
  j["mfu"] = row(c.predicted.mfu, c.predicted.mfu * speed);
  j["peak_bytes"] = row(c.predicted.memory.bytes.total(), c.peak_bytes);
  // Time per kind of op in one update of the first stage, and the ops themselves.
  std::map<std::string, std::pair<double, double>> by_category;
  for (const TimelineOp& op : c.predicted_ops) by_category[op.category].first += op.duration_ms / 1e3;
  for (const TimelineOp& op : c.measured_ops) by_category[op.category].second += op.duration_ms / 1e3;
  nlohmann::ordered_json categories;
  for (const auto& [name, t] : by_category)
    categories[name] = {{"predicted_s", t.first}, {"measured_s", t.second},
                        {"error", t.second > 0 ? nlohmann::json((t.first - t.second) / t.second) : nlohmann::json()}};
  j["by_category"] = categories;
  auto ops = [](const std::vector<TimelineOp>& list) {
    nlohmann::ordered_json a = nlohmann::json::array();
    for (const TimelineOp& op : list)
      a.push_back({{"name", op.name}, {"category", op.category}, {"start_ms", op.start_ms}, {"duration_ms", op.duration_ms}});
    return a;
  };
  j["timeline"] = {{"rank", 0}, {"predicted", ops(c.predicted_ops)}, {"measured", ops(c.measured_ops)}};
  return j;
}

void print_comparison(const Comparison& c) {
  Table t({"", "predicted", "measured", "error"});
  auto pct = [](double predicted, double measured) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%+.1f%%", 100.0 * (predicted - measured) / measured);
    return std::string(buf);
  };
  auto fixed = [](double v) { return with_commas(std::llround(v)); };
  t.add_row({"step time", human_seconds(c.predicted.iteration_s), human_seconds(c.step_s), pct(c.predicted.iteration_s, c.step_s)});
  t.add_row({"tokens/s", fixed(c.predicted.wps), fixed(c.wps), pct(c.predicted.wps, c.wps)});
  // The same model FLOPs over the measured time; MFU against the peak of the plan's precision.
  const double speed = c.predicted.iteration_s / c.step_s;
  char buf[3][32];
  std::snprintf(buf[0], sizeof buf[0], "%.2f", c.predicted.tflops_per_gpu);
  std::snprintf(buf[1], sizeof buf[1], "%.2f", c.predicted.tflops_per_gpu * speed);
  t.add_row({"TFLOP/s per GPU", buf[0], buf[1], pct(1.0, speed)});
  std::snprintf(buf[0], sizeof buf[0], "%.1f%%", 100 * c.predicted.mfu);
  std::snprintf(buf[2], sizeof buf[2], "%.1f%%", 100 * c.predicted.mfu * speed);
  t.add_row({"MFU", buf[0], buf[2], pct(1.0, speed)});
  t.add_row({"peak memory per rank", human_bytes(c.predicted.memory.bytes.total()), human_bytes(c.peak_bytes),
             pct(c.predicted.memory.bytes.total(), c.peak_bytes)});
  std::cout << "\npredicted (simulate, event tier, " << c.cluster << ", profile " << c.profile << ", routing: "
            << c.routing << ") vs measured (median update after the first):\n";
  t.print(std::cout);
}

}  // namespace

Command add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "Train the model under a plan for real (one process per rank under mpirun)");
  cmd->add_option("--model", a->model, "model JSON")->required();
  cmd->add_option("--plan", a->plan, "plan JSON or inline (dp=2,ep=2,mbs=2,gbs=8)")->required();
  cmd->add_option("--steps", a->steps, "updates to train")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--data", a->data,
                  "synthetic (fairseq dummy_lm), structured[:B] (Markov chain, B successors), or a token file "
                  "(FILE.u16, FILE.u32, FILE:uint32)");
  cmd->add_option("--device", a->device, "cpu, or cuda (one GPU per rank)")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--seed", a->seed, "parameters, data and gate draws (default 1)");
  cmd->add_option("--lr", a->lr, "peak learning rate (default 5e-4, the fairseq MoE seeds')")->check(CLI::NonNegativeNumber);
  cmd->add_option("--lr-scheduler", a->scheduler, "constant, linear (polynomial_decay), cosine, inverse_sqrt");
  cmd->add_option("--warmup-updates", a->warmup, "linear warm-up updates (default 0)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--warmup-init-lr", a->warmup_init_lr, "learning rate the warm-up starts from (default 0)");
  cmd->add_option("--end-lr", a->end_lr, "learning rate at the last update for linear and cosine (default 0)");
  cmd->add_option("--adam-betas", a->betas, "B1,B2 (default 0.9,0.999, fairseq's)");
  cmd->add_option("--adam-eps", a->eps, "Adam epsilon (default 1e-8)")->check(CLI::PositiveNumber);
  cmd->add_option("--weight-decay", a->weight_decay, "decoupled weight decay (default 0)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--clip-norm", a->clip_norm, "clip the global gradient norm to this (default 0: off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--init-std", a->init_std, "standard deviation of initial weights (default 0.02)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--log-interval", a->log_interval, "updates per log line (default 1)")->check(CLI::PositiveNumber);
  cmd->add_option("--log", a->log_file, "also write the log lines to this file");
  cmd->add_option("--trace", a->trace,
                  "write the measured timeline as a Chrome trace, with the simulator's names (F<stage>.<mb>, ...)");
  cmd->add_option("--routing-trace", a->routing_trace, "write tokens per expert per layer per update here");
  cmd->add_flag("--json", a->json, "print one JSON document at the end instead of log lines");
  cmd->add_flag("--compare", a->compare,
                "simulate the same model and plan (event tier, the run's routing) and print predicted vs measured");
  cmd->add_option("--cluster", a->cluster,
                  "cluster JSON for --compare (default: configs/clusters/local-cpu.json on cpu)");
  cmd->add_option("--profile", a->profile, "profile JSON for --compare (default: profiles/<gpu>.json)");
  cmd->add_option("--save-dir", a->save_dir,
                  "write a checkpoint sharded per rank to DIR/update-N/ every --save-interval updates and after the last");
  cmd->add_option("--save-interval", a->save_interval, "updates between checkpoints (default 0: only after the last)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--fp16-init-scale", a->fp16_init_scale,
                  "precision=fp16: the loss scale to start from (default 128 = 2^7, fairseq's)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--fp16-scale-window", a->fp16_scale_window,
                  "precision=fp16: updates without overflow before the loss scale doubles (default: fairseq's "
                  "2^14 / ranks / micro-batches per rank)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--min-loss-scale", a->min_loss_scale,
                  "precision=fp16: stop with an error when the loss scale would fall to this (default 1e-4, fairseq's)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--resume", a->resume,
                "continue after the newest complete checkpoint in --save-dir (from the start when there is none)");
  return {cmd, [a]() {
            World ranks;
            open_world(ranks, a->device);
            Communicator& world = ranks.get();
            const bool root = world.rank() == 0;
            const ModelSpec model = load_model(a->model);
            const Plan plan = load_plan(a->plan);
            check_plan(plan, model, a->plan);
            exec::check_runnable(model, plan, a->model, a->plan);
            if (a->device == "cuda" && model.moe.dense_to_sparse)
              throw InputError(a->model, "moe.dense_to_sparse", "expected none with --device cuda (the dense-to-sparse gate runs on cpu)");

            exec::TrainOptions options;
            options.steps = a->steps;
            options.seed = a->seed;
            options.init_std = a->init_std;
            options.data = parse_token_source(a->data);
            options.lr.decay = parse_lr_decay(a->scheduler);
            options.lr.lr = a->lr;
            options.lr.warmup_updates = a->warmup;
            options.lr.warmup_init_lr = a->warmup_init_lr;
            options.lr.end_lr = a->end_lr;
            options.lr.total_updates = a->steps;
            validate(options.lr, "--lr-scheduler");
            const auto [b1, b2] = parse_betas(a->betas);
            options.adam.beta1 = b1;
            options.adam.beta2 = b2;
            options.adam.eps = static_cast<float>(a->eps);
            options.adam.weight_decay = static_cast<float>(a->weight_decay);
            options.clip_norm = a->clip_norm;
            options.loss_scaler.init_scale = a->fp16_init_scale;
            options.loss_scaler.window = a->fp16_scale_window;
            options.loss_scaler.min_scale = a->min_loss_scale;
            // fairseq's note for a skipped update, on stderr: stdout keeps its JSON lines.
            options.on_overflow = [root](std::int64_t update, double scale) {
              if (root)
                std::cerr << "moesim: update " << update
                          << ": gradient overflow detected, ignoring gradient, setting loss scale to: "
                          << nlohmann::json(scale).dump()
                          << "\n" << std::flush;
            };
            if (a->save_dir.empty() && (a->resume || a->save_interval > 0))
              throw InputError(a->resume ? "--resume" : "--save-interval", "", "expected --save-dir DIR beside it");
            options.checkpoint.dir = a->save_dir;
            options.checkpoint.interval = a->save_interval;
            options.checkpoint.resume = a->resume;

            std::unique_ptr<exec::Backend> backend = open_backend(a->device, world);
            exec::RankGroups groups = exec::make_groups(world, plan);
            std::vector<exec::StepRecord> done;
            std::string log_text;
            std::size_t logged = 0;
            const auto start = std::chrono::steady_clock::now();
            options.timeline = !a->trace.empty() || a->compare;
            // An error on one rank alone (a device fault, a failed allocation) would leave
            // its peers waiting in a collective: end the whole job, naming the rank.
            auto train_or_abort = [&](auto&& on_step) {
              try {
                return exec::train(*backend, groups, model, plan, options, on_step);
              } catch (const std::exception& e) {
                if (world.size() == 1) throw;
                std::cerr << "moesim: rank " << world.rank() << ": " << e.what() << "\n" << std::flush;
                world.abort(dynamic_cast<const InputError*>(&e) != nullptr ? 2 : 1);
              }
              std::_Exit(1);  // not reached: abort ends the process
            };
            const exec::TrainResult result = train_or_abort([&](const exec::StepRecord& rec) {
                  done.push_back(rec);
                  const bool due = rec.num_updates % a->log_interval == 0 || rec.num_updates == a->steps;
                  if (!root || !due) return;
                  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                  const std::string line = log_line(done, logged, wall).dump() + "\n";
                  logged = done.size();
                  log_text += line;
                  if (!a->json) std::cout << line << std::flush;
                });
            if (!a->trace.empty()) {
              // Every rank's events to rank 0, which writes one Chrome trace.
              const std::vector<std::string> texts =
                  world.gather_strings(std::to_string(exec::rank_grid(plan, world.rank()).pp) + "\n" +
                                       exec::timeline_to_text(result.timeline));
              if (root) {
                std::vector<std::vector<exec::TimelineEvent>> events;
                std::vector<int> stages;
                for (const std::string& t : texts) {
                  const auto cut = t.find('\n');
                  stages.push_back(std::stoi(t.substr(0, cut)));
                  events.push_back(exec::timeline_from_text(t.substr(cut + 1)));
                }
                write_file_atomically(a->trace, exec::chrome_trace(events, stages).dump() + "\n");
              }
            }
            if (!root) return 0;
            if (!a->log_file.empty()) write_file_atomically(a->log_file, log_text);
            std::string trace_file = a->routing_trace;
            if (trace_file.empty() && a->compare)
              trace_file = (std::filesystem::temp_directory_path() /
                            ("moesim-run-routing-" + std::to_string(::getpid()) + ".json")).string();
            if (!trace_file.empty() && model.is_moe())
              write_file_atomically(trace_file, routing_trace(model, done).dump(1) + "\n");
            std::optional<Comparison> comparison;
            if (a->compare) {
              const std::string cluster = !a->cluster.empty() ? a->cluster
                                          : a->device == "cpu" ? "configs/clusters/local-cpu.json"
                                                               : "";
              if (cluster.empty()) throw InputError("--cluster", "", "expected a cluster JSON for --compare on cuda");
              comparison = compare_with_simulation(model, plan, cluster, a->profile, trace_file, done, result.timeline);
              if (a->routing_trace.empty()) std::remove(trace_file.c_str());
            }
            if (a->json) {
              nlohmann::ordered_json j;
              j["model"] = model.name;
              j["plan"] = plan_to_json(plan);
              j["ranks"] = world.size();
              j["device"] = backend->kind();
              j["data"] = to_string(options.data);
              j["parameters_rank0"] = result.param_count;
              j["resumed_from"] = result.resumed_from;
              nlohmann::ordered_json steps = nlohmann::json::array();
              for (const exec::StepRecord& rec : done) steps.push_back(log_line({rec}, 0, 0.0));  // one update each
              for (auto& s : steps) s.erase("wall");
              j["steps"] = steps;
              j["median_step_s"] = median_step_seconds(done);
              if (model.is_moe()) {
                // Tokens whose first choice was each expert, per MoE layer, over the run.
                nlohmann::ordered_json layers = nlohmann::json::array();
                for (std::size_t l = 0; l < done.front().expert1.size(); ++l) {
                  std::vector<std::int64_t> total(done.front().expert1[l].size());
                  for (const exec::StepRecord& s : done)
                    for (std::size_t e = 0; e < total.size(); ++e) total[e] += s.expert1[l][e];
                  layers.push_back(total);
                }
                j["routing"] = {{"experts", model.moe.experts}, {"expert1_per_layer", layers}};
              }
              if (comparison) j["compare"] = comparison_json(*comparison);
              std::cout << j.dump(2) << "\n";
            } else if (comparison) {
              print_comparison(*comparison);
            }
            return 0;
          }};
}

}  // namespace moesim::cli
