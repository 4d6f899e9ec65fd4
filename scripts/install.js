#!/usr/bin/env node
// npm install hook: use a prebuilt or already-built addon when one loads, else compile with
// cmake-js against libtorch (find_package(Torch); TORCH_DIR or CMAKE_PREFIX_PATH point elsewhere).
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const root = path.resolve(__dirname, '..');

function loads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

if (process.env.CASCADE_SPEC_FORCE_BUILD !== '1' && loads()) {
  console.log('cascade-spec: using the existing native addon');
  process.exit(0);
}

console.log('cascade-spec: building the native addon with cmake-js (this takes a few minutes)');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(
    '\ncascade-spec: the native build failed.\n' +
      '  If libtorch is missing: run `sudo bash scripts/setup-debian.sh` (Debian/Ubuntu: libtorch-dev, libopenblas0-openmp),\n' +
      '  or set TORCH_DIR to a libtorch folder (e.g. a CUDA build), then `npm rebuild cascade-spec` / `npm ci`.',
  );
  process.exit(r.status || 1);
}
