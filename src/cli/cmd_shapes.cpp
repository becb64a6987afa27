// `lumen shapes render|eval`: ShapesWorld images with their captions, and the
// judge over a folder of images (/work/shared/SHAPES.md).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/adapter_options.h"
#include "cli/commands.h"
#include "error.h"
#include "io/atomic_file.h"
#include "io/image_io.h"
#include "io/image_tensor.h"
#include "io/json_output.h"
#include "model/model_loader.h"
#include "pipeline/pipeline.h"
#include "runtime.h"
#include "shapes/judge.h"
#include "shapes/shapes_world.h"
#include "perception_model.h"
#include "shapes_supervision.h"

namespace lumen::cli {
namespace {

namespace fs = std::filesystem;
using namespace lumen::shapes;

struct RenderOptions {
  std::string out, split = "all";
  int width = 64, height = 64;
  uint64_t seed = 0;
  bool jitter = false, overwrite = false;
};

struct EvalOptions {
  std::string dir;
  bool json = false;
};

// Captions of the split, each with its index in all_captions(): the file name,
// so an image's name stays the same whichever split it was rendered in.
std::vector<std::pair<int, Caption>> numbered_captions(const std::string& split) {
  const auto& all = all_captions();
  std::vector<std::pair<int, Caption>> out;
  for (int k = 0; k < static_cast<int>(all.size()); ++k) {
    const bool wanted = split == "all" || (split == "eval" && in_split(all[k], Split::eval)) ||
                        (split == "seen" && in_split(all[k], Split::seen)) ||
                        (split == "train" && in_split(all[k], Split::train));
    if (wanted) out.emplace_back(k, all[k]);
  }
  return out;
}

std::string file_stem(int number) {
  char name[16];
  std::snprintf(name, sizeof name, "%03d", number);
  return name;
}

// Per-image jitter from (seed, image number), so one image does not depend on which others were rendered.
Jitter jitter_for(uint64_t seed, int number) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(number)};
  std::mt19937_64 rng(seq);
  return random_jitter(rng);
}

void refuse_to_replace(const std::vector<std::string>& paths) {
  for (const auto& path : paths)
    if (fs::exists(path)) throw Error(path, "already exists (use --overwrite to replace it)");
}

// Writes NNN.png (caption in its "parameters" text) and NNN.txt (kohya-style
// sidecar) per caption, plus captions.jsonl listing them all.
int run_render(const RenderOptions& o) {
  const auto captions = numbered_captions(o.split);
  const fs::path dir(o.out);
  if (!o.overwrite) {
    std::vector<std::string> targets{(dir / "captions.jsonl").string()};
    for (const auto& [number, caption] : captions)
      for (const char* ext : {".png", ".txt"}) targets.push_back((dir / (file_stem(number) + ext)).string());
    refuse_to_replace(targets);
  }
  create_output_folder(o.out);
  std::string index;
  for (const auto& [number, caption] : captions) {
    const Jitter jitter = o.jitter ? jitter_for(o.seed, number) : Jitter{};
    const std::string text = caption_text(caption), stem = file_stem(number);
    char details[160];
    std::snprintf(details, sizeof details, "ShapesWorld v1, Size: %dx%d, Seed: %llu, Jitter: %.4f %.4f", o.width,
                  o.height, static_cast<unsigned long long>(o.seed), jitter.dx, jitter.dy);
    write_png((dir / (stem + ".png")).string(), render(caption, o.width, o.height, jitter),
              {{"parameters", text + "\n" + details}}, o.overwrite);
    write_text_atomically((dir / (stem + ".txt")).string(), text + "\n");
    index += dump_for_output(nlohmann::json{{"file", stem + ".png"}, {"caption", text}}) + "\n";
  }
  write_text_atomically((dir / "captions.jsonl").string(), index);
  std::cout << "wrote " << captions.size() << " " << o.width << "x" << o.height << " images (" << o.split
            << " split) to " << o.out << "\n";
  return 0;
}

std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  return line;
}

// The caption of an image: its .txt sidecar, else its PNG "parameters" text; first line either way.
Caption caption_of(const fs::path& png) {
  fs::path sidecar = png;
  sidecar.replace_extension(".txt");
  std::string text;
  if (fs::exists(sidecar)) {
    std::ifstream in(sidecar);
    std::getline(in, text);
  } else {
    const auto chunks = read_png_text(png.string());
    const auto it = chunks.find("parameters");
    if (it == chunks.end()) throw Error(png.string(), "no caption: no .txt sidecar and no \"parameters\" text");
    text = it->second;
  }
  const std::string line = first_line(text);
  const std::optional<Caption> caption = parse_caption(line);
  if (!caption || !caption->is_full()) throw Error(png.string(), "\"" + line + "\" is not a full ShapesWorld caption");
  return *caption;
}

std::vector<fs::path> png_files(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error(dir, "is not a folder");
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().extension() == ".png") out.push_back(entry.path());
  if (out.empty()) throw Error(dir, "holds no .png images");
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json rates_json(const JudgeSummary::Rates& r) {
  return {{"images", r.images},     {"single", r.single}, {"colour", r.colour},         {"shape", r.shape},
          {"position", r.position}, {"size", r.size},     {"background", r.background}, {"correct", r.correct},
          {"mask_iou", r.mask_iou}};
}

nlohmann::json judgement_json(const fs::path& file, const Judgement& j) {
  return {{"file", file.filename().string()},
          {"caption", caption_text(j.asked)},
          {"objects", j.objects},
          {"single", j.single},
          {"colour", j.colour},
          {"shape", j.shape},
          {"position", j.position},
          {"size", j.size},
          {"background", j.background},
          {"correct", j.correct},
          {"bg_error", j.bg_error},
          {"luma", j.luma},
          {"mask_iou", j.mask_iou},
          {"nearest_colour", std::string(kColours[index_of(j.nearest_colour)].name)},
          {"fill_ratio", j.fill_ratio},
          {"centroid", {j.centroid_x, j.centroid_y}},
          {"size_ratio", j.size_ratio}};
}

nlohmann::json summary_json(const JudgeSummary& s) {
  nlohmann::json backgrounds;
  for (size_t b = 0; b < kBackgrounds.size(); ++b)
    backgrounds[std::string(kBackgrounds[b].name)] = {{"images", s.per_background[b].images},
                                                     {"mean_bg_error", s.per_background[b].mean_bg_error},
                                                     {"mean_luma", s.per_background[b].mean_luma}};
  return {{"all", rates_json(s.all)},
          {"unseen", rates_json(s.eval)},
          {"seen", rates_json(s.seen)},
          {"backgrounds", backgrounds},
          {"luma", {{"mean", s.luma_mean}, {"spread", s.luma_spread}}}};
}

void print_summary(const std::string& dir, const JudgeSummary& s) {
  const JudgeSummary::Rates& r = s.all;
  std::printf("%d images in %s\n", r.images, dir.c_str());
  const std::pair<const char*, double> criteria[] = {{"single", r.single},     {"colour", r.colour},
                                                     {"shape", r.shape},       {"position", r.position},
                                                     {"size", r.size},         {"background", r.background},
                                                     {"correct", r.correct}};
  for (const auto& [name, rate] : criteria) std::printf("  %-11s %6.1f%%\n", name, 100 * rate);
  std::printf("  %-11s %7.3f (mean foreground IoU with the ideal render)\n", "mask_iou", r.mask_iou);
  for (const auto& [name, split] : {std::pair{"unseen", &s.eval}, std::pair{"seen", &s.seen}})
    if (split->images > 0)
      std::printf("  %-11s %6.1f%% correct of %d, mask_iou %.3f\n", name, 100 * split->correct, split->images,
                  split->mask_iou);
  for (size_t b = 0; b < kBackgrounds.size(); ++b)
    if (s.per_background[b].images > 0)
      std::printf("  on %-8s bg_error %6.2f  luma %6.1f  (%d images)\n", std::string(kBackgrounds[b].name).c_str(),
                  s.per_background[b].mean_bg_error, s.per_background[b].mean_luma, s.per_background[b].images);
  std::printf("  luma        mean %.1f, spread %.1f\n", s.luma_mean, s.luma_spread);
}

int run_eval(const EvalOptions& o) {
  std::vector<Judgement> judgements;
  nlohmann::json per_image = nlohmann::json::array();
  for (const fs::path& png : png_files(o.dir)) {
    const Caption caption = caption_of(png);
    judgements.push_back(judge(read_image(png.string()), caption));
    per_image.push_back(judgement_json(png, judgements.back()));
  }
  const JudgeSummary summary = summarize(judgements);
  if (o.json) {
    nlohmann::json out = summary_json(summary);
    out["per_image"] = per_image;
    std::cout << dump_for_output(out, 2) << "\n";
  } else {
    print_summary(o.dir, summary);
  }
  return 0;
}

struct JudgeModelOptions {
  std::string model;
  AdapterOptions adapters;
  std::string split = "both", sampler = "ddim", dtype = "f32";
  int64_t steps = 25, seeds = 4, size = 64, width = 0, height = 0;  // width/height 0: size
  int64_t captions = 0;  // per split, evenly spread over it; 0: all
  double cfg_scale = 1.5, guidance_rescale = 0.7;
  uint64_t seed = 1000;
  bool json = false;
  bool vae_ceiling = false;  // judge the VAE's reconstructions of reference renders instead
  int64_t best_latent_steps = 0;  // with vae_ceiling: optimise each latent this many steps first
  std::string best_latent_loss = "mse";  // mse | foreground (mse + ShapesWorld's foreground rule)
  std::string save;      // folder for the images (caption in each PNG's parameters)
  std::string markdown;  // label of the model: print one markdown table row per split
};

// | label | steps | split | correct | single | colour | shape | position | size | background | bg_error | mask IoU |
void print_markdown_row(const std::string& label, int64_t steps, const std::string& split, const JudgeSummary& s) {
  const auto& r = s.all;
  double bg_error = 0;
  int images = 0;
  for (const auto& b : s.per_background) {
    bg_error += b.mean_bg_error * b.images;
    images += b.images;
  }
  std::printf("| %s | %lld | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %.3f |\n", label.c_str(),
              static_cast<long long>(steps), split.c_str(), r.correct, r.single, r.colour, r.shape, r.position, r.size,
              r.background, images > 0 ? bg_error / images : 0.0, r.mask_iou);
}

// `count` items evenly spread over the list (0 or more than it holds: all of them).
template <class T>
std::vector<T> spread(const std::vector<T>& all, int64_t count) {
  if (count <= 0 || static_cast<size_t>(count) >= all.size()) return all;
  std::vector<T> out;
  for (int64_t i = 0; i < count; ++i) out.push_back(all[static_cast<size_t>(i) * all.size() / static_cast<size_t>(count)]);
  return out;
}

// The ceiling of a model at a size: its VAE's reconstruction (posterior mean,
// decoded) of the caption's reference render (unjittered, as evaluation
// targets are): deterministic, so one image per caption whatever --seeds says.
// With optimise_steps > 0, the latent is then fitted by Adam to reproduce the
// render through the frozen decoder: by pixel MSE, plus with `foreground`
// ShapesWorld's own foreground rule against the render's mask (the loss PeFL
// can add). What a latent generator could get from this decoder at best.
RgbImage vae_reconstruction(LoadedModel& model, const Caption& caption, int width, int height, int64_t optimise_steps,
                            bool foreground) {
  const auto x = image_tensor(render(caption, width, height)).unsqueeze(0);
  torch::Tensor latent;
  {
    torch::NoGradGuard no_grad;
    latent = nn::split_moments(model.vae->encode_moments(x)).mean;
  }
  if (optimise_steps > 0) {
    for (auto& p : model.vae->parameters()) p.set_requires_grad(false);
    const auto labels = train::label_map(caption, width, height, Jitter{}).unsqueeze(0);
    const auto bg_colour = train::background_colour(caption).unsqueeze(0);
    latent = latent.clone().set_requires_grad(true);
    torch::optim::Adam adam({latent}, torch::optim::AdamOptions(0.05));
    for (int64_t i = 0; i < optimise_steps; ++i) {
      adam.zero_grad();
      const auto decoded = model.vae->decode(latent);
      auto loss = torch::mse_loss(decoded, x);
      if (foreground) loss = loss + train::foreground_losses(decoded, bg_colour, labels, train::LossReduction::shape_area).mean();
      loss.backward();
      adam.step();
    }
  }
  torch::NoGradGuard no_grad;
  return rgb_from_tensor(model.vae->decode(latent.detach())[0].add(1).div(2).clamp(0, 1).permute({1, 2, 0}));
}

// Generates and judges in one process what scripts/eval_shapes_model.sh does
// with one txt2img call per caption: each caption of the split, `seeds` images
// from seeds seed, seed+1, ... (the same images, the model loaded once).
int run_judge_model(const JudgeModelOptions& o) {
  const std::string path = o.model.empty() ? asset_path("default-model") : o.model;
  if (!o.save.empty()) create_output_folder(o.save);
  LoadOptions load;
  load.dtype = o.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat;
  auto model = std::make_shared<LoadedModel>(load_model(path, load));
  merge_adapters(o.adapters, *model, std::cerr);
  Pipeline pipeline(model);
  // Every caption is generated with the same settings; only the prompt changes.
  GenerationOptions settings;
  settings.sampler = o.sampler;
  settings.steps = o.steps;
  settings.cfg_scale = o.cfg_scale;
  settings.guidance_rescale = o.guidance_rescale;
  settings.width = o.width > 0 ? o.width : o.size;
  settings.height = o.height > 0 ? o.height : o.size;
  settings.seed = o.seed;
  settings.batch_size = o.seeds;
  fit_threads_to_work(estimated_unet_step_flops(*model, settings));
  nlohmann::json out;
  for (const std::string split : {std::string("seen"), std::string("eval")}) {
    if (o.split != "both" && o.split != split) continue;
    std::vector<Judgement> judgements;
    for (const auto& [number, caption] : spread(numbered_captions(split), o.captions)) {
      GenerationOptions g = settings;
      g.prompt = caption_text(caption);
      std::vector<RgbImage> images;
      if (o.vae_ceiling) {
        images.push_back(vae_reconstruction(*model, caption, static_cast<int>(settings.width), static_cast<int>(settings.height),
                                             o.best_latent_steps, o.best_latent_loss == "foreground"));
      } else {
        const auto generated = pipeline.generate(g).images;
        for (int64_t i = 0; i < generated.size(0); ++i) images.push_back(rgb_from_tensor(generated[i]));
      }
      for (size_t i = 0; i < images.size(); ++i) {
        const RgbImage& rgb = images[i];
        judgements.push_back(judge(rgb, caption));
        if (!o.save.empty())
          write_png((fs::path(o.save) / (split + "-" + file_stem(number) + "-" + std::to_string(o.seed + i) + ".png")).string(),
                    rgb, {{"parameters", g.prompt}}, false);
      }
    }
    const auto summary = summarize(judgements);
    if (o.json) {
      out[split == "eval" ? "unseen" : "seen"] = summary_json(summary);
    } else if (!o.markdown.empty()) {
      print_markdown_row(o.markdown, o.steps, split == "eval" ? "unseen" : "seen", summary);
    } else {
      if (o.vae_ceiling)
        std::printf("== %s: VAE reconstructions of the renders, %lld seeds, %lldx%lld\n", split.c_str(),
                    static_cast<long long>(o.seeds), static_cast<long long>(settings.width),
                    static_cast<long long>(settings.height));
      else
        std::printf("== %s: sampler %s, %lld steps, cfg %g, rescale %g, %lld seeds, %lldx%lld\n", split.c_str(),
                    o.sampler.c_str(), static_cast<long long>(o.steps), o.cfg_scale, o.guidance_rescale,
                    static_cast<long long>(o.seeds), static_cast<long long>(settings.width),
                    static_cast<long long>(settings.height));
      print_summary(path, summary);
    }
  }
  if (o.json) std::cout << dump_for_output(out, 2) << "\n";
  return 0;
}

}  // namespace

Runner add_shapes_command(CLI::App& app) {
  auto render_opt = std::make_shared<RenderOptions>();
  auto eval_opt = std::make_shared<EvalOptions>();
  auto* shapes = app.add_subcommand("shapes", "ShapesWorld: render captioned images, judge generated ones");
  shapes->require_subcommand(1);

  auto* render_cmd = shapes->add_subcommand("render", "Write ShapesWorld images with their captions");
  render_cmd->add_option("-o,--output", render_opt->out, "output folder")->required();
  render_cmd->add_option("--split", render_opt->split, "eval (unseen), seen, train or all")
      ->check(CLI::IsMember({"eval", "seen", "train", "all"}))
      ->capture_default_str();
  render_cmd->add_option("-W,--width", render_opt->width, "image width (16 or more: the judge reads nothing smaller)")->check(CLI::Range(16, 4096))->capture_default_str();
  render_cmd->add_option("-H,--height", render_opt->height, "image height (16 or more)")->check(CLI::Range(16, 4096))->capture_default_str();
  render_cmd->add_option("-s,--seed", render_opt->seed, "seed of the jitter")
      ->check(seed_check())
      ->capture_default_str();
  render_cmd->add_flag("--jitter", render_opt->jitter, "jitter each centre as training images are (±4%)");
  render_cmd->add_flag("--overwrite", render_opt->overwrite, "replace existing images");

  auto* eval_cmd = shapes->add_subcommand("eval", "Judge every PNG in a folder against its caption");
  eval_cmd->add_option("dir", eval_opt->dir, "folder of PNGs, captions in .txt sidecars or PNG parameters")
      ->required();
  eval_cmd->add_flag("--json", eval_opt->json, "print JSON, with every image's judgement");

  auto jm = std::make_shared<JudgeModelOptions>();
  auto* judge_cmd = shapes->add_subcommand(
      "judge-model", "Generate every caption of the seen and unseen splits with a model and judge the images");
  judge_cmd->add_option("-m,--model", jm->model, "model (default: the embedded default model)");
  judge_cmd->add_option("--lora", jm->adapters.loras, "LoRA FILE[:SCALE], repeatable");
  judge_cmd->add_option("--split", jm->split, "seen, eval (unseen) or both")
      ->check(CLI::IsMember({"seen", "eval", "both"}))->capture_default_str();
  judge_cmd->add_option("--sampler", jm->sampler, "sampler")->capture_default_str();
  judge_cmd->add_option("--steps", jm->steps, "sampling steps")->capture_default_str();
  judge_cmd->add_option("--dtype", jm->dtype, "f32 or bf16")->check(CLI::IsMember({"f32", "bf16"}))->capture_default_str();
  judge_cmd->add_option("--cfg-scale", jm->cfg_scale, "guidance scale")->capture_default_str();
  judge_cmd->add_option("--guidance-rescale", jm->guidance_rescale, "guidance rescale")->capture_default_str();
  judge_cmd->add_option("--captions", jm->captions, "captions per split, evenly spread over it (default: all)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  judge_cmd->add_option("--seeds", jm->seeds, "images per caption")->check(CLI::Range(1, 64))->capture_default_str();
  judge_cmd->add_option("-s,--seed", jm->seed, "first seed")->check(seed_check())->capture_default_str();
  judge_cmd->add_option("--size", jm->size, "image width and height")->check(CLI::Range(16, 2048))->capture_default_str();
  judge_cmd->add_option("-W,--width", jm->width, "image width (default: --size)")->check(CLI::Range(16, 2048));
  judge_cmd->add_option("-H,--height", jm->height, "image height (default: --size)")->check(CLI::Range(16, 2048));
  judge_cmd->add_option("--resadapter", jm->adapters.resadapter, "ResAdapter PATH[:SCALE] (folder or LORA,NORMS)");
  judge_cmd->add_flag("--vae-ceiling", jm->vae_ceiling,
                      "judge the model's VAE reconstructions of the reference renders (the ceiling at this size; one image per caption)");
  judge_cmd->add_option("--best-latent", jm->best_latent_steps,
                        "with --vae-ceiling: first fit each latent to the render through the decoder for N Adam steps "
                        "(the decoder's own ceiling)")
      ->check(CLI::Range(int64_t{0}, int64_t{10000}))->needs("--vae-ceiling");
  judge_cmd->add_option("--best-latent-loss", jm->best_latent_loss,
                        "what --best-latent fits: mse (pixels) or foreground (pixels + ShapesWorld's foreground rule)")
      ->check(CLI::IsMember({"mse", "foreground"}))->capture_default_str();
  judge_cmd->add_flag("--json", jm->json, "print JSON");
  judge_cmd->add_option("--markdown", jm->markdown, "print one markdown table row per split, labelled with this")
      ->excludes("--json");
  judge_cmd->add_option("--save", jm->save, "also write the images to this folder (judge them again with shapes eval)");

  return [=]() {
    if (!*shapes) return -1;
    if (*render_cmd) return run_render(*render_opt);
    if (*judge_cmd) return run_judge_model(*jm);
    return run_eval(*eval_opt);
  };
}

}  // namespace lumen::cli
