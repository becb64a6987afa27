#include "nn/clip_text.h"

#include <limits>

#include "error.h"

namespace lumen::nn {

ClipEncoderLayerImpl::ClipEncoderLayerImpl(int64_t d, int64_t intermediate, int64_t heads_,
                                           const std::string& hidden_act, double eps)
    : heads(heads_), quick_gelu(hidden_act == "quick_gelu") {
  auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
  q_proj = attn->register_module("q_proj", Linear(d, d));
  k_proj = attn->register_module("k_proj", Linear(d, d));
  v_proj = attn->register_module("v_proj", Linear(d, d));
  out_proj = attn->register_module("out_proj", Linear(d, d));
  layer_norm1 = register_module("layer_norm1", LayerNorm(d, eps));
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  fc1 = mlp->register_module("fc1", Linear(d, intermediate));
  fc2 = mlp->register_module("fc2", Linear(intermediate, d));
  layer_norm2 = register_module("layer_norm2", LayerNorm(d, eps));
}

torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  auto h = layer_norm1(x);
  h = x + out_proj(multi_head_attention(q_proj(h), k_proj(h), v_proj(h), heads, false, mask));
  auto m = fc1(layer_norm2(h));
  m = quick_gelu ? m * torch::sigmoid(1.702 * m) : torch::gelu(m);
  return h + fc2(m);
}

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& c) : config(c) {
  auto text_model = register_module("text_model", std::make_shared<torch::nn::Module>());
  auto embeddings = text_model->register_module("embeddings", std::make_shared<torch::nn::Module>());
  token_embedding = embeddings->register_module("token_embedding", Embedding(c.vocab_size, c.hidden_size));
  position_embedding =
      embeddings->register_module("position_embedding", Embedding(c.max_position_embeddings, c.hidden_size));
  auto encoder = text_model->register_module("encoder", std::make_shared<torch::nn::Module>());
  auto list = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers.push_back(
        ClipEncoderLayer(c.hidden_size, c.intermediate_size, c.num_attention_heads, c.hidden_act, c.layer_norm_eps));
    list->push_back(layers.back());
  }
  final_layer_norm = text_model->register_module("final_layer_norm", LayerNorm(c.hidden_size, c.layer_norm_eps));
  if (c.with_projection)
    text_projection = register_module("text_projection", Linear(c.hidden_size, c.projection_dim, false));
}

ClipTextOutput ClipTextModelImpl::forward(const torch::Tensor& input_ids) {
  if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kLong)
    throw Error("text encoder", "input_ids must be an int64 [batch, tokens] tensor");
  const int64_t seq = input_ids.size(1);
  if (seq > config.max_position_embeddings)
    throw Error("text encoder", std::to_string(seq) + " tokens exceed the model's " +
                                    std::to_string(config.max_position_embeddings) + " positions");
  if (input_ids.numel() > 0 && (input_ids.min().item<int64_t>() < 0 ||
                                input_ids.max().item<int64_t>() >= config.vocab_size))
    throw Error("text encoder", "token id outside the vocabulary");

  auto dtype = token_embedding->weight.scalar_type();
  auto positions = torch::arange(seq, input_ids.options());
  auto h = token_embedding(input_ids) + position_embedding(positions).unsqueeze(0);
  auto mask = torch::full({seq, seq}, -std::numeric_limits<float>::infinity(), input_ids.options().dtype(torch::kFloat))
                  .triu(1)
                  .to(dtype);

  ClipTextOutput out;
  out.hidden_states.push_back(h);
  for (auto& layer : layers) {
    h = layer->forward(h, mask);
    out.hidden_states.push_back(h);
  }
  out.last_hidden_state = final_layer_norm(h);
  // Legacy configs (eos_token_id 2, as the real SD encoders) pool at argmax(ids), i.e. the EOS 49407.
  auto position = config.eos_token_id == 2 ? input_ids.argmax(-1)
                                           : (input_ids == config.eos_token_id).to(torch::kInt).argmax(-1);
  out.pooled = out.last_hidden_state.index({torch::arange(input_ids.size(0), input_ids.options()), position});
  if (text_projection) out.text_embeds = text_projection(out.pooled);
  return out;
}

}  // namespace lumen::nn
