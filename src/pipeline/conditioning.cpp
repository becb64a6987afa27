#include "pipeline/conditioning.h"

#include <map>

#include "error.h"
#include "prompt/prompt_parser.h"

namespace lumen {
namespace {

struct Encoded {
  torch::Tensor context;  // [1, 77·chunks, D]
  torch::Tensor pooled;   // [1, P] from the first chunk
};

// hidden state chosen by clip skip; SD1/SD2 apply the final norm, SDXL does not.
torch::Tensor select_hidden(nn::ClipTextModel& te, const nn::ClipTextOutput& out, int clip_skip, bool sdxl) {
  if (sdxl) return out.skipped(clip_skip + 1);
  if (clip_skip <= 1) return out.last_hidden_state;
  return te->final_layer_norm(out.skipped(clip_skip));
}

Encoded encode_one(nn::ClipTextModel& te, const ClipTokenizer& tok, int64_t pad_id, const std::string& prompt,
                   const PromptEncoding& options, bool sdxl) {
  if (options.clip_skip < 1 || options.clip_skip > te->config.num_hidden_layers)
    throw Error("clip skip", std::to_string(options.clip_skip) + " is outside 1.." +
                                 std::to_string(te->config.num_hidden_layers));
  Encoded e;
  std::vector<torch::Tensor> parts;
  for (const auto& chunk : chunk_prompt(tok, prompt, pad_id, options.plain)) {
    auto ids = torch::tensor(chunk.ids, torch::kLong).unsqueeze(0).to(te->token_embedding->weight.device());
    auto out = te->forward(ids);
    auto z = select_hidden(te, out, options.clip_skip, sdxl);
    const bool weighted = std::any_of(chunk.multipliers.begin(), chunk.multipliers.end(),
                                      [](double m) { return m != 1.0; });
    if (weighted) {
      // A1111: scale each token's embedding, then restore the chunk's mean.
      auto mult = torch::tensor(chunk.multipliers, torch::kDouble).to(z.device(), z.scalar_type()).view({1, -1, 1});
      auto original_mean = z.mean();
      z = z * mult;
      z = z * (original_mean / z.mean());
      // A weighting whose mean cancels divides by ~0: refuse it rather than draw black.
      if (!torch::isfinite(z).all().item<bool>())
        throw Error("prompt", "its weights make the text embedding non-finite; use milder weights");
    }
    parts.push_back(z);
    if (!e.pooled.defined()) e.pooled = out.text_embeds.defined() ? out.text_embeds : out.pooled;
  }
  e.context = torch::cat(parts, 1);
  return e;
}

torch::Tensor pad_chunks(const torch::Tensor& t, int64_t chunks, const torch::Tensor& empty_chunk) {
  const int64_t have = t.size(1) / 77;
  if (have >= chunks) return t;
  std::vector<torch::Tensor> parts{t};
  for (int64_t i = have; i < chunks; ++i) parts.push_back(empty_chunk.expand({t.size(0), -1, -1}));
  return torch::cat(parts, 1);
}

}  // namespace

Conditioning encode_prompts(const LoadedModel& model, const std::vector<std::string>& prompts,
                            const std::vector<std::string>& prompts_2, const PromptEncoding& options) {
  if (!model.text_encoder) throw Error(model.plan.path, "the model has no text encoder (text_encoder/)");
  if (!model.tokenizer)
    throw Error(model.plan.path, "the model has no tokenizer (a diffusers folder needs tokenizer/vocab.json and merges.txt)");
  const bool sdxl = static_cast<bool>(model.text_encoder_2);
  auto te = model.text_encoder, te2 = model.text_encoder_2;
  // Each distinct prompt is encoded once: a batch of one prompt (or the empty
  // prompt padding every item) runs the text encoder once, not once per item.
  std::map<std::string, Encoded> seen_first, seen_second;
  auto encode_first = [&](const std::string& p) {
    auto it = seen_first.find(p);
    if (it == seen_first.end()) it = seen_first.emplace(p, encode_one(te, *model.tokenizer, model.pad_id, p, options, sdxl)).first;
    return it->second;
  };
  auto encode_second = [&](const std::string& p) {
    auto it = seen_second.find(p);
    if (it == seen_second.end())
      it = seen_second.emplace(p, encode_one(te2, *model.tokenizer_2, model.pad_id_2, p, options, true)).first;
    return it->second;
  };
  std::vector<Encoded> first, second;
  for (const auto& p : prompts) first.push_back(encode_first(p));
  if (sdxl) {
    const auto& p2 = prompts_2.empty() ? prompts : prompts_2;
    if (p2.size() != prompts.size()) throw Error("prompt_2", "needs one prompt per batch item");
    for (const auto& p : p2) second.push_back(encode_second(p));
  }
  // Items may have different chunk counts: pad all to the longest.
  int64_t chunks = 0;
  for (size_t i = 0; i < first.size(); ++i) {
    chunks = std::max(chunks, first[i].context.size(1) / 77);
    if (sdxl) chunks = std::max(chunks, second[i].context.size(1) / 77);
  }
  std::vector<torch::Tensor> contexts, pooled;
  for (size_t i = 0; i < first.size(); ++i) {
    auto ctx = first[i].context;
    if (ctx.size(1) / 77 < chunks) ctx = pad_chunks(ctx, chunks, encode_first("").context);
    if (sdxl) {
      auto ctx2 = second[i].context;
      if (ctx2.size(1) / 77 < chunks) ctx2 = pad_chunks(ctx2, chunks, encode_second("").context);
      ctx = torch::cat({ctx, ctx2}, -1);
      pooled.push_back(second[i].pooled);
    }
    contexts.push_back(ctx);
  }
  Conditioning c;
  c.context = torch::cat(contexts, 0);
  if (sdxl) c.pooled = torch::cat(pooled, 0);
  return c;
}

void match_chunk_counts(const LoadedModel& model, Conditioning& a, Conditioning& b, const PromptEncoding& options) {
  const int64_t chunks = std::max(a.context.size(1), b.context.size(1)) / 77;
  if (a.context.size(1) == b.context.size(1)) return;
  auto empty = encode_prompts(model, {""}, {}, options).context;
  a.context = pad_chunks(a.context, chunks, empty);
  b.context = pad_chunks(b.context, chunks, empty);
}

}  // namespace lumen
