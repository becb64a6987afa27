// `lumen train RECIPE.yaml` and `lumen feedback RECIPE.yaml`: run a training
// recipe (configs/*.yaml) through the C API's lumen_train_run, as an app
// would. One loop serves both; `feedback` takes the UniFL recipes (task
// feedback) and the judges they need (task segmenter, reward).
#include <cstdio>

#include "cli/commands.h"
#include "error.h"
#include "lumen/lumen.hpp"

namespace lumen::cli {
namespace {

Runner add_recipe_command(CLI::App& app, const std::string& name, const std::string& description, bool feedback) {
  struct Args {
    std::string recipe;
    bool resume = false;
    int64_t stop_after = 0;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(name, description);
  cmd->add_option("recipe", a->recipe, "the recipe (see configs/)")->required();
  cmd->add_flag("--resume", a->resume, "continue the run in the recipe's output folder from its last checkpoint");
  cmd->add_option("--stop-after", a->stop_after, "stop after this many steps (a checkpoint is written; resume later)")
      ->check(finite_non_negative());
  cmd->add_option("--threads", a->threads, "intra-op threads (default: the recipe's, else one per core)")
      ->check(CLI::Range(0, 1024));
  return [cmd, a, name, feedback]() -> int {
    if (!cmd->parsed()) return -1;
    lumen_recipe_info info{};
    info.struct_size = sizeof info;
    lumen::check(lumen_recipe_read_info(a->recipe.c_str(), &info));
    if ((info.feedback != 0) != feedback)
      throw Error(a->recipe, std::string("task ") + info.task + " is run by `lumen " + (feedback ? "train" : "feedback") +
                                 "`, not `lumen " + name + "`");
    std::fprintf(stderr, "%s %s: %s, %lld steps of batch %lld -> %s\n", name.c_str(), a->recipe.c_str(), info.task,
                 static_cast<long long>(info.steps), static_cast<long long>(info.batch_size), info.output);
    lumen_train_result r{};
    r.struct_size = sizeof r;
    lumen_train_params p = lumen_train_default_params();
    p.resume = a->resume;
    p.stop_after = a->stop_after;
    p.threads = a->threads;
    p.progress_bar = 1;
    p.result = &r;
    lumen::check(lumen_train_run(a->recipe.c_str(), &p));
    std::printf("steps %lld..%lld in %.1f s (run total %.1f s)%s\n", static_cast<long long>(r.first_step),
                static_cast<long long>(r.last_step), r.seconds, r.total_seconds,
                r.finished ? (std::string(", model in ") + r.final_folder).c_str() : ", not finished: resume with --resume");
    return 0;
  };
}

}  // namespace

Runner add_train_command(CLI::App& app) {
  return add_recipe_command(app, "train", "train a VAE, a text encoder + UNet, or a LoRA from a YAML recipe", false);
}

Runner add_feedback_command(CLI::App& app) {
  return add_recipe_command(app, "feedback",
                            "UniFL feedback learning from a YAML recipe (task feedback), and the perception and "
                            "reward models it uses (task segmenter, reward)",
                            true);
}

}  // namespace lumen::cli
