# Writes a header holding the dashboard's files as raw strings, so that the
# daemon serves them with no file or network access.
# Run at build time: cmake -DASSETS_DIR=... -DOUTPUT=... -P embed_assets.cmake
set(body "// Generated from server/http/assets/ by embed_assets.cmake. Do not edit.\n#pragma once\n\n#include <string_view>\n\nnamespace replayd {\n\n")
foreach(pair "kDashboardHtml:index.html" "kDashboardJs:dashboard.js" "kDashboardCss:dashboard.css")
  string(REPLACE ":" ";" parts "${pair}")
  list(GET parts 0 var)
  list(GET parts 1 file)
  file(READ "${ASSETS_DIR}/${file}" content)
  string(FIND "${content}" ")replayd_asset\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${file} contains the raw-string delimiter")
  endif()
  string(APPEND body "inline constexpr std::string_view ${var} = R\"replayd_asset(${content})replayd_asset\";\n\n")
endforeach()
string(APPEND body "}  // namespace replayd\n")
file(WRITE "${OUTPUT}.tmp" "${body}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
