#include "client/replayctl/json_output.h"

#include <google/protobuf/util/json_util.h>

namespace replayd::replayctl {

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  // One document per line, so that `--watch -o json` is NDJSON.
  options.add_whitespace = false;
  std::string out;
  // Fails only for a message that cannot be printed at all (an Any of an
  // unknown type); replayd's responses hold none.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace replayd::replayctl
