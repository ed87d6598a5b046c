# One precompiled <torch/torch.h> shared by every target: each TU that includes LibTorch
# would otherwise spend ~15 s parsing it.
add_library(torchfit_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/pch.cpp)
target_link_libraries(torchfit_pch PUBLIC torch)
target_precompile_headers(torchfit_pch PUBLIC <torch/torch.h> <string> <vector> <memory> <map>)

# torchfit_use_pch(target): reuse the shared precompiled header.
# Programs are compiled with -fPIC like the libraries (not -fPIE), or GCC rejects the header.
function(torchfit_use_pch target)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_compile_options(${target} PRIVATE -fPIC)
  endif()
  target_precompile_headers(${target} REUSE_FROM torchfit_pch)
endfunction()
