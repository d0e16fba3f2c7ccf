# replayd_library(NAME SOURCES ... DEPS ...)
#   One static library per server/ folder; its public headers are included as
#   "server/<folder>/<file>.h" from the repository root.
function(replayd_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# replayd_embed(OUTPUT HEADER SCRIPT FILE ARGS -DNAME=VALUE ... INPUTS ... COMMENT TEXT)
#   Writes HEADER at build time with `cmake ARGS -DOUTPUT=HEADER -P SCRIPT`,
#   again whenever one of INPUTS or the script changes: files compiled into
#   the binary.
function(replayd_embed)
  cmake_parse_arguments(ARG "" "OUTPUT;SCRIPT;COMMENT" "ARGS;INPUTS" ${ARGN})
  add_custom_command(
    OUTPUT ${ARG_OUTPUT}
    COMMAND ${CMAKE_COMMAND} ${ARG_ARGS} -DOUTPUT=${ARG_OUTPUT} -P ${ARG_SCRIPT}
    DEPENDS ${ARG_INPUTS} ${ARG_SCRIPT}
    COMMENT "${ARG_COMMENT}")
endfunction()

# replayd_test(NAME LABEL unit|pg|e2e SOURCES ... DEPS ...)
#   A GoogleTest binary registered with CTest under its tier label. pg and e2e
#   tests read the throwaway cluster's DSN from REPLAYD_TEST_DSN and make a
#   scratch database of their own.
function(replayd_test name)
  cmake_parse_arguments(ARG "" "LABEL;TIMEOUT" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  # e2e tests measure rates and latencies of real processes: one at a time.
  set(serial FALSE)
  if(ARG_LABEL STREQUAL "e2e")
    set(serial TRUE)
  endif()
  set(environment "")
  if(REPLAYD_SANITIZE)
    set(environment "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp")
  endif()
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT} RUN_SERIAL ${serial}
               ENVIRONMENT "${environment}"
    TEST_PREFIX "${ARG_LABEL}.")
endfunction()
