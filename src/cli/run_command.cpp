// `moesim run --model M --plan P --steps N [--data D] [--device cpu] [...]`: trains the
// model under the plan for real, one process per rank under mpirun, and logs fairseq's
// train_inner figures as JSON lines (or one JSON document with --json).
#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "src/cli/commands.hpp"
#include "src/cli/world.hpp"
#include "src/core/atomic_file.hpp"
#include "src/core/error.hpp"
#include "src/executor/backend.hpp"
#include "src/executor/trainer.hpp"
#include "src/model/model_json.hpp"
#include "src/plan/plan.hpp"

namespace moesim::cli {
namespace {

struct RunArgs {
  std::string model, plan, data = "synthetic", device = "cpu", routing_trace, log_file;
  std::string scheduler = "constant", betas = "0.9,0.999";
  std::int64_t steps = 0, warmup = 0;
  std::uint64_t seed = 1;
  double lr = 5e-4, warmup_init_lr = 0, end_lr = 0, eps = 1e-8, weight_decay = 0, clip_norm = 0;
  float init_std = 0.02f;
  int log_interval = 1;
  bool json = false;
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
  j["wps"] = seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0;
  j["ups"] = seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
  j["wpb"] = last.tokens;
  j["bsz"] = last.sequences;
  j["num_updates"] = last.num_updates;
  j["lr"] = last.lr;
  j["gnorm"] = mean(&exec::StepRecord::gnorm);
  j["loss_scale"] = nullptr;  // fp32 runs scale no loss
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
  cmd->add_option("--device", a->device, "cpu (cuda: not yet)")->check(CLI::IsMember({"cpu", "cuda"}));
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
  cmd->add_option("--routing-trace", a->routing_trace, "write tokens per expert per layer per update here");
  cmd->add_flag("--json", a->json, "print one JSON document at the end instead of log lines");
  return {cmd, [a]() {
            if (a->device == "cuda")
              throw InputError("--device", "", "expected cpu: the CUDA backend of moesim run is not built yet");
            World ranks;
            open_world(ranks, a->device);
            Communicator& world = ranks.get();
            const bool root = world.rank() == 0;
            const ModelSpec model = load_model(a->model);
            const Plan plan = load_plan(a->plan);
            check_plan(plan, model, a->plan);
            exec::check_runnable(model, plan, a->model, a->plan);

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

            std::unique_ptr<exec::Backend> backend = exec::make_cpu_backend();
            exec::RankGroups groups = exec::make_groups(world, plan);
            std::vector<exec::StepRecord> done;
            std::string log_text;
            std::size_t logged = 0;
            const auto start = std::chrono::steady_clock::now();
            const exec::TrainResult result = exec::train(
                *backend, groups, model, plan, options, [&](const exec::StepRecord& rec) {
                  done.push_back(rec);
                  const bool due = rec.num_updates % a->log_interval == 0 || rec.num_updates == a->steps;
                  if (!root || !due) return;
                  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                  const std::string line = log_line(done, logged, wall).dump() + "\n";
                  logged = done.size();
                  log_text += line;
                  if (!a->json) std::cout << line << std::flush;
                });
            if (!root) return 0;
            if (!a->log_file.empty()) write_file_atomically(a->log_file, log_text);
            if (!a->routing_trace.empty() && model.is_moe())
              write_file_atomically(a->routing_trace, routing_trace(model, done).dump(1) + "\n");
            if (a->json) {
              nlohmann::ordered_json j;
              j["model"] = model.name;
              j["plan"] = plan_to_json(plan);
              j["ranks"] = world.size();
              j["device"] = backend->kind();
              j["data"] = to_string(options.data);
              j["parameters_rank0"] = result.param_count;
              nlohmann::ordered_json steps = nlohmann::json::array();
              for (std::size_t i = 0; i < done.size(); ++i) steps.push_back(log_line(done, i, 0.0));
              for (auto& s : steps) s.erase("wall");
              j["steps"] = steps;
              std::cout << j.dump(2) << "\n";
            }
            return 0;
          }};
}

}  // namespace moesim::cli
