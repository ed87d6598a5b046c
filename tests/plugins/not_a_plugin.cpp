// Test library: a shared library that is not a torchfit plugin.
#include <boost/config.hpp>

extern "C" BOOST_SYMBOL_EXPORT int not_a_plugin_answer() { return 42; }
