#include "adapters/lora_format.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "error.h"
#include "io/safetensors_torch.h"

namespace lumen::adapters {
namespace {

// Key suffix -> role. PEFT and old diffusers names map onto kohya's.
const std::vector<std::pair<std::string, std::string>>& known_suffixes() {
  static const std::vector<std::pair<std::string, std::string>> suffixes = {
      {"lora_down.weight", "lora_down"}, {"lora_up.weight", "lora_up"},   {"lora_mid.weight", "lora_mid"},
      {"lora_A.weight", "lora_down"},    {"lora_B.weight", "lora_up"},    {"lora.down.weight", "lora_down"},
      {"lora.up.weight", "lora_up"},     {"alpha", "alpha"},              {"hada_w1_a", "hada_w1_a"},
      {"hada_w1_b", "hada_w1_b"},        {"hada_w2_a", "hada_w2_a"},      {"hada_w2_b", "hada_w2_b"},
      {"hada_t1", "hada_t1"},            {"hada_t2", "hada_t2"},          {"lokr_w1", "lokr_w1"},
      {"lokr_w1_a", "lokr_w1_a"},        {"lokr_w1_b", "lokr_w1_b"},      {"lokr_w2", "lokr_w2"},
      {"lokr_w2_a", "lokr_w2_a"},        {"lokr_w2_b", "lokr_w2_b"},      {"lokr_t2", "lokr_t2"}};
  return suffixes;
}

struct Prefix {
  std::string text, component;
  bool underscored;
};
// "lora_te_" cannot shadow "lora_te1_", nor "text_encoder." "text_encoder_2.", so order is free.
const std::vector<Prefix>& known_prefixes() {
  static const std::vector<Prefix> prefixes = {
      {"lora_unet_", "unet", true},       {"lora_te_", "text_encoder", true},
      {"lora_te1_", "text_encoder", true}, {"lora_te2_", "text_encoder_2", true},
      {"unet.", "unet", false},            {"text_encoder.", "text_encoder", false},
      {"text_encoder_2.", "text_encoder_2", false}};
  return prefixes;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0 &&
         s[s.size() - tail.size() - 1] == '.';
}

std::string shape_str(at::IntArrayRef shape) {
  std::ostringstream s;
  s << shape;
  return s.str();
}

DeltaKind kind_of_role(const std::string& role) {
  if (role.rfind("hada_", 0) == 0) return DeltaKind::LoHa;
  if (role.rfind("lokr_", 0) == 0) return DeltaKind::LoKr;
  return DeltaKind::LoRA;
}

// Checks what can be checked without a model: parts complete, ranks agree, alpha usable.
void validate(const ModuleDelta& d, const std::string& path) {
  auto fail = [&](const std::string& problem) { throw Error(path, d.key + ": " + problem); };
  auto need = [&](const std::string& role, std::initializer_list<int64_t> dims) -> const torch::Tensor& {
    const torch::Tensor* t = d.part(role);
    if (!t) fail("has no " + role);
    for (int64_t n : dims)
      if (t->dim() == n) return *t;
    fail(role + " has shape " + shape_str(t->sizes()) + "; expected a " + std::to_string(*dims.begin()) + "-D tensor");
    return *t;
  };
  auto same_rank = [&](const std::string& a, int64_t ra, const std::string& b, int64_t rb) {
    if (ra != rb) fail("ranks disagree: " + a + " has rank " + std::to_string(ra) + ", " + b + " has " + std::to_string(rb));
  };
  if (d.alpha && (!std::isfinite(*d.alpha) || *d.alpha == 0))
    fail("alpha is " + std::to_string(*d.alpha) + "; it must be finite and non-zero");
  switch (d.kind) {
    case DeltaKind::LoRA: {
      const auto& down = need("lora_down", {2, 4});
      const auto& up = need("lora_up", {2, 4});
      same_rank("lora_down", down.size(0), "lora_up", up.size(1));
      if (d.part("lora_mid")) {
        const auto& mid = need("lora_mid", {4});
        same_rank("lora_down", down.size(0), "lora_mid", mid.size(1));
        same_rank("lora_up", up.size(1), "lora_mid", mid.size(0));
      }
      if (down.size(0) == 0) fail("has rank 0");
      break;
    }
    case DeltaKind::LoHa:
      for (const char* n : {"1", "2"}) {
        const std::string w = std::string("hada_w") + n;
        const auto& a = need(w + "_a", {2});
        const auto& b = need(w + "_b", {2});
        if (const torch::Tensor* t = d.part(std::string("hada_t") + n)) {  // CP: a [r,out], b [r,in], t [r,r,k,k]
          same_rank(w + "_a", a.size(0), w + "_b", b.size(0));
          need(std::string("hada_t") + n, {4});
          same_rank(w + "_b", b.size(0), std::string("hada_t") + n, t->size(1));
          same_rank(w + "_a", a.size(0), std::string("hada_t") + n, t->size(0));
        } else {
          same_rank(w + "_a", a.size(1), w + "_b", b.size(0));
        }
      }
      if ((d.part("hada_t1") != nullptr) != (d.part("hada_t2") != nullptr)) fail("has only one of hada_t1, hada_t2");
      break;
    case DeltaKind::LoKr:
      for (const char* n : {"1", "2"}) {
        const std::string w = std::string("lokr_w") + n;
        if (d.part(w)) {
          need(w, {2, 4});
          continue;
        }
        const auto& a = need(w + "_a", {2});
        const auto& b = need(w + "_b", {2});
        if (const torch::Tensor* t = (w == "lokr_w2" ? d.part("lokr_t2") : nullptr)) {
          need("lokr_t2", {4});
          same_rank(w + "_a", a.size(0), w + "_b", b.size(0));
          same_rank(w + "_b", b.size(0), "lokr_t2", t->size(1));
        } else {
          same_rank(w + "_a", a.size(1), w + "_b", b.size(0));
        }
      }
      break;
  }
}

// sum_ij t[i,j,k,l] a[i,p] b[j,r] -> [p,r,k,l] (LyCORIS' Tucker/CP rebuild).
torch::Tensor rebuild_tucker(const torch::Tensor& t, const torch::Tensor& a, const torch::Tensor& b) {
  return torch::einsum("ijkl,ip,jr->prkl", {t, a, b});
}

torch::Tensor lora_product(const ModuleDelta& d) {
  const auto& down = *d.part("lora_down");
  const auto& up = *d.part("lora_up");
  if (const torch::Tensor* mid = d.part("lora_mid"))  // 1x1 down, kxk mid, 1x1 up
    return torch::einsum("ijkl,jr,pi->prkl", {*mid, down.flatten(1), up.flatten(1)});
  return up.flatten(1).mm(down.flatten(1));
}

torch::Tensor loha_product(const ModuleDelta& d) {
  auto half = [&](const std::string& n) {
    const auto& a = *d.part("hada_w" + n + "_a");
    const auto& b = *d.part("hada_w" + n + "_b");
    if (const torch::Tensor* t = d.part("hada_t" + n)) return rebuild_tucker(*t, a, b);
    return a.mm(b);
  };
  return half("1") * half("2");
}

torch::Tensor lokr_product(const ModuleDelta& d) {
  auto w1 = d.part("lokr_w1") ? *d.part("lokr_w1") : d.part("lokr_w1_a")->mm(*d.part("lokr_w1_b"));
  torch::Tensor w2;
  if (d.part("lokr_w2")) w2 = *d.part("lokr_w2");
  else if (d.part("lokr_t2")) w2 = rebuild_tucker(*d.part("lokr_t2"), *d.part("lokr_w2_a"), *d.part("lokr_w2_b"));
  else w2 = d.part("lokr_w2_a")->mm(*d.part("lokr_w2_b"));
  if (w2.dim() == 4 && w1.dim() == 2) w1 = w1.unsqueeze(2).unsqueeze(3);
  return torch::kron(w1, w2);
}

// The shape lora_product / loha_product / lokr_product would give, from the
// factors' shapes alone (validate() has checked their ranks and dimensions).
std::vector<int64_t> delta_shape(const ModuleDelta& d, const std::string& where) {
  auto sizes = [](const torch::Tensor& t) { return t.sizes().vec(); };
  auto tucker = [](const torch::Tensor& t, const torch::Tensor& a, const torch::Tensor& b) {
    return std::vector<int64_t>{a.size(1), b.size(1), t.size(2), t.size(3)};
  };
  switch (d.kind) {
    case DeltaKind::LoRA: {
      const auto& down = *d.part("lora_down");
      const int64_t out = d.part("lora_up")->size(0);
      if (const torch::Tensor* mid = d.part("lora_mid")) return {out, down.size(1), mid->size(2), mid->size(3)};
      return {out, down.flatten(1).size(1)};
    }
    case DeltaKind::LoHa: {
      auto half = [&](const std::string& n) {
        const auto& a = *d.part("hada_w" + n + "_a");
        const auto& b = *d.part("hada_w" + n + "_b");
        const torch::Tensor* t = d.part("hada_t" + n);
        return t ? tucker(*t, a, b) : std::vector<int64_t>{a.size(0), b.size(1)};
      };
      const auto first = half("1"), second = half("2");
      if (first != second)  // multiplied element by element
        throw Error(where, d.key + ": the two LoHa halves have shapes " + shape_str(first) + " and " + shape_str(second));
      return first;
    }
    case DeltaKind::LoKr: {
      auto w1 = d.part("lokr_w1") ? sizes(*d.part("lokr_w1"))
                                  : std::vector<int64_t>{d.part("lokr_w1_a")->size(0), d.part("lokr_w1_b")->size(1)};
      std::vector<int64_t> w2;
      if (d.part("lokr_w2")) w2 = sizes(*d.part("lokr_w2"));
      else if (d.part("lokr_t2")) w2 = tucker(*d.part("lokr_t2"), *d.part("lokr_w2_a"), *d.part("lokr_w2_b"));
      else w2 = {d.part("lokr_w2_a")->size(0), d.part("lokr_w2_b")->size(1)};
      while (w1.size() < w2.size()) w1.push_back(1);
      while (w2.size() < w1.size()) w2.push_back(1);
      for (size_t i = 0; i < w1.size(); ++i)  // the Kronecker product's shape (saturated: no overflow)
        if (__builtin_mul_overflow(w1[i], w2[i], &w1[i])) w1[i] = std::numeric_limits<int64_t>::max();
      return w1;
    }
  }
  return {};
}

}  // namespace

const torch::Tensor* ModuleDelta::part(const std::string& role) const {
  auto it = parts.find(role);
  return it == parts.end() ? nullptr : &it->second;
}

int64_t ModuleDelta::rank() const {
  switch (kind) {
    case DeltaKind::LoRA: return part("lora_down")->size(0);
    case DeltaKind::LoHa: return part("hada_w1_b")->size(0);
    case DeltaKind::LoKr:
      if (part("lokr_w2_b")) return part("lokr_w2_b")->size(0);
      if (part("lokr_w1_b")) return part("lokr_w1_b")->size(0);
      return 0;  // both halves full matrices: LyCORIS then fixes the scale at 1
  }
  return 0;
}

double ModuleDelta::alpha_scale() const {
  const int64_t r = rank();
  if (r == 0) return 1.0;
  return alpha ? *alpha / static_cast<double>(r) : 1.0;
}

LoraFile read_lora_file(const std::string& path) {
  auto tensors = load_safetensors(path);
  LoraFile file;
  file.path = path;
  std::map<std::string, ModuleDelta> by_key;
  for (const auto& [key, tensor] : tensors) {
    const std::pair<std::string, std::string>* suffix = nullptr;
    for (const auto& s : known_suffixes())
      if (ends_with(key, s.first) && (!suffix || s.first.size() > suffix->first.size())) suffix = &s;
    const Prefix* prefix = nullptr;
    for (const auto& p : known_prefixes())
      if (key.rfind(p.text, 0) == 0) prefix = &p;
    if (!suffix || !prefix) {
      file.ignored_keys.push_back(key);
      continue;
    }
    // An integer alpha is a number like any other; integer or boolean weights are not weights.
    const bool integral_alpha = suffix->second == "alpha" && c10::isIntegralType(tensor.scalar_type(), false);
    if (!tensor.is_floating_point() && !integral_alpha)
      throw Error(path, key + ": has dtype " + std::string(c10::toString(tensor.scalar_type())) +
                            "; LoRA weights must be floating point");
    const std::string module_key = key.substr(0, key.size() - suffix->first.size() - 1);
    ModuleDelta& d = by_key[module_key];
    if (d.key.empty()) {
      d.key = module_key;
      d.component = prefix->component;
      d.module = module_key.substr(prefix->text.size());
      d.underscored = prefix->underscored;
      d.kind = DeltaKind::LoRA;
    }
    const std::string& role = suffix->second;
    if (role == "alpha") {
      if (tensor.numel() != 1) throw Error(path, key + ": alpha has shape " + shape_str(tensor.sizes()) + "; expected a scalar");
      d.alpha = tensor.to(torch::kDouble).item<double>();
      continue;
    }
    const DeltaKind kind = kind_of_role(role);
    if (d.parts.size() && d.kind != kind) throw Error(path, key + ": mixes LoRA, LoHa and LoKr weights in one module");
    d.kind = kind;
    if (d.parts.count(role)) throw Error(path, key + ": " + role + " given twice (PEFT and kohya names for one module?)");
    d.parts[role] = tensor.to(torch::TensorOptions().dtype(torch::kFloat), false, /*copy=*/true);
    if (!torch::isfinite(d.parts[role]).all().item<bool>())
      throw Error(path, key + ": holds non-finite values (NaN or inf)");
  }
  for (auto& [key, d] : by_key) {
    if (d.parts.empty()) throw Error(path, key + ".alpha: an alpha without weights");
    validate(d, path);
    file.modules.push_back(std::move(d));
  }
  if (file.modules.empty())
    throw Error(path, "is not a LoRA: none of its " + std::to_string(tensors.size()) +
                          " keys is a LoRA/LoHa/LoKr weight (expected e.g. lora_unet_*.lora_down.weight or "
                          "unet.*.lora_A.weight)");
  return file;
}

torch::Tensor dense_delta(const ModuleDelta& d, at::IntArrayRef weight_shape, const std::string& where) {
  if (d.kind == DeltaKind::LoRA && weight_shape.size() == 4 && !d.part("lora_mid")) {
    const auto& down = *d.part("lora_down");
    if (down.dim() == 4 && (down.size(2) != weight_shape[2] || down.size(3) != weight_shape[3]))
      throw Error(where, d.key + ": lora_down kernel " + shape_str(down.sizes()) + " does not fit the module weight " +
                             shape_str(weight_shape));
  }
  // Checked from the factors' shapes before the product is formed: a hostile
  // file's factors can multiply out to terabytes.
  const std::vector<int64_t> shape = delta_shape(d, where);
  double numel = 1, weight_numel = 1;
  for (int64_t n : shape) numel *= static_cast<double>(n);
  for (int64_t n : weight_shape) weight_numel *= static_cast<double>(n);
  if (weight_shape.empty() || shape.empty() || shape[0] != weight_shape[0] || numel != weight_numel)
    throw Error(where, d.key + ": the change has shape " + shape_str(shape) + " but the module weight is " +
                           shape_str(weight_shape));
  torch::Tensor m;
  switch (d.kind) {
    case DeltaKind::LoRA: m = lora_product(d); break;
    case DeltaKind::LoHa: m = loha_product(d); break;
    case DeltaKind::LoKr: m = lokr_product(d); break;
  }
  return m.reshape(weight_shape) * d.alpha_scale();
}

}  // namespace lumen::adapters
