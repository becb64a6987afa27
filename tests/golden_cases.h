// The golden-data runner: reads the manifest under LUMEN_GOLDEN_DIR and checks
// each case of a supported kind against the reference outputs.
#pragma once
#include <torch/torch.h>

#include <map>
#include <stdexcept>
#include <nlohmann/json.hpp>
#include <string>

namespace lumen::golden {

std::string golden_dir();  // $LUMEN_GOLDEN_DIR or ../shared/golden
// Where the networks run: $LUMEN_TEST_DEVICE (cpu, cuda, cuda:N), default cpu.
// Samplers, tokenizers and comparisons stay on the CPU.
torch::Device test_device();

// Thrown by a case this build cannot run (an inference-only build has no reward models).
struct SkipCase : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Case {
  std::string name, kind, dir;  // dir: absolute path of the case folder
  nlohmann::json spec;          // case.json
  std::map<std::string, torch::Tensor> io;
  double atol = 0, rtol = 0;
  std::string path(const std::string& relative) const { return dir + "/" + relative; }
  torch::Tensor input(const std::string& name) const;  // "input_<name>", error if absent
  bool has(const std::string& key) const { return io.count(key) > 0; }
};

struct Result {
  bool pass = true;
  double max_abs_err = 0;
  std::string detail;  // first failure
  // Element-wise |a-e| <= atol + rtol*|e| (exact for integers); with
  // `nan_equal`, positions where the reference is NaN accept any value.
  void compare(const std::string& what, const torch::Tensor& actual, const torch::Tensor& expected, double atol,
               double rtol, bool nan_equal = false);
};

Case load_case(const std::string& root, const nlohmann::json& manifest_entry);

// Kinds this build implements; others print SKIP.
bool kind_supported(const std::string& kind);
Result run_case(const Case& c);

}  // namespace lumen::golden
