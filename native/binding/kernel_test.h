#pragma once
#include <napi.h>

namespace cascade::binding {
// { info(), run(options) }: see kernel_test.cc.
Napi::Object KernelTestObject(Napi::Env env);
}  // namespace cascade::binding
