// `lumen train RECIPE.yaml` and `lumen feedback RECIPE.yaml`: run a training
// recipe (configs/*.yaml). One loop serves both; `feedback` takes the UniFL
// recipes (task feedback) and the judges they need (task segmenter, reward).
#include <cstdio>

#include "cli/commands.h"
#include "error.h"
#include "recipe.h"
#include "trainer.h"

namespace lumen::cli {
namespace {

bool is_feedback_task(train::Task task) {
  return task == train::Task::Feedback || task == train::Task::Segmenter || task == train::Task::Reward;
}

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
  cmd->add_option("--stop-after", a->stop_after, "stop after this many steps (a checkpoint is written; resume later)");
  cmd->add_option("--threads", a->threads, "intra-op threads (default: the recipe's, else one per core)")
      ->check(CLI::Range(0, 1024));
  return [cmd, a, name, feedback]() -> int {
    if (!cmd->parsed()) return -1;
    auto recipe = train::read_recipe(a->recipe);
    if (is_feedback_task(recipe.task) != feedback)
      throw Error(a->recipe, std::string("task ") + train::task_name(recipe.task) + " is run by `lumen " +
                                 (feedback ? "train" : "feedback") + "`, not `lumen " + name + "`");
    if (a->threads > 0) recipe.threads = a->threads;
    train::TrainOptions options;
    options.resume = a->resume;
    options.stop_after = a->stop_after;
    std::fprintf(stderr, "%s %s: %s, %lld steps of batch %lld -> %s\n", name.c_str(), a->recipe.c_str(),
                 train::task_name(recipe.task), static_cast<long long>(recipe.steps),
                 static_cast<long long>(recipe.batch_size), recipe.output.c_str());
    const auto r = train::run_training(recipe, options);
    std::printf("steps %lld..%lld in %.1f s (run total %.1f s)%s\n", static_cast<long long>(r.first_step),
                static_cast<long long>(r.last_step), r.seconds, r.total_seconds,
                r.finished ? (", model in " + r.final_folder).c_str() : ", not finished: resume with --resume");
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
