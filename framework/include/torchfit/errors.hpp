// Typed errors: what was wrong, with the value seen, and what to do about it.
#pragma once

#include <stdexcept>
#include <string>

#include "torchfit/export.hpp"

namespace torchfit {

// Every error type has its destructor (and so its vtable) in libtorchfit, never inline: an
// exception thrown by a plugin may outlive the plugin's library, which is unloaded while the
// stack unwinds, and its destructor must not be code from that library.

/// Base of every error torchfit throws on purpose.
class TORCHFIT_EXPORT Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~Error() override;
};

/// A bad option, option value or configuration file (the runner exits with 2).
class TORCHFIT_EXPORT ConfigError : public Error {
 public:
  using Error::Error;
  ~ConfigError() override;
};

/// Bad data: shapes that do not fit, an empty dataset, a malformed input file.
class TORCHFIT_EXPORT DataError : public Error {
 public:
  using Error::Error;
  ~DataError() override;
};

/// A plugin that cannot be found, loaded or created, or that failed inside a hook.
class TORCHFIT_EXPORT PluginError : public Error {
 public:
  using Error::Error;
  ~PluginError() override;
};

/// A checkpoint that cannot be written or read, or that does not fit the model.
class TORCHFIT_EXPORT CheckpointError : public Error {
 public:
  using Error::Error;
  ~CheckpointError() override;
};

/// Another process of a data-parallel run died, hung past the timeout, or could not be reached.
class TORCHFIT_EXPORT DistributedError : public Error {
 public:
  using Error::Error;
  ~DistributedError() override;
};

/// An exception thrown by a callback inside a hook, re-thrown with where it happened.
class TORCHFIT_EXPORT CallbackError : public PluginError {
 public:
  CallbackError(std::string callback, std::string hook, const std::string& what)
      : PluginError("callback '" + callback + "' failed in " + hook + ": " + what),
        callback_(std::move(callback)),
        hook_(std::move(hook)) {}
  ~CallbackError() override;
  const std::string& callback() const noexcept { return callback_; }
  const std::string& hook() const noexcept { return hook_; }

 private:
  std::string callback_;
  std::string hook_;
};

}  // namespace torchfit
