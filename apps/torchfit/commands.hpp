// The runner's commands.
#pragma once

#include "cli.hpp"

namespace torchfit::cli {

int run_train(Invocation& inv);
int run_evaluate(Invocation& inv);
int run_predict(Invocation& inv);
int run_summary(Invocation& inv);
int run_plugins(Invocation& inv);

}  // namespace torchfit::cli
