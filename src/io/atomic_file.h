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

// A folder written whole or not at all: `write` fills a temporary folder
// beside `folder`, which then takes its place (an existing one is replaced
// only after the new one is complete). A failure removes the temporary and
// leaves whatever was at `folder` untouched. (A diffusers model written in
// place was left half-written, or mixed f16/f32, when the disk filled.)
void write_folder_atomically(const std::string& folder, const std::function<void(const std::string& tmp)>& write);

// Creates an output folder and its parents; a clear error naming it when a
// file is in the way or it cannot be made.
void create_output_folder(const std::string& dir);

}  // namespace lumen
