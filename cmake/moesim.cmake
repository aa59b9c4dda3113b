# Project helpers: warnings, sanitizers, and moesim_add_library(), which makes a
# target and its moesim::NAME alias with includes rooted at the repository root
# (so `#include "sim/engine.hpp"` and `#include "src/model/model_spec.hpp"` say
# where a file lives).

set(MOESIM_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wconversion -Wno-sign-conversion)
# GCC 12 reports false maybe-uninitialized warnings inside nlohmann/json's inlined
# iterators at -O2 (nlohmann/json issue #3808); they are not in our code.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND MOESIM_WARNINGS -Wno-maybe-uninitialized)
endif()
if(MOESIM_WERROR)
  list(APPEND MOESIM_WARNINGS -Werror)
endif()

if(MOESIM_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# moesim_add_library(NAME SOURCES a.cpp b.cpp ... DEPS target ...)
function(moesim_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(moesim_${name} STATIC ${ARG_SOURCES})
  add_library(moesim::${name} ALIAS moesim_${name})
  target_include_directories(moesim_${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(moesim_${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${MOESIM_WARNINGS}>)
  target_link_libraries(moesim_${name} PUBLIC ${ARG_DEPS})
endfunction()

# moesim_add_test(NAME SOURCES ... DEPS ... [LABELS host|mpi|gpu] [SERIAL])
# SERIAL: the tests time real kernels, so ctest runs them with nothing beside them.
function(moesim_add_test name)
  cmake_parse_arguments(ARG "SERIAL" "" "SOURCES;DEPS;LABELS" ${ARGN})
  set(serial FALSE)
  if(ARG_SERIAL)
    set(serial TRUE)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${MOESIM_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES LABELS "${ARG_LABELS}" RUN_SERIAL ${serial})
endfunction()
