// Test library: needs libtorchfit_test_dep.so, which is nowhere the loader looks (no RPATH to
// it): the loader's own reason must reach the user.
int torchfit_test_dep_value();
extern "C" __attribute__((visibility("default"))) int missing_dep_value() { return torchfit_test_dep_value(); }
