// `lumen convert`: a model (diffusers folder or single file) with adapters
// merged, written as one single-file checkpoint or a diffusers folder.
#include <filesystem>
#include <iostream>

#include "cli/adapter_options.h"
#include "cli/commands.h"
#include "convert/model_writer.h"
#include "error.h"
#include "io/atomic_file.h"
#include "model/model_loader.h"
#include "pipeline/recommended_settings.h"

namespace lumen::cli {

Runner add_convert_command(CLI::App& app) {
  struct Options {
    std::string model, out, format, dtype = "f32", config;
    AdapterOptions adapters;
    bool overwrite = false;
  };
  auto opt = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("convert", "Convert a model between single-file and diffusers layouts, merging adapters");
  cmd->add_option("model", opt->model, "diffusers folder or .safetensors checkpoint")->required();
  cmd->add_option("-o,--output", opt->out, "output .safetensors file or folder")->required();
  cmd->add_option("--format", opt->format,
                  "single-file or diffusers (default: single-file for a .safetensors output, else diffusers)");
  cmd->add_option("--dtype", opt->dtype, "f32, f16 or bf16")->capture_default_str();
  cmd->add_option("--lora", opt->adapters.loras, "LoRA/LoCon/LoHa/LoKr file to merge, optionally FILE:SCALE; repeatable")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--resadapter", opt->adapters.resadapter, "ResAdapter to merge (folder or LORA,NORMS), optionally PATH:SCALE");
  cmd->add_flag("--resadapter-blend", opt->adapters.resadapter_blend, "blend ResAdapter norms instead of replacing them");
  cmd->add_option("--config", opt->config, "YAML/JSON overriding detected model config fields");
  cmd->add_flag("--overwrite", opt->overwrite, "replace an existing output");
  return [opt, cmd]() {
    if (!*cmd) return -1;
    namespace fs = std::filesystem;
    std::string format = opt->format;
    if (format.empty()) {
      const std::string& o = opt->out;
      const std::string ext = ".safetensors";
      format = o.size() > ext.size() && o.compare(o.size() - ext.size(), ext.size(), ext) == 0 ? "single-file" : "diffusers";
    }
    if (format != "single-file" && format != "diffusers")
      throw Error("--format " + format, "unknown format (single-file, diffusers)");
    const torch::Dtype dtype = parse_write_dtype(opt->dtype);
    if (fs::exists(opt->out) && !opt->overwrite) throw Error(opt->out, "already exists (use --overwrite to replace it)");
    if (fs::exists(opt->out) && format == "single-file" && fs::is_directory(opt->out))
      throw Error(opt->out, "is a folder; a single-file checkpoint needs a file name");
    if (fs::exists(opt->out) && format == "diffusers" && !fs::is_directory(opt->out))
      throw Error(opt->out, "is a file; a diffusers model needs a folder");

    LoadOptions load;
    load.config_override = opt->config;
    load.dtype = torch::kFloat;  // adapters merge in float32; the output dtype is applied on writing
    LoadedModel model = load_model(opt->model, load);
    merge_adapters(opt->adapters, model, std::cerr);

    WriteOptions write;
    write.dtype = dtype;
    write.metadata["lumen_source"] = fs::path(opt->model).filename().string();
    write.recommended_settings = recommended_settings_text(opt->model);  // its sampling advice goes with it
    if (!opt->adapters.loras.empty() || !opt->adapters.resadapter.empty()) {
      std::string merged;
      for (const auto& l : opt->adapters.loras) merged += (merged.empty() ? "" : ";") + fs::path(l).filename().string();
      if (!opt->adapters.resadapter.empty())
        merged += (merged.empty() ? "resadapter " : ";resadapter ") + fs::path(opt->adapters.resadapter).filename().string();
      write.metadata["lumen_merged_adapters"] = merged;
    }
    if (format == "single-file")
      write_single_file(model, opt->out, write);
    else
      write_folder_atomically(opt->out, [&](const std::string& tmp) { write_diffusers_folder(model, tmp, write); });
    std::cout << "wrote " << format << " " << family_name(model.plan.family) << " model to " << opt->out << "\n";
    return 0;
  };
}

}  // namespace lumen::cli
