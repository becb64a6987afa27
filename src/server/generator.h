// The server's one model and what a request needs of it: switching
// checkpoints, applying the prompt's LoRAs (kept applied between requests,
// changed only where they differ), generating batches and encoding them as
// A1111 returns them. Used from the job queue's worker thread only, except
// selected_title().
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lumen/lumen.hpp"
#include "server/a1111_request.h"
#include "server/job_queue.h"
#include "server/model_registry.h"

namespace lumen::server {

struct GenerationOutcome {
  std::string model;  // the title of the model that made them
  std::vector<std::string> png_base64;  // each with its parameters text
  std::vector<std::string> infotexts;
  std::vector<uint64_t> seeds;
  uint64_t first_seed = 0;
  bool interrupted = false;
};

// Decodes a request's uploaded images (ApiError 422 if one is not an image or
// is over max_pixels, refused from its header).
void decode_uploads(GenerationRequest& request, int64_t max_pixels);

class Generator {
 public:
  Generator(const ModelRegistry& registry, int threads);
  // Makes a model of the registry the selected one (/options' sd_model_checkpoint)
  // and loads it (ApiError 404 if unknown, 422 if it does not load).
  void select(const std::string& name);
  std::string selected_title() const;
  GenerationOutcome generate(const GenerationRequest& request, JobControl& control);

 private:
  // Loads a model unless it is the loaded one; returns its title.
  std::string load(const std::string& name);
  void apply_loras(const std::vector<LoraTag>& tags);

  const ModelRegistry& registry_;
  const int threads_;
  std::optional<lumen::Context> context_;
  std::string loaded_;  // the model in context_
  mutable std::mutex selected_mutex_;
  std::string selected_;  // what requests without an override use
  struct Applied {
    int id;
    float weight;
  };
  std::map<std::string, Applied> loras_;  // by path
};

}  // namespace lumen::server
