# Test helpers shared by every tests/ folder.

# Environment every test sees: where the sources, the build and ../shared are.
set(PDSERVE_TEST_ENV
    "PDSERVE_ROOT=${CMAKE_SOURCE_DIR}"
    "PDSERVE_BUILD_DIR=${CMAKE_BINARY_DIR}"
    "PDSERVE_SHARED_DIR=${PDSERVE_SHARED_DIR}")

# pdserve_add_gtest(NAME name SOURCES a.cc b.cc LIBS lib... [LABELS l...] [FIXTURES f...])
# One GoogleTest binary registered as one ctest test.
function(pdserve_add_gtest)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;LIBS;LABELS;FIXTURES" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_definitions(${ARG_NAME} PRIVATE
      PDSERVE_SHARED_DIR="${PDSERVE_SHARED_DIR}" PDSERVE_ROOT="${CMAKE_SOURCE_DIR}")
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
  set_tests_properties(${ARG_NAME} PROPERTIES ENVIRONMENT "${PDSERVE_TEST_ENV}")
  if(ARG_LABELS)
    set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
  if(ARG_FIXTURES)
    set_tests_properties(${ARG_NAME} PROPERTIES FIXTURES_REQUIRED "${ARG_FIXTURES}")
  endif()
endfunction()

# pdserve_add_pytest(NAME name FILE test_x.py [DEPENDS target...] [FIXTURES f...] [TIMEOUT s]
#                    [LABELS l...])
# One pytest file registered as one ctest test; DEPENDS are binaries it runs (built first by
# `cmake --build`, since every target is in ALL).
function(pdserve_add_pytest)
  cmake_parse_arguments(ARG "" "NAME;FILE;TIMEOUT" "DEPENDS;FIXTURES;LABELS" ${ARGN})
  add_test(NAME ${ARG_NAME}
           COMMAND ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider
                   ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_FILE}
           WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(${ARG_NAME} PROPERTIES ENVIRONMENT "${PDSERVE_TEST_ENV}")
  if(ARG_FIXTURES)
    set_tests_properties(${ARG_NAME} PROPERTIES FIXTURES_REQUIRED "${ARG_FIXTURES}")
  endif()
  if(ARG_TIMEOUT)
    set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT})
  endif()
  if(ARG_LABELS)
    set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()
