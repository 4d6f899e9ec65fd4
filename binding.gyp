{
  # node-gyp build of the same sources CMakeLists.txt builds. libtorch is found under TORCH_DIR
  # (default /usr, where Debian's libtorch-dev installs it).
  "variables": {
    "torch_dir%": "<!(node -p \"process.env.TORCH_DIR || '/usr'\")"
  },
  "targets": [
    {
      "target_name": "cascade_spec",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native').filter(f => f.endsWith('.cc')).map(f => 'native/' + f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/binding').filter(f => f.endsWith('.cc')).map(f => 'native/binding/' + f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/kernels/cpu').filter(f => f.endsWith('.cc')).map(f => 'native/kernels/cpu/' + f).join(' ')\")"
      ],
      "include_dirs": [
        "<!@(node -p \"require('node-addon-api').include\")",
        "native",
        "<(torch_dir)/include",
        "<(torch_dir)/include/torch/csrc/api/include"
      ],
      "library_dirs": ["<(torch_dir)/lib", "<(torch_dir)/lib/x86_64-linux-gnu"],
      "libraries": ["-ltorch", "-ltorch_cpu", "-lc10", "-Wl,-rpath,<(torch_dir)/lib"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O3", "-fopenmp"],
      "ldflags": ["-fopenmp"],
      "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "GCC_ENABLE_CPP_RTTI": "YES", "CLANG_CXX_LANGUAGE_STANDARD": "c++17" }
    }
  ]
}
