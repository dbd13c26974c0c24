#!/usr/bin/env python3
"""Crash test: crfsd killed with SIGKILL at random points of a transaction stream.

A client imports a 409-object tree as /c<i> (two transactions: the top
directory, then everything below it in one) and removes the previous one
with `rm -r` (one transaction), over and over, while crfsd is killed with
SIGKILL at a random moment and restarted, ROUNDS times. After each restart
(which finishes a journaled transaction first) the tree on the btrfs below
must show every transaction entirely present or entirely absent:
  - /c<i> is absent, an empty directory (only its first transaction), or
    the complete tree, byte for byte;
  - every import the client saw acknowledged is complete unless a later
    acknowledged rm -r removed it; every acknowledged rm -r left nothing;
  - every file's link count equals the names it has.
Every fifth round is a rollback round instead: a 3,000-file import is made to
fail midway (the admin creates, once the files start to appear, the name it
creates last), so that it rolls back, and crfsd is killed at a random moment
of that; after the restart only the admin's file may be left (or, if the
import got there first, the whole import).
Every third of the other rounds also emulates what a power cut does to the
audit log: its records after the latest checkpoint (the part not known to be
synced) are cut off before the restart; the start must restore every lost
decision from the intent journals, so at the end the log verifies and has a
result for every acknowledged operation.
At the end `btrfs check` on the unmounted image must pass. Needs root.

usage: crash_test.py BUILD_DIR SOURCE_DIR [ROUNDS]
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crfsd_test as base  # noqa: E402  (parses BUILD_DIR SOURCE_DIR)

ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 200


def make_tree(root):
    os.makedirs(root)
    for d in range(8):
        os.makedirs(os.path.join(root, f'd{d}'))
        for f in range(50):
            with open(os.path.join(root, f'd{d}', f'f{f}'), 'w') as fh:
                fh.write(f'{d}.{f}\n' * 3)


def read_tree(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            out[rel] = None if os.path.isdir(p) else open(p, 'rb').read()
    return out


def lose_unsigned_tail(audit_dir):
    """Cuts records.jsonl back to what its latest checkpoint covers (crfsd is not running); how many went."""
    with open(os.path.join(audit_dir, 'checkpoint')) as f:
        size = int(f.read().split('\n')[1])
    path = os.path.join(audit_dir, 'records.jsonl')
    with open(path, 'rb') as f:
        lines = f.read().splitlines(keepends=True)
    with open(path, 'wb') as f:
        f.write(b''.join(lines[:size]))
    return len(lines) - size


def main():
    W = base.Fixture()
    failures = []
    try:
        W.setup()
        local = W.path('crash-src')
        make_tree(local)
        expected = read_tree(local)
        tenant = os.path.join(W.mnt, 'tenants', 'beta')
        acked = {}  # name -> 'present' | 'absent', from acknowledged operations
        acknowledged = [0]
        counter = [0]
        replays = 0
        killed_while_running = 0
        cut_rounds = lost_records = 0

        def workload(stop):
            while not stop.is_set():
                i = counter[0]
                counter[0] += 1
                r = W.crfs('import', local, f'/c{i}', tenant='beta', client='bob', check=False)
                if r.returncode == 0:
                    acked[f'c{i}'] = 'present'
                    acknowledged[0] += 1
                if i > 0:
                    acked.pop(f'c{i - 1}', None)  # from here its removal may or may not have happened
                    r = W.crfs('rm', '-r', f'/c{i - 1}', tenant='beta', client='bob', check=False)
                    if r.returncode == 0:
                        acked[f'c{i - 1}'] = 'absent'
                        acknowledged[0] += 1

        flat = W.path('crash-flat')
        os.makedirs(flat)
        for i in range(3000):
            with open(os.path.join(flat, f'f{i:04d}'), 'w') as fh:
                fh.write(f'{i}\n')
        last = sorted(os.listdir(flat))[-1]  # the import creates in name order
        rollback_rounds = rollbacks = 0
        crt, key = W.cert('beta', 'bob')
        for rnd in range(ROUNDS):
            if rnd % 5 == 4:
                name = f'r{rnd}'
                target = os.path.join(tenant, name)
                proc = subprocess.Popen([base.CRFS, '--server', f'127.0.0.1:{W.port}', '--ca', W.path('pki/ca.crt'),
                                         '--cert', crt, '--key', key, 'import', flat, '/' + name],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.time() + 30
                while time.time() < deadline and proc.poll() is None and not (
                        os.path.isdir(target) and os.listdir(target)):
                    time.sleep(0.001)
                planted = None
                try:
                    fd = os.open(os.path.join(target, last), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                    os.close(fd)
                    planted = os.stat(os.path.join(target, last)).st_ino
                except (FileExistsError, FileNotFoundError):
                    pass
                time.sleep(random.uniform(0, 0.15))
                W.crfsd.send_signal(signal.SIGKILL)  # by PID
                W.crfsd.wait()
                proc.wait()
                W.log.close()
                W.start()
                log = W.logtext()
                rollbacks = log.count('rolling back')
                got = sorted(os.listdir(target)) if os.path.isdir(target) else []
                if planted is not None:
                    rollback_rounds += 1
                    if [(n, os.stat(os.path.join(target, n)).st_ino) for n in got] != [(last, planted)]:
                        failures.append(f'round {rnd}: after a rollback {len(got)} entries are left, not just the '
                                        f'admin\'s')
                elif len(got) not in (0, 3000):
                    failures.append(f'round {rnd}: a half-applied import: {len(got)} of 3000')
                shutil.rmtree(target, ignore_errors=True)
                if failures:
                    break
                continue
            stop = threading.Event()
            t = threading.Thread(target=workload, args=(stop,))
            t.start()
            time.sleep(random.uniform(0.02, 0.35))
            W.crfsd.send_signal(signal.SIGKILL)  # by PID
            W.crfsd.wait()
            stop.set()
            t.join()
            if rnd % 3 == 0:
                lost_records += lose_unsigned_tail(W.path('audit'))
                cut_rounds += 1
            W.log.close()
            W.start()  # replays the journal before it serves
            log = W.logtext()
            replays = log.count('from the journal')
            # Every transaction entirely present or absent.
            for name in sorted(os.listdir(tenant)):
                if not name.startswith('c'):
                    continue
                got = read_tree(os.path.join(tenant, name))
                if got and got != expected:
                    failures.append(f'round {rnd}: /{name} is partial: {len(got)} of {len(expected)} objects')
            for name, state in acked.items():
                present = os.path.lexists(os.path.join(tenant, name))
                if state == 'absent' and present:
                    failures.append(f'round {rnd}: acknowledged rm -r /{name}, but it is there')
                if state == 'present' and not present:
                    failures.append(f'round {rnd}: acknowledged import /{name}, but it is gone')
            names = {}
            for dirpath, _, filenames in os.walk(tenant):
                for n in filenames:
                    st = os.lstat(os.path.join(dirpath, n))
                    names.setdefault(st.st_ino, [st.st_nlink, 0])[1] += 1
            for ino, (nlink, seen) in names.items():
                if nlink != seen:
                    failures.append(f'round {rnd}: inode {ino} has nlink {nlink} but {seen} names')
            if failures:
                break
            # Checked: clear the trees away (as the admin, before any client
            # is back), so every round checks a small tree.
            for name in os.listdir(tenant):
                if name.startswith('c') and name != f'c{counter[0] - 1}':
                    shutil.rmtree(os.path.join(tenant, name))
                    acked.pop(name, None)
        print(f'{ROUNDS} SIGKILLs, {counter[0]} imports started, {acknowledged[0]} acknowledged operations, '
              f'{replays} restarts finished a journaled transaction; {rollback_rounds} rounds with an import made to '
              f'fail midway, {rollbacks} rollbacks logged')
        # btrfs check on the unmounted image.
        W.crfsd.send_signal(signal.SIGTERM)
        W.crfsd.wait(10)
        # The audit log survived every SIGKILL: it verifies (a clean stop signs all of it), and
        # every acknowledged operation has its result recorded (written before the answer).
        v = subprocess.run([base.CRFS_AUDIT, 'verify', W.path('audit'), '--key', W.vkey], capture_output=True,
                           text=True)
        print('crfs-audit verify:', v.stdout.strip() or v.stderr.strip())
        if v.returncode != 0:
            failures.append('the audit log does not verify after the SIGKILLs:\n' + v.stdout + v.stderr)
        with open(W.path('audit', 'records.jsonl')) as f:
            lines = f.readlines()
        applied = sum(1 for line in lines if '"ev":"transaction.result"' in line and '"applied":true' in line)
        restored = sum(1 for line in lines if '"restored":{"from":"journal"' in line)
        print(f'audit log: {cut_rounds} restarts lost the unsigned tail ({lost_records} records); '
              f'{restored} decisions restored from the journals')
        if applied < acknowledged[0]:
            failures.append(f'{acknowledged[0]} acknowledged operations but only {applied} applied transactions recorded')
        if ROUNDS >= 50 and restored == 0:
            failures.append('no decision record was lost and restored: the test proved nothing about it')
        subprocess.run(['umount', W.mnt], check=True)
        check = subprocess.run(['btrfs', 'check', '--readonly', W.loop], capture_output=True, text=True)
        print('btrfs check --readonly:', 'no errors' if check.returncode == 0 else f'exit {check.returncode}')
        if check.returncode != 0:
            failures.append('btrfs check failed:\n' + check.stdout + check.stderr)
        subprocess.run(['mount', '-o', 'noatime,nodev,nosuid', W.loop, W.mnt], check=True)
        if replays == 0:
            failures.append('no kill landed inside a transaction: the test proved nothing about replay')
        if ROUNDS >= 10 and rollbacks == 0:
            failures.append('no rollback happened: the test proved nothing about rollbacks')
    finally:
        W.teardown()
    for f in failures:
        print('FAIL:', f)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
