# torchfit_add_plugin(<name> <sources>... [OUTPUT_DIRECTORY <dir>] [NO_INSTALL]): builds a
# torchfit plugin as a MODULE library.
#
# The same call works inside torchfit's tree and out of tree after
# find_package(torchfit CONFIG). The library is named <name>.so (no "lib" prefix), built
# with hidden visibility so it exports only its BOOST_DLL_ALIAS entry points, written to the
# plugin folder the runner searches (in-tree) and installed with an $ORIGIN-relative RPATH.
function(torchfit_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "NO_INSTALL" "OUTPUT_DIRECTORY" "")
  if(NOT arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "torchfit_add_plugin(${name}): give at least one source file")
  endif()
  add_library(${name} MODULE ${arg_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE torchfit::framework)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON)
  if(TARGET torchfit_pch)
    torchfit_use_pch(${name})
  endif()
  if(arg_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${arg_OUTPUT_DIRECTORY})
  elseif(DEFINED TORCHFIT_PLUGIN_OUTPUT_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${TORCHFIT_PLUGIN_OUTPUT_DIR})
    # In torchfit's own tree: the standard folder, whose index the build writes.
    set_property(GLOBAL APPEND PROPERTY TORCHFIT_STANDARD_PLUGINS ${name})
  endif()
  if(arg_NO_INSTALL)
    return()
  endif()
  if(DEFINED TORCHFIT_PLUGIN_SUBDIR)
    # Plugins live in <prefix>/lib/torchfit/plugins; the framework is two folders up.
    set_target_properties(${name} PROPERTIES INSTALL_RPATH "$ORIGIN/../..")
    install(TARGETS ${name} LIBRARY DESTINATION ${TORCHFIT_PLUGIN_SUBDIR})
  else()
    # Out of tree: <your prefix>/lib/torchfit/plugins (give the runner that folder with
    # --plugin-dir or TORCHFIT_PLUGIN_PATH), linked to the torchfit it was built against.
    include(GNUInstallDirs)
    set_target_properties(${name} PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
    install(TARGETS ${name} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/torchfit/plugins)
    if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
      message(WARNING "torchfit_add_plugin(${name}): no CMAKE_BUILD_TYPE, so the plugin is built without "
                      "optimization; configure with -DCMAKE_BUILD_TYPE=Release")
    endif()
  endif()
endfunction()
