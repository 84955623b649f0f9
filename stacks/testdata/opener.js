// The JavaScript twin of opener.c for node: after its start byte on stdin, writeTempFile() opens a
// file exactly 300 times (fs.openSync: one openat on the main thread each), called from
// fillDirectory(); "done 300" goes to stdout; then it waits for stdin to close.
'use strict';
const fs = require('fs');
const path = require('path');

const file = path.join(process.argv[2], 'opener-js.tmp');

function writeTempFile(i) {
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, String(i));
  fs.closeSync(fd);
}

function fillDirectory(n) {
  let ok = 0;
  for (let i = 0; i < n; i++) {
    writeTempFile(i);
    ok++;
  }
  return ok;
}

const b = Buffer.alloc(1);
fs.readSync(0, b, 0, 1);
const ok = fillDirectory(300);
fs.writeSync(1, `done ${ok}\n`);
while (fs.readSync(0, b, 0, 1) > 0) {}
