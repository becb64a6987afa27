// Checkpoint conversion against the golden checkpoint_convert cases: single
// file -> single file (bit-exact), single file -> diffusers -> load (exact),
// golden diffusers models -> single file (exactly diffusers' script output),
// LoRA merged on convert == LoRA merged at load, and bad CLI input.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "adapters/lora_apply.h"
#include "convert/diffusers_to_ldm.h"
#include "convert/model_writer.h"
#include "error.h"
#include "io/safetensors.h"
#include "io/safetensors_torch.h"
#include "model/model_loader.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace lumen;

namespace {

std::string golden() {
  const char* env = std::getenv("LUMEN_GOLDEN_DIR");
  return env && *env ? env : "../shared/golden";
}

#define REQUIRE_GOLDEN()                                                                                    \
  if (!fs::exists(golden() + "/manifest.json"))                                                             \
  GTEST_SKIP() << "*** golden data missing: " << golden() << "/manifest.json (set LUMEN_GOLDEN_DIR) ***"

std::vector<std::string> convert_cases() {
  std::ifstream in(golden() + "/manifest.json");
  json m = json::parse(in);
  std::vector<std::string> dirs;
  for (const auto& c : m["cases"])
    if (c["kind"] == "checkpoint_convert") dirs.push_back(golden() + "/" + c["dir"].get<std::string>());
  return dirs;
}

struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "lumen_convert_XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Keys of a single file the loader does not map.
std::set<std::string> unmapped_keys(const std::string& file) {
  auto f = SafetensorsFile::open(file);
  std::vector<TensorInfo> infos;
  for (const auto& e : f->entries()) infos.push_back({e.name, e.shape, dtype_name(e.dtype)});
  auto r = map_ldm_to_diffusers(infos);
  return {r.unmapped.begin(), r.unmapped.end()};
}

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() && torch::equal(a.contiguous(), b.contiguous());
}

// Compares a tensor set to a reference single file: same keys (less `allowed_missing`), dtypes, shapes, bytes.
void expect_equal_to_file(const std::map<std::string, torch::Tensor>& actual, const std::string& file,
                          const std::set<std::string>& allowed_missing) {
  auto expected = load_safetensors(file);
  size_t compared = 0, missing = 0;
  for (const auto& [k, e] : expected) {
    auto it = actual.find(k);
    if (it == actual.end()) {
      if (allowed_missing.count(k)) {
        ++missing;
        continue;
      }
      ADD_FAILURE() << file << ": key '" << k << "' not written";
      continue;
    }
    EXPECT_TRUE(same_bytes(it->second, e)) << file << ": '" << k << "' differs";
    ++compared;
  }
  for (const auto& [k, a] : actual) EXPECT_TRUE(expected.count(k)) << file << ": extra key '" << k << "' written";
  EXPECT_GT(compared, 100u);
  if (missing) std::cout << "[ note ] " << file << ": " << missing << " unmapped key(s) not written back\n";
}

void expect_same_parameters(torch::nn::Module& a, torch::nn::Module& b, const std::string& what, double atol = 0) {
  std::map<std::string, torch::Tensor> pa, pb;
  for (auto& i : a.named_parameters()) pa[i.key()] = i.value();
  for (auto& i : b.named_parameters()) pb[i.key()] = i.value();
  ASSERT_EQ(pa.size(), pb.size()) << what;
  for (const auto& [k, t] : pa) {
    ASSERT_TRUE(pb.count(k)) << what << ": " << k;
    if (atol == 0)
      EXPECT_TRUE(same_bytes(t, pb[k])) << what << ": " << k;
    else
      EXPECT_TRUE(torch::allclose(t, pb[k], 0, atol)) << what << ": " << k << " max diff "
                                                       << (t - pb[k]).abs().max().item<double>();
  }
}

void expect_same_model(LoadedModel& a, LoadedModel& b, double atol = 0) {
  auto na = model_networks(a), nb = model_networks(b);
  ASSERT_EQ(na.size(), nb.size());
  for (const auto& [name, m] : na) {
    ASSERT_TRUE(nb.count(name)) << name;
    expect_same_parameters(*m, *nb[name], name, atol);
  }
}

// A diffusers folder over the golden models (which keep no vocab/merges and share sd15's TE and VAE with sdxl).
std::string golden_diffusers_folder(const std::string& model, const std::string& dir) {
  const std::string models = fs::absolute(golden() + "/models").string();
  const std::string src = models + "/" + model;
  fs::copy_file(src + "/model_index.json", dir + "/model_index.json");
  fs::create_directory_symlink(src + "/unet", dir + "/unet");
  fs::create_directory_symlink(models + "/sd15/vae", dir + "/vae");
  fs::create_directory_symlink(models + "/sd15/text_encoder", dir + "/text_encoder");
  if (fs::exists(src + "/text_encoder_2")) fs::create_directory_symlink(src + "/text_encoder_2", dir + "/text_encoder_2");
  fs::create_directory_symlink(src + "/scheduler", dir + "/scheduler");
  for (const char* tok : {"tokenizer", "tokenizer_2"}) {
    if (!fs::exists(src + "/" + tok)) continue;
    fs::create_directory(dir + "/" + tok);
    fs::copy_file(src + "/" + tok + "/tokenizer_config.json", dir + "/" + tok + "/tokenizer_config.json");
    fs::copy_file(golden() + "/tokenizer/vocab.json", dir + "/" + tok + "/vocab.json");
    fs::copy_file(golden() + "/tokenizer/merges.txt", dir + "/" + tok + "/merges.txt");
  }
  return dir;
}

// The lumen program, as a user runs it (tests compile no CLI source); its exit status.
int run_cli(const std::vector<std::string>& args) {
  std::string command = LUMEN_BINARY;
  for (const auto& a : args) command += " '" + a + "'";
  command += " >/dev/null 2>&1";
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(Convert, KeyMapMatchesGoldenKeyMap) {
  REQUIRE_GOLDEN();
  for (const auto& dir : convert_cases()) {
    std::ifstream in(dir + "/key_map.json");
    const json km = json::parse(in)["ldm_key_to_diffusers"];
    LoadedModel model = load_model(dir + "/model.safetensors");
    size_t n = 0;
    for (const auto& [name, module] : model_networks(model)) {
      std::vector<TensorInfo> infos;
      for (auto& p : module->named_parameters()) infos.push_back({p.key(), p.value().sizes().vec(), ""});
      const auto r = map_diffusers_to_ldm(name, infos, model.plan.components.at(name).config, model.plan.family);
      EXPECT_TRUE(r.unmapped.empty()) << dir << " " << name << ": " << r.unmapped.size() << " unmapped";
      for (const auto& t : r.targets) {
        ASSERT_TRUE(km.contains(t.ldm_key)) << dir << ": " << t.ldm_key;
        const json& e = km[t.ldm_key];
        EXPECT_EQ(e["component"], name) << t.ldm_key;
        EXPECT_EQ(e["transform"], transform_name(t.transform)) << t.ldm_key;
        const json keys = e["key"].is_array() ? e["key"] : json::array({e["key"]});
        EXPECT_EQ(keys, json(t.diffusers_keys)) << t.ldm_key;
        ++n;
      }
    }
    EXPECT_EQ(n, km.size()) << dir;
  }
}

TEST(Convert, SingleFileWrittenBackBitExact) {
  REQUIRE_GOLDEN();
  for (const auto& dir : convert_cases()) {
    SCOPED_TRACE(dir);
    const std::string file = dir + "/model.safetensors";
    LoadedModel model = load_model(file);
    TempDir tmp;
    const std::string out = tmp.path + "/out.safetensors";
    write_single_file(model, out, {torch::kHalf, {}});
    auto written = load_safetensors(out);
    expect_equal_to_file(written, file, unmapped_keys(file));
  }
}

TEST(Convert, DiffusersFolderLoadsIdentically) {
  REQUIRE_GOLDEN();
  for (const auto& dir : convert_cases()) {
    SCOPED_TRACE(dir);
    LoadedModel model = load_model(dir + "/model.safetensors");
    TempDir tmp;
    const std::string out = tmp.path + "/model";
    write_diffusers_folder(model, out, {torch::kFloat, {}});
    for (const char* f : {"model_index.json", "unet/config.json", "vae/diffusion_pytorch_model.safetensors",
                          "scheduler/scheduler_config.json"})
      EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
    LoadedModel back = load_model(out);
    EXPECT_EQ(back.plan.format, "diffusers");
    EXPECT_EQ(back.plan.family, model.plan.family);
    EXPECT_EQ(back.plan.tokenizers.size(), model.plan.tokenizers.size());
    expect_same_model(model, back);
    EXPECT_EQ(back.pad_id, model.pad_id);
    EXPECT_EQ(back.pad_id_2, model.pad_id_2);
  }
}

TEST(Convert, GoldenDiffusersModelsGiveTheReferenceSingleFiles) {
  REQUIRE_GOLDEN();
  for (auto [model_name, case_name] : {std::pair<const char*, const char*>{"sd15", "sd15_single_file"},
                                       {"sdxl", "sdxl_single_file"}}) {
    SCOPED_TRACE(model_name);
    const std::string ref = golden() + "/checkpoint_convert/" + case_name + "/model.safetensors";
    if (!fs::exists(ref) || !fs::exists(golden() + "/models/" + model_name)) continue;
    TempDir tmp;
    LoadedModel model = load_model(golden_diffusers_folder(model_name, tmp.path));
    expect_equal_to_file(single_file_tensors(model, torch::kHalf), ref, {});
  }
}

TEST(Convert, LoraMergedOnConvertEqualsLoraAppliedAtLoad) {
  REQUIRE_GOLDEN();
  const std::string lora_dir = golden() + "/lora/sd15_kohya_locon";
  if (!fs::exists(lora_dir)) GTEST_SKIP() << "*** no golden lora/sd15_kohya_locon ***";
  std::ifstream in(lora_dir + "/case.json");
  const double scale = json::parse(in)["params"].value("lora_scale", 1.0);
  TempDir tmp;
  fs::create_directory(tmp.path + "/sd15");
  const std::string folder = golden_diffusers_folder("sd15", tmp.path + "/sd15");
  const std::string lora = lora_dir + "/lora_kohya.safetensors";
  const std::string out = tmp.path + "/merged.safetensors";
  ASSERT_EQ(run_cli({"convert", folder, "-o", out, "--dtype", "f32", "--lora", lora + ":" + std::to_string(scale)}), 0);

  LoadedModel expected = load_model(folder);
  adapters::LoraStack stack(adapters::adapter_components(expected), adapters::ApplyMode::Merge);
  stack.add(lora, std::make_shared<adapters::LoraFile>(adapters::read_lora_file(lora)), scale);
  LoadedModel merged = load_model(out);
  expect_same_model(merged, expected, 1e-6);
  // The LoRA changed something.
  LoadedModel plain = load_model(folder);
  EXPECT_FALSE(torch::equal(plain.unet->named_parameters()["down_blocks.0.attentions.0.proj_in.weight"],
                            merged.unet->named_parameters()["down_blocks.0.attentions.0.proj_in.weight"]));
}

TEST(Convert, CliWritesBothFormatsAndRefusesBadInput) {
  REQUIRE_GOLDEN();
  const std::string file = golden() + "/checkpoint_convert/sd15_single_file/model.safetensors";
  TempDir tmp;
  const std::string out = tmp.path + "/x.safetensors";
  ASSERT_EQ(run_cli({"convert", file, "-o", out, "--dtype", "f16"}), 0);
  expect_equal_to_file(load_safetensors(out), file, unmapped_keys(file));
  // Existing output without --overwrite.
  EXPECT_EQ(run_cli({"convert", file, "-o", out}), 1);
  EXPECT_EQ(run_cli({"convert", file, "-o", out, "--overwrite", "--dtype", "bf16"}), 0);
  EXPECT_EQ(load_safetensors(out).begin()->second.scalar_type(), torch::kBFloat16);
  // Unknown format / dtype.
  EXPECT_EQ(run_cli({"convert", file, "-o", tmp.path + "/y", "--format", "ckpt"}), 1);
  EXPECT_EQ(run_cli({"convert", file, "-o", tmp.path + "/y", "--dtype", "f64"}), 1);
  EXPECT_FALSE(fs::exists(tmp.path + "/y"));
  // Diffusers folder by --format, loadable.
  ASSERT_EQ(run_cli({"convert", file, "-o", tmp.path + "/folder", "--format", "diffusers"}), 0);
  EXPECT_EQ(plan_model(tmp.path + "/folder").format, "diffusers");
  EXPECT_EQ(run_cli({"convert", file, "-o", tmp.path + "/folder", "--format", "diffusers"}), 1);
}

// No golden SD2 / refiner single file: the OpenCLIP layouts by keys and shapes (the round trip runs inside).
TEST(Convert, OpenClipLayoutsForSd2AndRefiner) {
  const int64_t d = 8;
  std::vector<TensorInfo> te = {{"text_model.embeddings.token_embedding.weight", {100, d}, ""},
                                {"text_model.embeddings.position_embedding.weight", {77, d}, ""},
                                {"text_model.final_layer_norm.weight", {d}, ""},
                                {"text_model.final_layer_norm.bias", {d}, ""}};
  for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"})
    for (const char* leaf : {"weight", "bias"})
      te.push_back({std::string("text_model.encoder.layers.0.self_attn.") + p + "." + leaf,
                    std::string(leaf) == "weight" ? std::vector<int64_t>{d, d} : std::vector<int64_t>{d}, ""});
  auto sd2 = map_diffusers_to_ldm("text_encoder", te, json::object(), ModelFamily::SD2);
  EXPECT_TRUE(sd2.unmapped.empty());
  std::map<std::string, LdmTarget> by_key;
  for (const auto& t : sd2.targets) by_key[t.ldm_key] = t;
  ASSERT_TRUE(by_key.count("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"));
  const auto& qkv = by_key["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"];
  EXPECT_EQ(qkv.transform, Transform::CatDim0);
  EXPECT_EQ(qkv.shape, (std::vector<int64_t>{3 * d, d}));
  EXPECT_TRUE(by_key.count("cond_stage_model.model.positional_embedding"));
  EXPECT_TRUE(by_key.count("cond_stage_model.model.ln_final.bias"));
  EXPECT_TRUE(by_key.count("cond_stage_model.model.transformer.resblocks.0.attn.out_proj.weight"));

  te.push_back({"text_projection.weight", {4, d}, ""});
  auto refiner = map_diffusers_to_ldm("text_encoder_2", te, json::object(), ModelFamily::SDXLRefiner);
  EXPECT_TRUE(refiner.unmapped.empty());
  bool projection = false;
  for (const auto& t : refiner.targets) {
    EXPECT_EQ(t.ldm_key.rfind("conditioner.embedders.0.model.", 0), 0u) << t.ldm_key;
    if (t.ldm_key == "conditioner.embedders.0.model.text_projection") {
      projection = true;
      EXPECT_EQ(t.transform, Transform::Transpose);
      EXPECT_EQ(t.shape, (std::vector<int64_t>{d, 4}));
    }
  }
  EXPECT_TRUE(projection);
  EXPECT_THROW(ldm_prefix("text_encoder_2", ModelFamily::SD1), Error);
}
