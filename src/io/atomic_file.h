// Atomic file writing: content goes to a temporary file beside the target and
// is renamed into place, so a crash or full disk never leaves a half-written
// file under the real name (and never damages an existing one).
#pragma once
#include <functional>
#include <ostream>
#include <string>

namespace lumen {

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);
void write_text_atomically(const std::string& path, const std::string& text);

// Creates an output folder and its parents; a clear error naming it when a
// file is in the way or it cannot be made.
void create_output_folder(const std::string& dir);

}  // namespace lumen
