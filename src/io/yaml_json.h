// YAML nodes as JSON: configs may be written in either.
#pragma once
#include <nlohmann/json.hpp>

namespace YAML {
class Node;
}

namespace lumen {

// Maps, sequences and scalars; an unquoted scalar becomes a bool, null,
// integer or number when it reads as one, a quoted one stays a string.
nlohmann::json yaml_to_json(const YAML::Node& node);

}  // namespace lumen
