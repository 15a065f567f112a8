# CUDA support: PDSERVE_CUDA defaults to ON when nvcc is found. (Owned by the CUDA backend work.)
#
# When ON this defines:
#   CUDA language enabled, for sm_90 machine code plus compute_90 PTX (a newer GPU JIT-compiles
#     the PTX) unless CMAKE_CUDA_ARCHITECTURES is given on the command line;
#   CUDA::cudart_static, CUDA::cublas, CUDA::cublasLt (from find_package(CUDAToolkit));
#   pdserve::nccl, an IMPORTED target for NCCL, when nccl.h and libnccl are found
#     (PDSERVE_HAVE_NCCL tells whether they were);
#   pdserve_cuda_target_defaults(target): the flags every pdserve CUDA target uses.
# Nothing here is used when OFF: kernels/cuda and tests/cuda are only added when ON.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(_pdserve_cuda_default ON)
else()
  set(_pdserve_cuda_default OFF)
endif()
option(PDSERVE_CUDA "Build the CUDA backend" ${_pdserve_cuda_default})

if(PDSERVE_CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "PDSERVE_CUDA is ON but no CUDA compiler (nvcc) was found: put nvcc on "
                        "PATH, pass -DCMAKE_CUDA_COMPILER=<toolkit>/bin/nvcc, or -DPDSERVE_CUDA=OFF")
  endif()
  # Must be set before enable_language: unset it defaults to sm_75, and "native" fails on a
  # machine with no GPU (the build machines have none).
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
    set(CMAKE_CUDA_ARCHITECTURES "90-real;90-virtual")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)

  # The top-level add_compile_options(-Wall ...) are g++ flags that nvcc rejects ("Unknown option
  # '-Wall'"): keep them for C and C++ and hand them to the host compiler for .cu files.
  get_property(_pdserve_opts DIRECTORY PROPERTY COMPILE_OPTIONS)
  set(_pdserve_wrapped "")
  foreach(_opt IN LISTS _pdserve_opts)
    if(_opt MATCHES "^\\$<")
      list(APPEND _pdserve_wrapped "${_opt}")
    else()
      list(APPEND _pdserve_wrapped "$<$<COMPILE_LANGUAGE:C,CXX>:${_opt}>"
                                   "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${_opt}>")
    endif()
  endforeach()
  set_property(DIRECTORY PROPERTY COMPILE_OPTIONS "${_pdserve_wrapped}")

  # NCCL has no CMake package: look beside the toolkit, then in the usual system places.
  find_path(PDSERVE_NCCL_INCLUDE_DIR nccl.h
            HINTS ${CUDAToolkit_INCLUDE_DIRS} "${CUDAToolkit_LIBRARY_ROOT}/include"
            PATHS /usr/local/include /usr/include)
  find_library(PDSERVE_NCCL_LIBRARY NAMES nccl
               HINTS ${CUDAToolkit_LIBRARY_DIR} "${CUDAToolkit_LIBRARY_ROOT}/lib"
                     "${CUDAToolkit_LIBRARY_ROOT}/lib64"
               PATHS /usr/local/lib /usr/lib/x86_64-linux-gnu)
  if(PDSERVE_NCCL_INCLUDE_DIR AND PDSERVE_NCCL_LIBRARY)
    set(PDSERVE_HAVE_NCCL ON)
    if(NOT TARGET pdserve::nccl)
      add_library(pdserve::nccl SHARED IMPORTED GLOBAL)
      set_target_properties(pdserve::nccl PROPERTIES
          IMPORTED_LOCATION "${PDSERVE_NCCL_LIBRARY}"
          INTERFACE_INCLUDE_DIRECTORIES "${PDSERVE_NCCL_INCLUDE_DIR}")
    endif()
    message(STATUS "pdserve: NCCL found: ${PDSERVE_NCCL_LIBRARY}")
  else()
    set(PDSERVE_HAVE_NCCL OFF)
    message(STATUS "pdserve: NCCL not found (nccl.h / libnccl): multi-GPU transfer is unavailable")
  endif()

  # pdserve_cuda_target_defaults(target): C++17 for .cu files (CMake 3.25 cannot ask nvcc for
  # C++20, and would otherwise inherit CXX_STANDARD 20 and fail: headers that .cu files include
  # stay C++17), line info for the profilers, no fast math (the kernels are checked against double
  # references), and the static CUDA runtime (the GPU machine has the driver, not necessarily our
  # runtime). libstdc++ stays shared: linked statically it would pull in glibc 2.36 symbols
  # (arc4random), which an older GPU image may lack, while GCC 12's libstdc++ ABI is everywhere.
  function(pdserve_cuda_target_defaults target)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
    set_target_properties(${target} PROPERTIES
        CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF
        CUDA_RUNTIME_LIBRARY Static)
  endfunction()

  message(STATUS "pdserve: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, architectures "
                 "${CMAKE_CUDA_ARCHITECTURES}")
endif()
