# ctest helper: run a command and pass only if it exits with EXPECTED_EXIT and prints one "error: ..." line
# on stderr.
#   cmake -DEXPECTED_EXIT=2 -P expect_exit.cmake -- PROGRAM ARG...
set(command "")
set(after_separator FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(index RANGE ${last})
  if(after_separator)
    list(APPEND command "${CMAKE_ARGV${index}}")
  elseif("${CMAKE_ARGV${index}}" STREQUAL "--")
    set(after_separator TRUE)
  endif()
endforeach()

execute_process(COMMAND ${command} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE error)
message("exit ${result}\nstdout: ${output}\nstderr: ${error}")
if(NOT result STREQUAL "${EXPECTED_EXIT}")
  message(FATAL_ERROR "expected exit ${EXPECTED_EXIT}, got ${result}")
endif()
if(NOT error MATCHES "^error: [^\n]+\n$")
  message(FATAL_ERROR "expected one 'error: ...' line on stderr")
endif()
