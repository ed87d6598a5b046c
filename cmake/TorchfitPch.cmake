# One precompiled <torch/torch.h> shared by every target: each TU that includes LibTorch
# would otherwise spend ~15 s parsing it.
add_library(torchfit_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/pch.cpp)
target_link_libraries(torchfit_pch PUBLIC torch)
target_precompile_headers(torchfit_pch PUBLIC <torch/torch.h> <string> <vector> <memory> <map>)

# torchfit_use_pch(target): reuse the shared precompiled header.
function(torchfit_use_pch target)
  target_precompile_headers(${target} REUSE_FROM torchfit_pch)
endfunction()
