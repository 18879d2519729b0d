// Shared by the native runners: option parsing, raw float32 files and the latency summary line.
// Plain C++20, no dependencies.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace leaps {

// A bad argument or a missing file: the runner prints "error: <message>" and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Options = std::map<std::string, std::string>;

// "--name value" pairs; every option takes a value and must be one of `known`. --help prints `usage`.
inline Options parse_options(int argc, char** argv, const std::set<std::string>& known, const char* usage) {
  Options options;
  for (int i = 1; i < argc; i += 2) {
    const std::string name = argv[i];
    if (name == "--help" || name == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    if (!known.contains(name)) throw UsageError("unknown option " + name + " (see --help)");
    if (i + 1 >= argc) throw UsageError(name + " needs a value");
    options[name] = argv[i + 1];
  }
  return options;
}

inline std::string option(const Options& options, const std::string& name, const std::string& fallback) {
  const auto found = options.find(name);
  return found == options.end() ? fallback : found->second;
}

inline std::string required(const Options& options, const std::string& name) {
  const auto found = options.find(name);
  if (found == options.end()) throw UsageError(name + " is required");
  return found->second;
}

// A whole integer >= minimum.
inline int to_count(const std::string& text, const std::string& name, int minimum) {
  std::size_t used = 0;
  long value = 0;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < minimum || value > 1000000)
    throw UsageError(name + " must be a whole number >= " + std::to_string(minimum) + ", got '" + text + "'");
  return static_cast<int>(value);
}

// A finite number >= 0.
inline double to_tolerance(const std::string& text, const std::string& name) {
  std::size_t used = 0;
  double value = -1;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(value) || value < 0)
    throw UsageError(name + " must be a number >= 0, got '" + text + "'");
  return value;
}

// "B,3,T,H,W": a video batch shape, every dimension >= 1 and 3 channels.
inline std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    shape.push_back(to_count(text.substr(start, comma - start), "each --shape dimension", 1));
    start = comma + 1;
  }
  if (shape.size() != 5 || shape[1] != 3)
    throw UsageError("--shape must be B,3,T,H,W (a video batch), got '" + text + "'");
  return shape;
}

inline int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (const int64_t size : shape) count *= size;
  return count;
}

inline void require_file(const std::string& path, const std::string& what) {
  if (!std::filesystem::is_regular_file(path)) throw UsageError(what + " not found: " + path);
}

// Default label: the file name without its extension.
inline std::string file_stem(const std::string& path) {
  return std::filesystem::path(path).stem().string();
}

inline std::vector<char> read_bytes(const std::string& path, const std::string& what) {
  require_file(path, what);
  std::ifstream file(path, std::ios::binary);
  std::vector<char> bytes(std::filesystem::file_size(path));
  if (!file.read(bytes.data(), static_cast<std::streamsize>(bytes.size())))
    throw UsageError("cannot read " + what + " " + path);
  return bytes;
}

// Raw little-endian float32 values in C order; the file must hold exactly `count` of them.
inline std::vector<float> read_floats(const std::string& path, int64_t count, const std::string& what) {
  const std::vector<char> bytes = read_bytes(path, what);
  const auto expected = static_cast<std::size_t>(count) * sizeof(float);
  if (bytes.size() != expected)
    throw UsageError(what + " " + path + " holds " + std::to_string(bytes.size()) + " bytes, expected " +
                     std::to_string(expected) + " (" + std::to_string(count) + " float32)");
  std::vector<float> values(static_cast<std::size_t>(count));
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(values.data()));
  return values;
}

inline void write_floats(const std::string& path, const float* values, int64_t count) {
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(values), static_cast<std::streamsize>(count * sizeof(float)));
  if (!file) throw std::runtime_error("cannot write " + path);
}

// Linear interpolation between the closest ranks of sorted values, q in [0, 1].
inline double percentile(const std::vector<double>& sorted, double q) {
  const double position = q * static_cast<double>(sorted.size() - 1);
  const auto low = static_cast<std::size_t>(position);
  const std::size_t high = std::min(low + 1, sorted.size() - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - static_cast<double>(low));
}

// | LABEL | TxHxW | batch B | BACKEND | forward median X ms | p10 Y | p90 Z |
inline std::string summary_line(const std::string& label, const std::vector<int64_t>& shape,
                                const std::string& backend, std::vector<double> times_ms) {
  std::sort(times_ms.begin(), times_ms.end());
  char timings[160];
  std::snprintf(timings, sizeof(timings), "forward median %.3f ms | p10 %.3f | p90 %.3f",
                percentile(times_ms, 0.5), percentile(times_ms, 0.1), percentile(times_ms, 0.9));
  const std::string size = std::to_string(shape[2]) + "x" + std::to_string(shape[3]) + "x" + std::to_string(shape[4]);
  return "| " + label + " | " + size + " | batch " + std::to_string(shape[0]) + " | " + backend + " | " +
         timings + " |";
}

// The first line of a (possibly multi-line) error message.
inline std::string first_line(const std::string& message) {
  return message.substr(0, message.find('\n'));
}

// Runs a runner's main body: usage errors exit 2, any other error 1, each as one `error: ...` line
// (libtorch's c10::Error is a std::exception whose first line is its message, its backtrace after).
template <class Body>
int guarded_main(Body body) {
  try {
    return body();
  } catch (const UsageError& error) {
    std::cerr << "error: " << error.what() << "\n";
    return 2;
  } catch (const std::exception& error) {
    std::cerr << "error: " << first_line(error.what()) << "\n";
    return 1;
  }
}

}  // namespace leaps
