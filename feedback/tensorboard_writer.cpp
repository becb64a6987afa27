#include "tensorboard_writer.h"

#include <unistd.h>

#include <boost/crc.hpp>
#include <chrono>
#include <cstring>

#include "error.h"
#include "io/text_file.h"
#include "tensorboard/event.pb.h"

namespace lumen::train {
namespace {

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t get_le(const std::string& in, size_t at, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return value;
}

}  // namespace

uint32_t masked_crc32c(const void* data, size_t size) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;  // CRC-32C
  crc.process_bytes(data, size);
  const uint32_t c = crc.checksum();
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  const auto seconds = static_cast<long long>(wall_time());
  path_ = dir + "/events.out.tfevents." + std::to_string(seconds) + "." + host_name() + "." + std::to_string(::getpid());
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw Error(path_, "cannot write the TensorBoard event file");
  tensorboard::Event event;
  event.set_wall_time(wall_time());
  event.set_file_version("brain.Event:2");
  write_record(event.SerializeAsString());
}

void TensorBoardWriter::scalar(const std::string& tag, double value, int64_t step) {
  tensorboard::Event event;
  event.set_wall_time(wall_time());
  event.set_step(step);
  auto* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  write_record(event.SerializeAsString());
}

void TensorBoardWriter::image_png(const std::string& tag, const std::string& png_bytes, int width, int height,
                                  int64_t step) {
  tensorboard::Event event;
  event.set_wall_time(wall_time());
  event.set_step(step);
  auto* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  auto* image = v->mutable_image();
  image->set_width(width);
  image->set_height(height);
  image->set_colorspace(3);
  image->set_encoded_image_string(png_bytes);
  write_record(event.SerializeAsString());
}

// length (u64) · masked CRC of the length (u32) · data · masked CRC of the data (u32).
void TensorBoardWriter::write_record(const std::string& data) {
  std::string header;
  put_le(header, data.size(), 8);
  std::string record = header;
  put_le(record, masked_crc32c(header.data(), header.size()), 4);
  record += data;
  put_le(record, masked_crc32c(data.data(), data.size()), 4);
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
  out_.flush();  // TensorBoard reads the file while the run goes on
  if (!out_) throw Error(path_, "cannot write the TensorBoard event file");
}

std::vector<std::string> read_tfrecords(const std::string& path) {
  const std::string bytes = read_text_file(path);
  std::vector<std::string> records;
  for (size_t at = 0; at < bytes.size();) {
    if (bytes.size() - at < 12) throw Error(path, "a record header is cut off at byte " + std::to_string(at));
    const uint64_t length = get_le(bytes, at, 8);
    if (get_le(bytes, at + 8, 4) != masked_crc32c(bytes.data() + at, 8))
      throw Error(path, "the length at byte " + std::to_string(at) + " fails its CRC");
    if (length > bytes.size() - at - 16) throw Error(path, "a record at byte " + std::to_string(at) + " is cut off");
    const std::string data = bytes.substr(at + 12, length);
    if (get_le(bytes, at + 12 + length, 4) != masked_crc32c(data.data(), data.size()))
      throw Error(path, "the record at byte " + std::to_string(at) + " fails its CRC");
    records.push_back(data);
    at += 16 + length;
  }
  return records;
}

}  // namespace lumen::train
