// Runs native work on the libuv pool and settles a Promise with its result, so a forward pass
// never blocks the event loop. `keep` holds the JS objects the work uses alive until it ends.
#pragma once
#include <napi.h>

#include <functional>
#include <vector>

namespace cascade::binding {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Result = std::function<Napi::Value(Napi::Env)>;
  using Done = std::function<void()>;

  static Napi::Promise run(Napi::Env env, Work work, Result result, Done done, std::vector<Napi::Object> keep) {
    auto* w = new PromiseWorker(env, std::move(work), std::move(result), std::move(done), std::move(keep));
    auto promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    done_();
    deferred_.Resolve(result_(Env()));
  }
  void OnError(const Napi::Error& e) override {
    done_();
    deferred_.Reject(e.Value());
  }

 private:
  PromiseWorker(Napi::Env env, Work work, Result result, Done done, std::vector<Napi::Object> keep)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        result_(std::move(result)), done_(std::move(done)) {
    for (auto& o : keep) keep_.push_back(Napi::Persistent(o));
  }
  Napi::Promise::Deferred deferred_;
  Work work_;
  Result result_;
  Done done_;
  std::vector<Napi::ObjectReference> keep_;
};

}  // namespace cascade::binding
