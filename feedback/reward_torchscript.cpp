// Any reward exported as TorchScript: forward(images [B,3,H,W] in [-1,1]) -> [B] or [B,1].
// Trusted files only: a TorchScript module can run arbitrary operators
// (file and network I/O included), unlike safetensors weights.
#include <torch/script.h>

#include <sys/stat.h>

#include "error.h"
#include "reward.h"

namespace lumen::train {
namespace {

// LibTorch's messages span lines and may start with one ("\nUnknown type
// name 'os.system':\n…"): the first non-empty line, trimmed to 200 characters.
std::string one_line(const std::string& text) {
  size_t begin = text.find_first_not_of(" \n\r\t");
  if (begin == std::string::npos) return "(no message)";
  const size_t end = text.find('\n', begin);
  std::string line = text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
  while (!line.empty() && (line.back() == ':' || line.back() == ' ' || line.back() == '\r')) line.pop_back();
  return line.size() > 200 ? line.substr(0, 200) + "…" : line;
}

class TorchScriptReward : public ImageReward {
 public:
  TorchScriptReward(const std::string& path, const torch::Device& device) : path_(path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throw Error(path, "no such file");
    try {
      module_ = torch::jit::load(path, device);
    } catch (const c10::Error& e) {
      throw Error(path, "not a loadable TorchScript module: " + one_line(e.what_without_backtrace()));
    } catch (const std::exception& e) {  // the TorchScript compiler's own errors are not c10::Errors
      throw Error(path, "not a loadable TorchScript module: " + one_line(e.what()));
    }
    module_.eval();
    for (auto p : module_.parameters()) p.requires_grad_(false);
  }

  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) override {
    torch::jit::IValue out;
    try {
      out = module_.forward({images});
    } catch (const c10::Error& e) {
      throw Error(path_, "forward failed: " + one_line(e.what_without_backtrace()));
    } catch (const std::exception& e) {
      throw Error(path_, "forward failed: " + one_line(e.what()));
    }
    if (!out.isTensor()) throw Error(path_, "forward must return a tensor");
    auto s = out.toTensor();
    const int64_t b = images.size(0);
    if (s.dim() == 2 && s.size(1) == 1) s = s.squeeze(1);
    if (s.dim() != 1 || s.size(0) != b)
      throw Error(path_, "forward must return [" + std::to_string(b) + "] or [" + std::to_string(b) + ",1] scores");
    return s.to(torch::kFloat);
  }

 private:
  std::string path_;
  torch::jit::Module module_;
};

}  // namespace

std::unique_ptr<ImageReward> make_torchscript_reward(const std::string& path, const torch::Device& device) {
  return std::make_unique<TorchScriptReward>(path, device);
}

}  // namespace lumen::train
