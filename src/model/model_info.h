// Human-readable and JSON summaries of a model plan (`lumen info`).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "model/model_loader.h"

namespace lumen {

nlohmann::json plan_to_json(const ModelPlan& plan);
std::string plan_to_text(const ModelPlan& plan);

}  // namespace lumen
