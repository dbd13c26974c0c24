#!/usr/bin/env python3
"""crfs-fuse end to end: a real FUSE mount of a tenant's tree over real TLS.

The fixture of crfsd_test.py (a btrfs image on a loop device, a PKI, crfsd),
then crfs-fuse mounts acme (alice: the tenant's root) and beta (bob). A table
of syscalls runs on the mount and on a directory of the same local btrfs,
and their results must agree, except for the differences listed in
KNOWN_DIFFERENCES (each also in docs/fuse.md, with its reason). Mounts are
unmounted and crfs-fuse processes stopped by PID even when a test fails.
Needs root.

usage: fuse_test.py BUILD_DIR SOURCE_DIR [unittest args]
"""
import ctypes
import errno
import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crfsd_test as base  # noqa: E402  (parses BUILD_DIR SOURCE_DIR)

CRFS_FUSE = os.path.join(base.BUILD, 'client', 'crfs-fuse')
W = None
MOUNTS = {}  # mount point -> crfs-fuse Popen

libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100

# Where the mount is allowed to differ from local btrfs, and why (docs/fuse.md).
KNOWN_DIFFERENCES = {}


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def mount(tenant, client, where, *extra, check=True):
    crt, key = W.cert(tenant, client)
    os.makedirs(where, exist_ok=True)
    args = [CRFS_FUSE, f'127.0.0.1:{W.port}', where, '-f', '-o',
            f'cert={crt},key={key},ca={W.path("pki/ca.crt")}', *extra]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        if os.path.ismount(where):
            MOUNTS[where] = p
            return p
        if p.poll() is not None:
            _, err = p.communicate()
            if check:
                raise AssertionError(f'crfs-fuse exited {p.returncode}: {err}')
            return p
        time.sleep(0.02)
    p.kill()
    p.wait()
    raise AssertionError('crfs-fuse did not mount within 20 s')


def unmount(where):
    """Unmounts `where` and waits for its crfs-fuse; returns what that printed on stderr."""
    p = MOUNTS.pop(where, None)
    subprocess.run(['fusermount3', '-u', where], capture_output=True)
    if os.path.ismount(where):
        subprocess.run(['umount', '-l', where], capture_output=True)
    err = ''
    if p is not None:
        try:
            _, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()  # by PID
            _, err = p.communicate()
        # A clean unmount ends crfs-fuse with status 0 (under ASan: no leak, no error).
        if p.returncode != 0:
            raise AssertionError(f'crfs-fuse for {where} exited {p.returncode}: {err[-3000:]}')
    return err


def setUpModule():
    global W
    W = base.Fixture()
    base.W = W
    try:
        W.setup()
        # From here on crfsd listens on one port, so that a restart comes back where
        # the mounts reconnect to.
        with open(W.path('crfsd.json')) as f:
            config = json.load(f)
        config['listen'] = f'127.0.0.1:{W.port}'
        with open(W.path('crfsd.json'), 'w') as f:
            json.dump(config, f)
        W.crfsd.send_signal(signal.SIGTERM)
        W.crfsd.wait(30)
        W.log.close()
        W.start()
    except BaseException:
        W.teardown()
        raise


def tearDownModule():
    for where in list(MOUNTS):
        unmount(where)
    if W:
        W.teardown()


def outcome(f):
    """What one step gives: its value, or the errno's name."""
    try:
        return f()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def syscall_table(root):
    """The same steps in `root` (a fresh directory); a list of (step, outcome)."""
    p = lambda *a: os.path.join(root, *a)  # noqa: E731
    steps = []

    def step(name, f):
        steps.append((name, outcome(f)))

    def write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode=0o644):
        fd = os.open(path, flags, mode)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)

    def read(path):
        with open(path, 'rb') as f:
            return f.read()

    step('mkdir a', lambda: os.mkdir(p('a'), 0o755))
    step('mkdir a again', lambda: os.mkdir(p('a')))
    step('mode of a', lambda: oct(os.stat(p('a')).st_mode))
    step('creat a/f', lambda: write(p('a', 'f'), b'hello', os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    step('creat a/f excl again', lambda: write(p('a', 'f'), b'', os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    step('read a/f', lambda: read(p('a', 'f')))
    step('stat a/f', lambda: (oct(os.stat(p('a', 'f')).st_mode), os.stat(p('a', 'f')).st_size,
                              os.stat(p('a', 'f')).st_nlink))
    step('rmdir a (not empty)', lambda: os.rmdir(p('a')))
    step('unlink a (a directory)', lambda: os.unlink(p('a')))
    step('rmdir a/f (a file)', lambda: os.rmdir(p('a', 'f')))
    step('open a/missing', lambda: os.open(p('a', 'missing'), os.O_RDONLY))
    step('rename a/f a/g', lambda: os.rename(p('a', 'f'), p('a', 'g')))
    step('stat a/f after', lambda: os.stat(p('a', 'f')).st_size)
    step('link a/g a/h', lambda: os.link(p('a', 'g'), p('a', 'h')))
    step('nlink of a/g', lambda: os.stat(p('a', 'g')).st_nlink)
    step('link a a/dirlink', lambda: os.link(p('a'), p('a', 'dirlink')))
    step('symlink g a/s', lambda: os.symlink('g', p('a', 's')))
    step('readlink a/s', lambda: os.readlink(p('a', 's')))
    step('read through a/s', lambda: read(p('a', 's')))
    step('rename noreplace a/g a/h', lambda: renameat2(p('a', 'g'), p('a', 'h'), RENAME_NOREPLACE))
    step('rename noreplace a/g a/n', lambda: renameat2(p('a', 'g'), p('a', 'n'), RENAME_NOREPLACE))
    step('exchange a/n a/s', lambda: renameat2(p('a', 'n'), p('a', 's'), RENAME_EXCHANGE))
    step('readlink a/n', lambda: os.readlink(p('a', 'n')))
    step('exchange with missing', lambda: renameat2(p('a', 'n'), p('a', 'nothing'), RENAME_EXCHANGE))
    step('rename over itself (hard links)', lambda: os.rename(p('a', 's'), p('a', 'h')))
    step('names of a', lambda: sorted(os.listdir(p('a'))))
    step('chmod a/h 0640', lambda: os.chmod(p('a', 'h'), 0o640))
    step('mode of a/h', lambda: oct(os.stat(p('a', 'h')).st_mode))
    step('truncate a/h 3', lambda: os.truncate(p('a', 'h'), 3))
    step('read a/h', lambda: read(p('a', 'h')))
    step('truncate a/h 100000', lambda: os.truncate(p('a', 'h'), 100000))
    step('size and tail of a/h', lambda: (os.stat(p('a', 'h')).st_size, read(p('a', 'h'))[-4:]))
    step('utime a/h', lambda: os.utime(p('a', 'h'), ns=(1_000_000_000_123, 2_000_000_000_456)))
    step('times of a/h', lambda: (os.stat(p('a', 'h')).st_atime_ns, os.stat(p('a', 'h')).st_mtime_ns))
    step('setxattr', lambda: os.setxattr(p('a', 'h'), 'user.k', b'v1'))
    step('setxattr create existing', lambda: os.setxattr(p('a', 'h'), 'user.k', b'v2', os.XATTR_CREATE))
    step('setxattr replace missing', lambda: os.setxattr(p('a', 'h'), 'user.m', b'v', os.XATTR_REPLACE))
    step('setxattr replace', lambda: os.setxattr(p('a', 'h'), 'user.k', b'v3', os.XATTR_REPLACE))
    step('getxattr', lambda: os.getxattr(p('a', 'h'), 'user.k'))
    step('listxattr', lambda: sorted(os.listxattr(p('a', 'h'))))
    step('removexattr', lambda: os.removexattr(p('a', 'h'), 'user.k'))
    step('getxattr removed', lambda: os.getxattr(p('a', 'h'), 'user.k'))
    step('removexattr again', lambda: os.removexattr(p('a', 'h'), 'user.k'))
    step('mkdir a/sub', lambda: os.mkdir(p('a', 'sub')))
    step('rename a into a/sub', lambda: os.rename(p('a'), p('a', 'sub', 'x')))
    step('rename file over dir', lambda: os.rename(p('a', 'h'), p('a', 'sub')))
    step('rename dir over file', lambda: os.rename(p('a', 'sub'), p('a', 'h')))
    step('mkdir b/c', lambda: os.makedirs(p('b', 'c')))
    step('rename dir over non-empty dir', lambda: os.rename(p('a', 'sub'), p('b')))
    step('rename dir over empty dir', lambda: os.rename(p('a', 'sub'), p('b', 'c')))
    step('names of b', lambda: sorted(os.listdir(p('b'))))
    step('append', lambda: (write(p('ap'), b'one', os.O_WRONLY | os.O_CREAT | os.O_APPEND),
                            write(p('ap'), b'two', os.O_WRONLY | os.O_APPEND), read(p('ap'))))

    def big():
        fd = os.open(p('big'), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, b'end', 5 << 30)
            return os.fstat(fd).st_size, os.pread(fd, 3, 5 << 30), os.pread(fd, 4, 1 << 30)
        finally:
            os.close(fd)
    step('a file past 4 GiB, sparse', big)

    def scattered_writes():
        fd = os.open(p('sc'), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for off, data in [(0, b'aaaa'), (10, b'bbbb'), (2, b'cc'), (8, b'dddddd'), (30, b'e'), (3, b'ffffffffff'),
                              (20, b'g' * 3)]:
                os.pwrite(fd, data, off)
            return os.fstat(fd).st_size, os.pread(fd, 64, 0)
        finally:
            os.close(fd)
    step('scattered and overlapping writes', scattered_writes)

    def shared_mmap():
        write(p('mm'), b'\0' * 8192)
        fd = os.open(p('mm'), os.O_RDWR)
        try:
            m = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            m[4096:4101] = b'mmap!'
            m.flush()
            m.close()
            os.fsync(fd)
        finally:
            os.close(fd)
        return read(p('mm'))[4096:4101]
    step('shared writable mmap', shared_mmap)

    def unlinked_open():
        fd = os.open(p('tmp'), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.write(fd, b'still here')
            os.unlink(p('tmp'))
            os.pwrite(fd, b'STILL', 0)
            return os.path.lexists(p('tmp')), os.fstat(fd).st_nlink, os.pread(fd, 10, 0)
        finally:
            os.close(fd)
    step('open, unlink, write, read', unlinked_open)

    def seed():
        os.mkdir(p('d'))
        dfd = os.open(p('d'), os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open(p('d', 'f'), os.O_WRONLY | os.O_CREAT, 0o600)
            os.unlink(p('d', 'f'))
            os.rmdir(p('d'))
            os.close(fd)
            try:
                os.listdir(dfd)
                return 'listed'
            except OSError as e:
                return 'getdents: ' + errno.errorcode[e.errno]
        finally:
            os.close(dfd)
    step('mkdir d; open d; creat d/f; unlink d/f; rmdir d; getdents', seed)
    step('rm -r', lambda: (shutil.rmtree(p('a')), shutil.rmtree(p('b')), sorted(os.listdir(root))))
    return steps


class Mount(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.where = W.path('m-acme')
        mount('acme', 'alice', cls.where)

    @classmethod
    def tearDownClass(cls):
        unmount(cls.where)

    def test_syscalls_agree_with_local_btrfs(self):
        local = os.path.join(W.mnt, 'local-reference')
        os.makedirs(local)
        remote = os.path.join(self.where, 'table')
        os.mkdir(remote)
        try:
            want = syscall_table(local)
            got = syscall_table(remote)
        finally:
            shutil.rmtree(local, ignore_errors=True)
        self.assertEqual(len(want), len(got))
        differ = [(name, w, g) for (name, w), (_, g) in zip(want, got) if w != g and name not in KNOWN_DIFFERENCES]
        self.assertEqual(differ, [], '\n'.join(f'{n}: local {w!r}, crfs {g!r}' for n, w, g in differ))
        # The table did what it says on the server's side too.
        self.assertEqual(sorted(os.listdir(os.path.join(W.mnt, 'tenants', 'acme', 'table'))), ['ap', 'big', 'mm', 'sc'])
        shutil.rmtree(remote)

    def test_what_the_mount_writes_is_in_the_tenants_subvolume(self):
        with open(os.path.join(self.where, 'hello-from-fuse'), 'w') as f:
            f.write('written through the mount\n')
        on_server = os.path.join(W.mnt, 'tenants', 'acme', 'hello-from-fuse')
        with open(on_server) as f:
            self.assertEqual(f.read(), 'written through the mount\n')
        self.assertEqual(os.stat(on_server).st_uid, 100000)  # the tenant's root, mapped
        os.unlink(os.path.join(self.where, 'hello-from-fuse'))
        self.assertFalse(os.path.lexists(on_server))

    def test_the_admins_files_show_with_tenant_ids(self):
        st = os.stat(os.path.join(self.where, 'docs', 'hello.txt'))
        self.assertEqual((st.st_uid, st.st_gid), (1000, 5))
        with open(os.path.join(self.where, 'docs', 'hello.txt')) as f:
            self.assertEqual(f.read(), 'hello acme\n')
        self.assertEqual(os.getxattr(os.path.join(self.where, 'docs', 'hello.txt'), 'user.color'), b'blue')

    def test_a_tree_copied_in_and_out_is_the_same(self):
        src = os.path.join(base.SRC, 'proto')
        dst = os.path.join(self.where, 'copy')
        shutil.copytree(src, dst, symlinks=True)
        back = W.path('copy-back')
        shutil.copytree(dst, back, symlinks=True)
        try:
            for top, dirs, files in os.walk(src):
                for n in files:
                    rel = os.path.relpath(os.path.join(top, n), src)
                    with open(os.path.join(src, rel), 'rb') as a, open(os.path.join(back, rel), 'rb') as b:
                        self.assertEqual(a.read(), b.read(), rel)
        finally:
            shutil.rmtree(back)
            shutil.rmtree(dst)

    def test_a_refused_gathered_write_is_reported_by_close(self):
        # Writes are gathered and sent later; one the server refuses (past the protocol's
        # 2^62 bytes: EFBIG) is reported by close(2), as NFS reports write-back errors.
        path = os.path.join(self.where, 'too-far')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self.assertEqual(os.pwrite(fd, b'x', 1 << 62), 1)
        with self.assertRaises(OSError) as e:
            os.close(fd)
        self.assertEqual(e.exception.errno, errno.EFBIG)
        self.assertEqual(os.stat(path).st_size, 0)
        os.unlink(path)

    def test_fsync_returns_once_durable(self):
        fd = os.open(os.path.join(self.where, 'synced'), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b'durable')
        os.fsync(fd)
        os.close(fd)
        os.unlink(os.path.join(self.where, 'synced'))


class Workloads(unittest.TestCase):
    """Real programs from Debian packages on the mount, bounded in time; each must finish
    cleanly and, where it can, verify what it wrote."""

    @classmethod
    def setUpClass(cls):
        cls.where = W.path('m-work')
        mount('acme', 'alice', cls.where)
        cls.dir = os.path.join(cls.where, 'work')
        os.mkdir(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)
        unmount(cls.where)

    def sh(self, cmd, cwd=None, timeout=300):
        r = subprocess.run(cmd, shell=True, cwd=cwd or self.dir, capture_output=True, text=True, errors='replace',
                           timeout=timeout)
        self.assertEqual(r.returncode, 0, f'{cmd}: {r.stdout[-2000:]}{r.stderr[-2000:]}')
        return r.stdout + r.stderr

    def test_fio_verifies_random_and_sequential_writes(self):
        for rw, bs, size in (('randwrite', '4k', '8m'), ('write', '128k', '32m'), ('randrw', '16k', '8m')):
            out = self.sh(f'fio --name={rw} --directory=. --size={size} --bs={bs} --rw={rw} --verify=crc32c '
                          '--verify_fatal=1 --ioengine=psync --unlink=1')
            self.assertIn('err= 0', out)

    def test_dbench(self):
        self.assertIn('Throughput', self.sh('dbench -t 5 -D . 2'))

    def test_postmark(self):
        cfg = W.path('postmark.cfg')
        with open(cfg, 'w') as f:
            f.write(f'set location {self.dir}\nset number 200\nset transactions 500\nrun\nquit\n')
        out = self.sh(f'postmark {cfg}')
        self.assertIn('seconds of transactions', out)
        self.assertIn('Deleting files...Done', out)
        self.assertEqual([n for n in os.listdir(self.dir) if n.startswith('s') and n[1:].isdigit()], [])

    def test_stress_ng_file_stressors(self):
        out = self.sh('stress-ng --temp-path . --dir 1 --rename 1 --symlink 1 --hdd 1 --hdd-bytes 4m --verify '
                      '--timeout 5s', timeout=120)
        self.assertIn('successful run completed', out)

    def test_tar_and_make_of_a_c_project(self):
        src = W.path('cproject')
        os.makedirs(src, exist_ok=True)
        with open(os.path.join(src, 'main.c'), 'w') as f:
            f.write('#include <stdio.h>\nint add(int, int);\nint main(void) { printf("%d\\n", add(40, 2)); }\n')
        with open(os.path.join(src, 'add.c'), 'w') as f:
            f.write('int add(int a, int b) { return a + b; }\n')
        with open(os.path.join(src, 'Makefile'), 'w') as f:
            f.write('prog: main.o add.o\n\tcc -o $@ $^\n%.o: %.c\n\tcc -c -o $@ $<\n')
        self.sh(f'tar czf {W.path("cproject.tgz")} -C {src} . && mkdir cp && tar xzf {W.path("cproject.tgz")} -C cp')
        self.sh('make -C cp')
        self.assertEqual(self.sh('./cp/prog').strip(), '42')
        self.assertIn('is up to date', self.sh('make -C cp'))  # mtimes survive: nothing rebuilt

    def test_cp_a_and_sed_i_without_complaint(self):
        # cp -a and an editor's save (sed -i: a new file renamed over the old) try to keep
        # POSIX ACLs; the mount answers EOPNOTSUPP, so they keep the mode bits quietly.
        out = self.sh(f'cp -a {os.path.join(base.SRC, "docs")} docs && sed -i s/crfs/CRFS/ docs/crfsd.md')
        self.assertEqual(out, '')
        self.sh(f'diff -r {os.path.join(base.SRC, "docs")} docs | grep -q CRFS')
        self.assertEqual(oct(os.stat(os.path.join(self.dir, 'docs', 'crfsd.md')).st_mode & 0o777),
                         oct(os.stat(os.path.join(base.SRC, 'docs', 'crfsd.md')).st_mode & 0o777))

    def test_git_clone_and_status(self):
        self.sh(f'git clone -q {base.SRC} repo')
        self.assertEqual(self.sh('git status --porcelain', cwd=os.path.join(self.dir, 'repo')), '')
        self.sh('git fsck --no-progress', cwd=os.path.join(self.dir, 'repo'))


def pids_serving(where):
    """PIDs of crfs-fuse processes started for mount point `where` (a unique test path)."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                args = f.read().split(b'\0')
        except OSError:
            continue
        if args and args[0].endswith(b'crfs-fuse') and where.encode() in args:
            found.append(int(pid))
    return found


class MountHelper(unittest.TestCase):
    HELPER = os.path.join(base.BUILD, 'client', 'mount.fuse.crfs')

    def helper(self, where, opts):
        os.makedirs(where, exist_ok=True)
        return subprocess.run([self.HELPER, f'127.0.0.1:{W.port}', where, '-o', opts], capture_output=True, text=True,
                              errors='replace', timeout=60)

    def test_as_mount_8_calls_it_with_fstab_options_then_umount(self):
        # What `mount -t fuse.crfs` and an fstab line run: the helper with mount(8)'s
        # options mixed in; crfs-fuse goes to the background once mounted; umount ends it.
        where = W.path('m-helper')
        crt, key = W.cert('acme', 'alice')
        r = self.helper(where, f'cert={crt},key={key},ca={W.path("pki/ca.crt")},_netdev,nofail,noauto,x-systemd.a=b,'
                               'defaults,nodev,nosuid')
        pids = pids_serving(where)
        try:
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(os.path.ismount(where))
            self.assertEqual(len(pids), 1)
            with open(os.path.join(where, 'via-helper'), 'w') as f:
                f.write('mounted by mount.fuse.crfs\n')
            self.assertTrue(os.path.exists(os.path.join(W.mnt, 'tenants', 'acme', 'via-helper')))
            os.unlink(os.path.join(where, 'via-helper'))
            self.assertEqual(subprocess.run(['umount', where], capture_output=True).returncode, 0)
            deadline = time.time() + 10
            while time.time() < deadline and pids_serving(where):
                time.sleep(0.05)
            self.assertEqual(pids_serving(where), [], 'crfs-fuse outlived its unmount')
        finally:
            if os.path.ismount(where):
                subprocess.run(['umount', '-l', where], capture_output=True)
            for pid in pids_serving(where):
                os.kill(pid, signal.SIGKILL)  # by PID

    def test_an_unknown_option_fails_through_the_helper(self):
        where = W.path('m-helper2')
        crt, key = W.cert('acme', 'alice')
        r = self.helper(where, f'cert={crt},key={key},ca={W.path("pki/ca.crt")},nonsense')
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('nonsense', r.stderr)
        self.assertFalse(os.path.ismount(where))


class Tenants(unittest.TestCase):
    def test_each_tenant_sees_only_its_own_tree(self):
        a, b = W.path('m-a2'), W.path('m-b2')
        mount('acme', 'alice', a)
        try:
            mount('beta', 'bob', b)
            try:
                self.assertIn('secret.txt', os.listdir(b))
                self.assertNotIn('secret.txt', os.listdir(a))
                self.assertIn('docs', os.listdir(a))
                self.assertNotIn('docs', os.listdir(b))
                # A symlink out of the tenant is resolved locally, as any symlink is: it
                # names the local path, never the other tenant's file.
                self.assertEqual(os.readlink(os.path.join(a, 'sneaky')), '../../beta/secret.txt')
            finally:
                unmount(b)
        finally:
            unmount(a)


class KilledUnderLoad(unittest.TestCase):
    def test_sigkill_of_crfsd_under_a_running_writer_loses_nothing_acknowledged(self):
        # A writer makes files (write, close: acknowledged once close returns) while
        # crfsd is killed with SIGKILL and restarted. The writer goes on (a change cut off
        # before its transaction went out is built again on the new session, one cut off
        # after it is resent with its id), and every file whose close returned is there,
        # whole.
        where = W.path('m-load')
        mount('acme', 'alice', where)
        acked, errors, stop = [], [], threading.Event()
        top = os.path.join(where, 'load')
        os.mkdir(top)

        def writer():
            i = 0
            while not stop.is_set():
                path = os.path.join(top, f'f{i}')
                try:
                    with open(path, 'wb') as f:
                        f.write(str(i).encode() * 1000)
                    acked.append(i)
                except OSError as e:
                    errors.append((i, e.errno))
                i += 1
        t = threading.Thread(target=writer)
        t.start()
        try:
            time.sleep(0.5)
            W.crfsd.send_signal(signal.SIGKILL)  # by PID
            W.crfsd.wait()
            W.log.close()
            W.start()
            time.sleep(1.0)
            before = len(acked)
            time.sleep(0.5)
            stop.set()
            t.join()
            self.assertGreater(len(acked), before, 'the writer did not go on after the restart')
            # Seen once in 13 runs: one operation cut off answered EIO (cause not found
            # yet; issue 12's note). Anything more, or another errno, fails.
            self.assertTrue(len(errors) <= 1 and all(e == errno.EIO for _, e in errors), (errors, unmount(where)))
            for i in acked:
                with open(os.path.join(W.mnt, 'tenants', 'acme', 'load', f'f{i}'), 'rb') as f:
                    self.assertEqual(f.read(), str(i).encode() * 1000, f'f{i}')
        finally:
            stop.set()
            t.join()
            shutil.rmtree(top, ignore_errors=True)
            unmount(where)


class TwoMounts(unittest.TestCase):
    def test_what_one_mount_writes_the_other_reads_once_its_timeouts_pass(self):
        # Without grants (the coherency issue), the kernel of each mount keeps names and
        # attributes for its timeouts; with timeouts 0 the other mount sees every change at
        # its next call, and a file changed since its last open is not read from the page
        # cache (keep_cache only when size and mtime are unchanged).
        a, b = W.path('m-two-a'), W.path('m-two-b')
        mount('acme', 'alice', a)
        try:
            mount('acme', 'alice', b, '-o', 'entry_timeout=0,attr_timeout=0')
            try:
                with open(os.path.join(a, 'shared'), 'w') as f:
                    f.write('one\n')
                with open(os.path.join(b, 'shared')) as f:
                    self.assertEqual(f.read(), 'one\n')
                with open(os.path.join(a, 'shared'), 'a') as f:
                    f.write('two\n')
                self.assertEqual(os.stat(os.path.join(b, 'shared')).st_size, 8)
                with open(os.path.join(b, 'shared')) as f:
                    self.assertEqual(f.read(), 'one\ntwo\n')
                os.rename(os.path.join(a, 'shared'), os.path.join(a, 'moved'))
                self.assertFalse(os.path.exists(os.path.join(b, 'shared')))
                self.assertIn('moved', os.listdir(b))
                os.unlink(os.path.join(b, 'moved'))
                self.assertNotIn('moved', os.listdir(a))
            finally:
                unmount(b)
        finally:
            unmount(a)


class MountErrors(unittest.TestCase):
    def failed_mount(self, *extra, tenant='acme', client='alice', server=None):
        where = W.path('m-fail')
        os.makedirs(where, exist_ok=True)
        crt, key = W.cert(tenant, client)
        r = subprocess.run([CRFS_FUSE, server or f'127.0.0.1:{W.port}', where, '-f', '-o',
                            f'cert={crt},key={key},ca={W.path("pki/ca.crt")}', *extra],
                           capture_output=True, text=True, errors='replace', timeout=60)
        self.assertFalse(os.path.ismount(where))
        self.assertNotEqual(r.returncode, 0)
        return r

    def test_an_expired_certificate_is_one_line_and_nothing_is_mounted(self):
        r = self.failed_mount(client='old')
        self.assertIn('crfsd refused the certificate', r.stderr)
        self.assertIn('certificate expired', r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn('crfs-fuse: 127.0.0.1:', r.stderr)

    def test_a_refused_tenant(self):
        r = self.failed_mount(tenant='nobody', client='eve')
        self.assertIn('serves no tenant for this certificate', r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_an_unreachable_server(self):
        r = self.failed_mount('-o', 'reconnect=0', server='127.0.0.1:1')
        self.assertIn('refused', r.stderr.lower())
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_an_unknown_option_fails_the_mount(self):
        r = self.failed_mount('-o', 'no_such_option')
        self.assertIn('no_such_option', r.stderr)

    def test_an_out_of_range_option(self):
        r = self.failed_mount('-o', 'attr_timeout=99999')
        self.assertIn('attr_timeout', r.stderr)
        self.assertEqual(r.returncode, 2)


class Restart(unittest.TestCase):
    def test_sigkill_of_crfsd_is_survived_and_fsynced_data_kept(self):
        where = W.path('m-restart')
        mount('acme', 'alice', where)
        try:
            path = os.path.join(where, 'survivor')
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b'before the crash')
            os.fsync(fd)
            os.close(fd)
            W.crfsd.send_signal(signal.SIGKILL)  # by PID
            W.crfsd.wait()
            W.log.close()
            W.start()  # the same port (setUpModule)
            with open(path, 'rb') as f:
                self.assertEqual(f.read(), b'before the crash')
            with open(os.path.join(where, 'after'), 'w') as f:
                f.write('after the crash')
            self.assertTrue(os.path.exists(os.path.join(W.mnt, 'tenants', 'acme', 'after')))
            os.unlink(path)
            os.unlink(os.path.join(where, 'after'))
        finally:
            unmount(where)


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
