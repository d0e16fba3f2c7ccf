// Configuration loading: YAML text through the schema into a Config, then
// every semantic check the daemon runs before it starts.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/config/config.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace replayd;
  std::string text(reinterpret_cast<const char*>(data), size);
  auto config = ParseConfigYaml(text, "fuzz.yaml");
  if (!config.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(config.status()));
    FUZZ_CHECK(!config.status().message().empty());
    return 0;
  }
  for (const std::string& problem : Validate(*config)) FUZZ_CHECK(!problem.empty());
  return 0;
}
