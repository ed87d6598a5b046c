// The dependency missing_dep.so cannot find at run time.
__attribute__((visibility("default"))) int torchfit_test_dep_value() { return 42; }
