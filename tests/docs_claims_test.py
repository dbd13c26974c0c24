#!/usr/bin/env python3
"""Every test and file SECURITY.md names as evidence for a claim exists.

Reads the back-quoted references in SECURITY.md and checks each against the
real test lists, so the threat model cannot point at a test that was renamed
or removed:
  `Suite.Test`, `Suite.*`, `Suite.Test/param`  -> GoogleTest tests
  `…/param`                                   -> a CodecNegative table case
  `fuzz.*`, `btrfs.x` ... (ctest names)       -> ctest tests
  `tests/...`, `proto/...` (paths)            -> files in the tree
  `file.py:Class.test_x`                      -> a test in tests/e2e/file.py
usage: docs_claims_test.py SOURCE_DIR BUILD_DIR GTEST_BINARY...
"""
import fnmatch
import os
import re
import subprocess
import sys

src, build, binaries = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(os.path.join(src, 'SECURITY.md'), encoding='utf-8').read()

gtests = []
for b in binaries:
    suite = None
    for line in subprocess.run([b, '--gtest_list_tests'], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        if not line.startswith(' '):
            suite = line.strip()
        else:
            # Drop a parameterized suite's instance prefix ("Table/").
            gtests.append(re.sub(r'^\w+/', '', suite) + line.split('#')[0].strip())
ctests = re.findall(r'Test\s+#\d+: (\S+)', subprocess.run(['ctest', '-N', '--test-dir', build], check=True,
                                                        capture_output=True, text=True).stdout)

failures, checked = [], 0
for ref in re.findall(r'`([^`\n]+)`', text):
    ref = ref.strip()
    m = re.fullmatch(r'(\w+\.py):(\w+)\.(test_\w+)', ref)
    if m:  # a Python end-to-end test: the file has the class, the class has the test
        path = os.path.join(src, 'tests', 'e2e', m.group(1))
        body = open(path).read() if os.path.exists(path) else ''
        cls = re.search(r'^class %s\b.*?(?=^class |\Z)' % m.group(2), body, re.S | re.M)
        ok = bool(cls and re.search(r'def %s\(' % m.group(3), cls.group(0)))
    elif ref.startswith('…/'):
        ok = any(t.endswith('/' + ref[2:]) for t in gtests)
    elif re.fullmatch(r'(tests|proto|tools|scripts|docs|server|client|kmod|pki|policy|authd)/[\w./-]+', ref):
        ok = os.path.exists(os.path.join(src, ref))
    elif re.fullmatch(r'(fuzz|btrfs|kmod|style|crfsctl|docs)\.[\w.*]+', ref):
        ok = any(fnmatch.fnmatch(t, ref) for t in ctests)
    elif re.fullmatch(r'[A-Z]\w+\.[\w*]+(/[\w*]+)?', ref):
        ok = any(fnmatch.fnmatch(t, ref) for t in gtests)
    else:
        continue
    checked += 1
    if not ok:
        failures.append(ref)

print(f'checked {checked} references in SECURITY.md against {len(gtests)} gtests and {len(ctests)} ctests')
for f in failures:
    print(f'FAIL: SECURITY.md names {f!r}, which does not exist')
if checked < 20:
    print('FAIL: fewer references than expected: is the parser still reading SECURITY.md?')
    sys.exit(1)
sys.exit(1 if failures else 0)
