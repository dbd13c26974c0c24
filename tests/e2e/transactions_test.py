#!/usr/bin/env python3
"""End-to-end tests of transactions: real crfsd, real TLS, real btrfs.

The fixture is crfsd_test's (a btrfs image on a loop device, a CA, tenants
acme and beta, crfsd by PID). Changes are made with the `crfs` CLI, as a
tenant would, and checked on the btrfs below crfsd, as an admin would;
refusals are provoked with hand-made frames. Needs root.

usage: transactions_test.py BUILD_DIR SOURCE_DIR [unittest args]
"""
import os
import shutil
import stat
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crfsd_test as base  # noqa: E402  (parses BUILD_DIR SOURCE_DIR)
from crfsd_test import FINAL_REPLY, HELLO, HELLO_REPLY, frame, hello_payload, recv_frame, run  # noqa: E402

TRANS_FRAG, TRANS_REPLY, SYNC, DURABLE = 6, 16, 17, 18
EINVAL, EPERM, ESTALE, ENOTEMPTY = 22, 1, 116, 39


def setUpModule():
    base.setUpModule()


def tearDownModule():
    base.tearDownModule()


def W():
    return base.W


def acme(*p):
    return os.path.join(W().mnt, 'tenants', 'acme', *p)


def crfs(*args, check=True, client='alice'):
    r = W().crfs(*args, check=False, client=client)
    if check and r.returncode != 0:
        raise AssertionError(f'crfs {" ".join(args)}: exit {r.returncode}: {r.stderr}')
    return r


def crfs_bytes(*args):
    crt, key = W().cert('acme', 'alice')
    return subprocess.run([base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'), '--cert',
                           crt, '--key', key, *args], capture_output=True, check=True).stdout


def hello_session():
    """A session after HELLO; returns (socket, generation)."""
    s = W().tls()
    s.sendall(frame(HELLO, hello_payload()))
    _, _, typ, payload = recv_frame(s)
    assert typ == HELLO_REPLY, typ
    _, info, typ, _ = recv_frame(s)
    assert typ == FINAL_REPLY and info == 0
    return s, struct.unpack_from('<Q', payload, 32)[0]


def recv_reply(s):
    """The next reply to a request: unsolicited DURABLE frames (id 0) are skipped."""
    while True:
        f = recv_frame(s)
        if not (f[0] == 0 and f[2] == DURABLE):
            return f


def example_mkdir(generation, req_id):
    """crfsctl's example mkdir ('some-dir' in /), rebased on `generation`."""
    cap = W().path('example.cap')
    if not os.path.exists(cap):
        run(base.CRFSCTL, 'example', 'mkdir', '-o', cap)
    data, pos = open(cap, 'rb').read(), 0
    while pos < len(data):
        _, _, nbytes, typ, _, _ = struct.unpack_from('<QIIHHI', data, pos)
        if typ == TRANS_FRAG:
            payload = bytearray(data[pos + 24:pos + 24 + nbytes])
            struct.pack_into('<Q', payload, 8, generation)
            return frame(TRANS_FRAG, bytes(payload), req_id)
        pos += 24 + nbytes
    raise AssertionError('no TRANS_FRAG in the example')


class Operations(unittest.TestCase):
    """Every operation of the CLI, checked on the btrfs below."""

    def test_mkdir_put_and_read_back(self):
        crfs('mkdir', '/ops')
        st = os.lstat(acme('ops'))
        self.assertTrue(stat.S_ISDIR(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (100000, 100000, 0o755))
        data = os.urandom(3 * 1024 * 1024 + 17)  # several fragments
        src = W().path('upload.bin')
        with open(src, 'wb') as f:
            f.write(data)
        crfs('put', src, '/ops/file.bin')
        self.assertEqual(open(acme('ops', 'file.bin'), 'rb').read(), data)
        self.assertEqual(crfs_bytes('cat', '/ops/file.bin'), data)
        # Replacing the contents with something shorter truncates.
        with open(src, 'wb') as f:
            f.write(b'short\n')
        crfs('put', src, '/ops/file.bin')
        self.assertEqual(open(acme('ops', 'file.bin'), 'rb').read(), b'short\n')
        self.assertEqual(os.lstat(acme('ops', 'file.bin')).st_nlink, 1)

    def test_mkdir_of_an_existing_name_is_eexist(self):
        crfs('mkdir', '/exists')
        r = crfs('mkdir', '/exists', check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('EEXIST', r.stderr)

    def test_rm_file_and_empty_dir_refuses_non_empty(self):
        crfs('mkdir', '/rmme')
        crfs('mkdir', '/rmme/sub')
        src = W().path('small')
        with open(src, 'wb') as f:
            f.write(b'x')
        crfs('put', src, '/rmme/f')
        r = crfs('rm', '/rmme', check=False)
        self.assertIn('ENOTEMPTY', r.stderr)
        crfs('rm', '/rmme/f')
        crfs('rm', '/rmme/sub')
        crfs('rm', '/rmme')
        self.assertFalse(os.path.lexists(acme('rmme')))

    def test_rm_r_removes_a_tree_in_one_transaction(self):
        root = acme('tree')
        for d in range(10):
            os.makedirs(os.path.join(root, f'd{d}', 'inner'))
            for f in range(20):
                with open(os.path.join(root, f'd{d}', f'f{f}'), 'w') as fh:
                    fh.write('data')
                os.symlink('x', os.path.join(root, f'd{d}', 'inner', f'l{f}'))
        os.link(os.path.join(root, 'd0', 'f0'), acme('survivor'))
        base.give(root)
        r = crfs('--stats', 'rm', '-r', '/tree')
        # HELLO, the lookups, one TREE_QUERY for all 21 directories, one
        # transaction: a handful of frames, not one per directory or file.
        sent = int(r.stderr.split('sent ')[1].split()[0])
        self.assertLessEqual(sent, 8, r.stderr)
        self.assertFalse(os.path.lexists(root))
        self.assertEqual(open(acme('survivor')).read(), 'data')  # another name keeps it
        self.assertEqual(os.lstat(acme('survivor')).st_nlink, 1)

    def test_mv_within_across_replace_and_into_own_subtree(self):
        crfs('mkdir', '/mv')
        crfs('mkdir', '/mv/a')
        crfs('mkdir', '/mv/a/b')
        src = W().path('mvsrc')
        for name, text in (('one', b'1'), ('two', b'2')):
            with open(src, 'wb') as f:
                f.write(text)
            crfs('put', src, f'/mv/{name}')
        ino = os.lstat(acme('mv', 'one')).st_ino
        crfs('mv', '/mv/one', '/mv/uno')  # same directory
        self.assertEqual(os.lstat(acme('mv', 'uno')).st_ino, ino)
        crfs('mv', '/mv/uno', '/mv/a/b/uno')  # across directories
        self.assertEqual(os.lstat(acme('mv', 'a', 'b', 'uno')).st_ino, ino)
        crfs('mv', '/mv/two', '/mv/a/b/uno')  # replaces
        with open(acme('mv', 'a', 'b', 'uno'), 'rb') as f:
            self.assertEqual(f.read(), b'2')
        self.assertFalse(os.path.lexists(acme('mv', 'two')))
        r = crfs('mv', '/mv/a', '/mv/a/b/c', check=False)  # into its own subtree
        self.assertIn('EINVAL', r.stderr)
        self.assertIn('own subtree', r.stderr)
        self.assertTrue(os.path.isdir(acme('mv', 'a', 'b')))
        crfs('mv', '/mv/a', '/mv/z')  # a directory moves with its contents
        self.assertTrue(os.path.isfile(acme('mv', 'z', 'b', 'uno')))

    def test_exchange_and_rotation_are_atomic_exchanges(self):
        # exch A B swaps two names (RENAME_EXCHANGE); exch A B C rotates three (two exchanges, no
        # temporary names), also with a directory moving between parents.
        crfs('mkdir', '/ex')
        crfs('mkdir', '/ex/d1')
        src = W().path('exsrc')
        for name in ('a', 'b', 'c'):
            with open(src, 'w') as f:
                f.write(name)
            crfs('put', src, f'/ex/{name}')
        ino = {n: os.lstat(acme('ex', n)).st_ino for n in ('a', 'b', 'c')}
        crfs('exch', '/ex/a', '/ex/b')
        self.assertEqual((os.lstat(acme('ex', 'a')).st_ino, os.lstat(acme('ex', 'b')).st_ino), (ino['b'], ino['a']))
        crfs('exch', '/ex/a', '/ex/b', '/ex/c')  # a <- b's (the old a), b <- c's, c <- a's (the old b)
        self.assertEqual([os.lstat(acme('ex', n)).st_ino for n in ('a', 'b', 'c')], [ino['a'], ino['c'], ino['b']])
        for n, text in (('a', 'a'), ('b', 'c'), ('c', 'b')):
            with open(acme('ex', n)) as f:
                self.assertEqual(f.read(), text)
        # A directory and two files rotating across directories.
        d1 = os.lstat(acme('ex', 'd1')).st_ino
        crfs('mkdir', '/ex/sub')
        crfs('put', src, '/ex/sub/f')
        f_ino = os.lstat(acme('ex', 'sub', 'f')).st_ino
        crfs('exch', '/ex/d1', '/ex/sub/f', '/ex/a')
        self.assertEqual(os.lstat(acme('ex', 'd1')).st_ino, f_ino)
        self.assertEqual(os.lstat(acme('ex', 'sub', 'f')).st_ino, ino['a'])
        self.assertEqual(os.lstat(acme('ex', 'a')).st_ino, d1)
        self.assertTrue(os.path.isdir(acme('ex', 'a')))
        r = crfs('exch', '/ex/a', '/ex/missing', check=False)
        self.assertIn('ENOENT', r.stderr)
        crfs('rm', '-r', '/ex')

    def test_links_chmod_and_xattrs(self):
        crfs('mkdir', '/ln')
        src = W().path('lnsrc')
        with open(src, 'wb') as f:
            f.write(b'linked')
        crfs('put', src, '/ln/orig')
        crfs('ln', '/ln/orig', '/ln/hard')
        self.assertEqual(os.lstat(acme('ln', 'orig')).st_ino, os.lstat(acme('ln', 'hard')).st_ino)
        self.assertEqual(os.lstat(acme('ln', 'orig')).st_nlink, 2)
        r = crfs('ln', '/ln', '/ln2', check=False)
        self.assertIn('EPERM', r.stderr)
        crfs('ln', '-s', '../etc/passwd', '/ln/sym')
        self.assertEqual(os.readlink(acme('ln', 'sym')), '../etc/passwd')
        self.assertEqual(os.lstat(acme('ln', 'sym')).st_uid, 100000)
        crfs('chmod', '600', '/ln/orig')
        self.assertEqual(stat.S_IMODE(os.lstat(acme('ln', 'orig')).st_mode), 0o600)
        crfs('setfattr', '-n', 'user.color', '-v', 'green', '/ln/orig')
        self.assertEqual(os.getxattr(acme('ln', 'orig'), 'user.color'), b'green')
        crfs('setfattr', '-x', 'user.color', '/ln/orig')
        self.assertNotIn('user.color', os.listxattr(acme('ln', 'orig')))
        r = crfs('setfattr', '-n', 'trusted.x', '-v', '1', '/ln/orig', check=False)
        self.assertIn('EPERM', r.stderr)
        crfs('sync')

    def test_import_copies_a_tree_in_batches(self):
        local = W().path('import-src')
        for d in range(12):
            os.makedirs(os.path.join(local, f'dir{d}', 'sub'))
            for f in range(100):
                with open(os.path.join(local, f'dir{d}', f'file{f}'), 'w') as fh:
                    fh.write(f'{d}/{f}\n' * (f + 1))
            os.symlink(f'../file{d}', os.path.join(local, f'dir{d}', 'sub', 'link'))
        with open(os.path.join(local, 'big'), 'wb') as fh:
            fh.write(os.urandom(5 * 1024 * 1024))  # past the inline limit: created, then put
        os.chmod(os.path.join(local, 'dir3', 'file7'), 0o600)
        r = crfs('--stats', 'import', local, '/imported')
        self.assertIn('imported 1238 objects', r.stdout)
        transactions = int(r.stdout.split()[-2])
        self.assertGreaterEqual(transactions, 3)  # the top, more than one batch of ~1000, the big file
        diff = subprocess.run(['diff', '-r', '--no-dereference', local, acme('imported')], capture_output=True,
                              text=True)
        self.assertEqual(diff.returncode, 0, diff.stdout + diff.stderr)
        self.assertEqual(stat.S_IMODE(os.lstat(acme('imported', 'dir3', 'file7')).st_mode), 0o600)
        self.assertEqual(os.lstat(acme('imported', 'dir3', 'file7')).st_mtime_ns,
                         os.lstat(os.path.join(local, 'dir3', 'file7')).st_mtime_ns)
        crfs('rm', '-r', '/imported')
        self.assertFalse(os.path.lexists(acme('imported')))

    def test_a_reply_that_would_not_fit_the_sessions_frames_is_refused_before_anything_is_applied(self):
        """protocol.md §3/§6.2: a TRANS_REPLY never exceeds the session's max_payload. A directory of
        4,200 files is one batch of the import: 8,400 map entries, past the 8,191 a 128 KiB session's
        reply holds -- E2BIG, and nothing of it applied; on a 1 MiB session the same import works."""
        local = W().path('wide-src')
        os.makedirs(local)
        for i in range(4200):
            with open(os.path.join(local, f'f{i:04d}'), 'w') as fh:
                fh.write('x')
        try:
            r = crfs('--max-payload', '131072', 'import', local, '/wide', check=False)
            self.assertNotEqual(r.returncode, 0, r.stdout)
            self.assertIn('E2BIG', r.stderr)
            self.assertIn('can map (8191', r.stderr)
            self.assertEqual(os.listdir(acme('wide')), [], 'the refused batch left files behind')
            crfs('rm', '-r', '/wide')
            crfs('import', local, '/wide')
            self.assertEqual(len(os.listdir(acme('wide'))), 4200)
            self.assertNotEqual(crfs('--max-payload', '4096', 'ping', check=False).returncode, 0)
        finally:
            crfs('rm', '-r', '/wide', check=False)
            shutil.rmtree(local)

    def test_names_taken_by_a_nested_snapshot_are_not_free(self):
        # acme/snap is a snapshot (another subvolume): hidden from the tenant, but its name is
        # taken. Creating or renaming onto it is refused up front, nothing changed.
        self.assertTrue(os.path.isdir(acme('snap')))
        r = crfs('mkdir', '/snap', check=False)
        self.assertIn('EEXIST', r.stderr)
        self.assertIn('not the tenant', r.stderr)
        crfs('mkdir', '/to-move')
        r = crfs('mv', '/to-move', '/snap', check=False)
        self.assertIn('EEXIST', r.stderr)
        self.assertTrue(os.path.isdir(acme('to-move')))
        crfs('rm', '/to-move')
        self.assertNotIn('partly applied', W().logtext())

    def test_a_directory_holding_a_nested_subvolume_is_not_removed(self):
        # The tenant is not shown a nested subvolume, and must not be able to remove it with
        # the directory that holds it: rm -r is refused up front, everything stays.
        os.makedirs(acme('holds', 'more'))
        base.give(acme('holds'))
        run('btrfs', 'subvolume', 'create', acme('holds', 'admins'))
        with open(acme('holds', 'admins', 'keep'), 'w') as f:
            f.write('the admin\'s\n')
        try:
            r = crfs('rm', '-r', '/holds', check=False)
            self.assertIn('ENOTEMPTY', r.stderr)
            self.assertIn('not the tenant', r.stderr)
            self.assertEqual(open(acme('holds', 'admins', 'keep')).read(), 'the admin\'s\n')
            self.assertTrue(os.path.isdir(acme('holds', 'more')))
        finally:
            run('btrfs', 'subvolume', 'delete', acme('holds', 'admins'))
        crfs('rm', '-r', '/holds')
        self.assertFalse(os.path.exists(acme('holds')))

    def test_refusals_quote_names_escaped(self):
        # A refusal names the client's name; a name of ESC, newline and invalid UTF-8 comes
        # back escaped as the decoder prints it: the detail is ASCII on one line (protocol.md §4).
        hostile = b'evil\x1b[2J\n\xff\xc3('
        snap = os.path.join(os.fsencode(acme()), hostile)
        subprocess.run(['btrfs', 'subvolume', 'create', snap], check=True, capture_output=True)  # a name not free
        try:
            crt, key = W().cert('acme', 'alice')
            r = subprocess.run([base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'),
                                '--cert', crt, '--key', key, 'mkdir', b'/' + hostile], capture_output=True)
            self.assertIn(b'EEXIST', r.stderr)
            detail = r.stderr.split(b'EEXIST', 1)[1].rstrip(b'\n')
            self.assertIn(b'evil\\x1b[2J\\x0a\\xff\\xc3(', detail)
            self.assertTrue(all(0x20 <= c < 0x7f for c in detail), detail)
        finally:
            subprocess.run(['btrfs', 'subvolume', 'delete', snap], check=True, capture_output=True)

    def test_seed_scenario(self):
        # mkdir dir; creat dir/file; unlink dir/file; rmdir dir - as locally.
        src = W().path('empty')
        open(src, 'wb').close()
        crfs('mkdir', '/seed')
        crfs('put', src, '/seed/file')
        crfs('rm', '/seed/file')
        crfs('rm', '/seed')
        self.assertFalse(os.path.lexists(acme('seed')))
        self.assertEqual([n for n in os.listdir(acme()) if n.startswith('.nfs')], [])


class CommandLine(unittest.TestCase):
    """The crfs command as a new user tries it."""

    def crfs(self, *args, input=None):
        crt, key = W().cert('acme', 'alice')
        return subprocess.run([base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'), '--cert',
                               crt, '--key', key, *args], input=input, capture_output=True)

    def test_an_unknown_command_is_named_without_the_whole_usage(self):
        r = self.crfs('lsit', '/')
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"unknown command 'lsit'", r.stderr)
        self.assertNotIn(b'usage:', r.stderr)
        r = self.crfs('mv', '/a')
        self.assertEqual(r.returncode, 2)
        self.assertIn(b'mv: wrong number of arguments', r.stderr)

    def test_put_from_stdin_get_to_stdout_readlink_and_the_local_mode(self):
        try:
            self.assertEqual(self.crfs('put', '-', '/cli-in', input=b'from stdin\n').returncode, 0)
            r = self.crfs('get', '/cli-in', '-')
            self.assertEqual((r.returncode, r.stdout), (0, b'from stdin\n'))
            local = W().path('cli-secret')
            with open(local, 'w') as f:
                f.write('secret\n')
            os.chmod(local, 0o600)
            self.assertEqual(self.crfs('put', local, '/cli-secret').returncode, 0)
            self.assertEqual(os.stat(acme('cli-secret')).st_mode & 0o7777, 0o600)
            self.assertEqual(self.crfs('ln', '-s', 'cli-in', '/cli-link').returncode, 0)
            r = self.crfs('readlink', '/cli-link')
            self.assertEqual((r.returncode, r.stdout), (0, b'cli-in\n'))
        finally:
            for n in ('cli-in', 'cli-secret', 'cli-link'):
                if os.path.lexists(acme(n)):
                    os.unlink(acme(n))


class Shell:
    """A `crfs shell` session kept open across other clients' actions. Each command is
    followed by a `ping`, whose reply line marks the end of the command's output."""

    def __init__(self, client='alice'):
        crt, key = W().cert('acme', client)
        self.errfile = open(W().path(f'shell-{client}.err'), 'w+')
        self.p = subprocess.Popen([base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'),
                                   '--cert', crt, '--key', key, 'shell'], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.errfile, text=True)

    def __call__(self, line):
        """Runs `line`; returns (its standard output, the error lines it added)."""
        errs_before = self.errors()
        self.p.stdin.write(line + '\nping\n')
        self.p.stdin.flush()
        out = ''
        while True:
            chunk = self.p.stdout.readline()
            if not chunk:
                raise AssertionError(f'crfs shell ended: {self.errors()}')
            if 'crfsd at ' in chunk:
                out += chunk[:chunk.index('crfsd at ')]
                return out, self.errors()[len(errs_before):]
            out += chunk

    def errors(self):
        self.errfile.seek(0)
        return self.errfile.read()

    def close(self):
        """Ends the session (standard input closed); returns the exit status."""
        if self.p.poll() is None:
            self.p.stdin.close()
        rc = self.p.wait(timeout=30)
        self.p.stdout.close()
        self.errfile.close()
        return rc


def objectid(path):
    out = crfs('stat', path).stdout
    return int(out.split('Objectid: ')[1].split()[0])


def crfsd_deleted_files():
    """What crfsd's fds keep that has no name any more (an open object whose last name went)."""
    fds = f'/proc/{W().crfsd.pid}/fd'
    targets = []
    for fd in os.listdir(fds):
        try:
            targets.append(os.readlink(os.path.join(fds, fd)))
        except OSError:
            pass
    return [t for t in targets if t.endswith(' (deleted)')]


def crfsd_deleted_files_after_a_while():
    """crfsd_deleted_files() once a session that ended has been cleaned up (up to 5 s)."""
    for _ in range(50):
        left = crfsd_deleted_files()
        if not left:
            break
        time.sleep(0.1)
    return left


class OpenFiles(unittest.TestCase):
    """OPEN/CLOSE: a file unlinked while a session holds it open stays readable and writable by
    objectid for that session (and no other), its directory can go, and there are no .nfs files;
    CLOSE or the session's end destroys it (crfsd keeps no fd of it)."""

    def put(self, path, data):
        src = W().path('open-src')
        with open(src, 'wb') as f:
            f.write(data)
        crfs('put', src, path)

    def test_unlinked_while_open_stays_for_its_holder(self):
        crfs('mkdir', '/held')
        self.put('/held/file', b'hello world\n')
        n = objectid('/held/file')
        sh = Shell()
        try:
            out, err = sh('open /held/file rw')
            self.assertEqual((out, err), (f'/held/file: objectid {n} open\n', ''))
            # Another session removes the name and the directory: as on a local file system.
            crfs('rm', '/held/file')
            crfs('rm', '/held')
            self.assertFalse(os.path.lexists(acme('held')))
            self.assertEqual([x for x in os.listdir(acme()) if x.startswith('.nfs')], [])
            self.assertEqual(len(crfsd_deleted_files()), 1)
            # ... which cannot reach it any more,
            r = crfs('cat', f'@{n}', check=False)
            self.assertIn('ENOENT', r.stderr)
            # ... while the holder reads, writes, grows and stats it by objectid.
            self.assertEqual(sh(f'cat @{n}'), ('hello world\n', ''))
            self.assertEqual(sh(f'write @{n} 6 there'), ('', ''))
            self.assertEqual(sh(f'write @{n} 12 and more'), ('', ''))
            self.assertEqual(sh(f'cat @{n}'), ('hello there\nand more', ''))
            out, err = sh(f'stat @{n}')
            self.assertIn('Links: 0', out)
            self.assertIn('Size: 20', out)
            # CLOSE: gone for good, and crfsd keeps nothing.
            self.assertEqual(sh(f'close @{n}'), ('', ''))
            self.assertEqual(crfsd_deleted_files(), [])
            out, err = sh(f'cat @{n}')
            self.assertIn('ENOENT', err)
            out, err = sh(f'close @{n}')
            self.assertIn('EBADF', err)
        finally:
            self.assertEqual(sh.close(), 1)  # the two refused commands

    def test_session_end_closes_and_read_only_holders_do_not_write(self):
        self.put('/ro-held', b'keep\n')
        n = objectid('/ro-held')
        sh = Shell()
        try:
            self.assertEqual(sh('open /ro-held r')[1], '')
            crfs('rm', '/ro-held')
            out, err = sh(f'write @{n} 0 x')
            self.assertIn('EBADF', err)
            self.assertEqual(sh(f'cat @{n}'), ('keep\n', ''))
            # Without a name nobody gains access (the path can no longer be checked).
            out, err = sh(f'open @{n} rw')
            self.assertIn('EBADF', err)
            self.assertEqual(sh(f'open @{n} r'), (f'@{n}: objectid {n} open\n', ''))
            self.assertEqual(sh(f'cat @{n}'), ('keep\n', ''))
            self.assertEqual(len(crfsd_deleted_files()), 1)
        finally:
            self.assertEqual(sh.close(), 1)
        # The session ended without CLOSE: crfsd let go of the object.
        self.assertEqual(crfsd_deleted_files_after_a_while(), [])

    def test_write_only_holders_see_no_contents(self):
        self.put('/wo-held', b'secret\n')
        crfs('setfattr', '-n', 'user.tag', '-v', 'x', '/wo-held')
        n = objectid('/wo-held')
        sh = Shell()
        try:
            self.assertEqual(sh('open /wo-held w')[1], '')
            self.assertIn('Xattr: user.tag', sh(f'stat @{n}')[0])  # named: as any object of the tenant
            crfs('rm', '/wo-held')
            out, err = sh(f'stat @{n}')
            self.assertIn('Links: 0', out)
            self.assertNotIn('Xattr: user.tag', out)  # nameless: only what write access allows
            self.assertIn('Xattrs: not shown: EACCES', out)
            out, err = sh(f'cat @{n}')
            self.assertIn('EBADF', err)
            self.assertEqual(sh(f'write @{n} 0 S'), ('', ''))
        finally:
            self.assertEqual(sh.close(), 1)
        self.assertEqual(crfsd_deleted_files_after_a_while(), [])

    def test_seed_scenario_with_the_directory_open(self):
        # mkdir dir; open dir; creat dir/file; unlink dir/file; rmdir dir - in one session.
        sh = Shell()
        try:
            crfs('mkdir', '/seed-open')
            n = objectid('/seed-open')
            self.assertEqual(sh('open /seed-open')[1], '')
            self.assertEqual(sh('put /dev/null /seed-open/file')[1], '')
            self.assertEqual(sh('rm /seed-open/file')[1], '')
            self.assertEqual(sh('rm /seed-open')[1], '')
            self.assertFalse(os.path.lexists(acme('seed-open')))
            out, err = sh(f'stat @{n}')
            self.assertIn('Links: 0', out)
            out, err = sh(f'open @{n} w')
            self.assertIn('no new access', err)
            out, err = sh(f'mkdir /x')  # still a working session
            self.assertEqual(err, '')
            crfs('rm', '/x')
        finally:
            self.assertEqual(sh.close(), 1)

    def test_open_is_checked_as_the_user_and_bounded(self):
        self.put('/private', b'root only\n')
        os.chmod(acme('private'), 0o600)
        carol = Shell('carol')
        try:
            out, err = carol('open /private r')
            self.assertIn('EACCES', err)
            out, err = carol('open / w')
            self.assertIn('EISDIR', err)
            out, err = carol('open /no-such-file')
            self.assertIn('ENOENT', err)
            # A world-writable file in a directory she cannot search: out of reach, as for open(2).
            os.makedirs(acme('vault'), exist_ok=True)
            os.chown(acme('vault'), 100000, 100000)
            os.chmod(acme('vault'), 0o700)
            with open(acme('vault', 'open-file'), 'w') as f:
                f.write('x')
            os.chmod(acme('vault', 'open-file'), 0o666)
            crfs('ls', '/vault')  # the tenant's root shows the tenant the objectid
            n = objectid('/vault/open-file')
            out, err = carol(f'open @{n} rw')
            self.assertIn('EACCES', err)
            self.assertIn('search permission', err)
        finally:
            self.assertEqual(carol.close(), 1)
        # At most limits.max_open_per_session (64 in this fixture) objects held per session.
        local = W().path('many')
        os.mkdir(local)
        for i in range(65):
            open(os.path.join(local, f'f{i}'), 'w').close()
        crfs('import', local, '/many')
        script = ''.join(f'open /many/f{i}\n' for i in range(65))
        crt, key = W().cert('acme', 'alice')
        r = subprocess.run([base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'), '--cert',
                            crt, '--key', key, 'shell'], input=script, capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout.count(' open\n'), 64)
        self.assertIn('EMFILE', r.stderr)
        self.assertIn('line 65 failed', r.stderr)
        crfs('rm', '-r', '/many')

    def test_unnamed_objects_are_bounded_per_tenant(self):
        # limits.max_unnamed_per_tenant is 3 in this fixture: an rm -r that would leave a fourth
        # held file without a name is refused whole; with three it goes through.
        crfs('mkdir', '/kept')
        for i in range(4):
            self.put(f'/kept/f{i}', b'%d' % i)
        ids = [objectid(f'/kept/f{i}') for i in range(4)]
        sh = Shell()
        try:
            for i in range(4):
                self.assertEqual(sh(f'open /kept/f{i}')[1], '')
            r = crfs('rm', '-r', '/kept', check=False)
            self.assertIn('EMFILE', r.stderr)
            self.assertEqual(sorted(os.listdir(acme('kept'))), ['f0', 'f1', 'f2', 'f3'])  # nothing changed
            self.assertEqual(crfsd_deleted_files(), [])  # and nothing kept
            self.assertEqual(sh(f'close @{ids[3]}')[1], '')
            crfs('rm', '-r', '/kept')
            self.assertFalse(os.path.lexists(acme('kept')))
            self.assertEqual(len(crfsd_deleted_files()), 3)
            self.assertEqual(sh(f'cat @{ids[2]}'), ('2', ''))
        finally:
            self.assertEqual(sh.close(), 0)
        self.assertEqual(crfsd_deleted_files_after_a_while(), [])


class Fairness(unittest.TestCase):
    """A tenant's transaction runs on that tenant's store worker: while it cannot finish (the file
    system is frozen under it), the tenant's next request waits its turn, and another tenant is
    answered at once."""

    def test_a_stuck_transaction_holds_its_tenant_only(self):
        crt, key = W().cert('acme', 'alice')
        cmd = [base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'), '--cert', crt,
               '--key', key]
        run('fsfreeze', '-f', W().mnt)
        mkdir = ls = None
        try:
            mkdir = subprocess.Popen(cmd + ['mkdir', '/made-while-frozen'], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            time.sleep(1)  # it reaches the worker and blocks there (journal, mkdirat)
            self.assertIsNone(mkdir.poll(), 'the transaction finished on a frozen file system')
            ls = subprocess.Popen(cmd + ['ls', '/'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            bcrt, bkey = W().cert('beta', 'bob')
            r = run(base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'), '--cert', bcrt,
                    '--key', bkey, 'ls', '/', timeout=10)  # another tenant: answered now, not after the thaw
            self.assertIn('secret.txt', r.stdout)
            time.sleep(0.5)
            self.assertIsNone(ls.poll(), "acme's next request did not wait for its transaction")
        finally:
            run('fsfreeze', '-u', W().mnt)
        self.assertEqual(mkdir.wait(timeout=30), 0, mkdir.stderr.read() if mkdir.stderr else '')
        self.assertEqual(ls.wait(timeout=30), 0)
        self.assertIn('made-while-frozen', ls.stdout.read())
        for p in (mkdir, ls):
            p.stdout.close()
            p.stderr.close()
        crfs('rm', '/made-while-frozen')


class UsersInsideATenant(unittest.TestCase):
    """A certificate mapped to a tenant user (crfsd.json: clients.carol = uid 1000) acts as that
    user: the kernel checks every call with her ids, and crfsd checks the whole transaction
    first, so that a refusal changes nothing."""

    def carol(self, *args, check=True):
        return crfs(*args, check=check, client='carol')

    def test_creates_as_her_user_where_she_may(self):
        os.mkdir(acme('carol-home'))
        os.chown(acme('carol-home'), 101000, 101000)
        self.carol('mkdir', '/carol-home/projects')
        src = W().path('carol.txt')
        with open(src, 'w') as f:
            f.write('mine\n')
        self.carol('put', src, '/carol-home/projects/notes.txt')
        for p in ('projects', 'projects/notes.txt'):
            st = os.lstat(acme('carol-home', p))
            self.assertEqual((st.st_uid, st.st_gid), (101000, 101000), p)
        self.carol('chmod', '700', '/carol-home/projects')
        self.carol('rm', '-r', '/carol-home/projects')
        self.assertEqual(os.listdir(acme('carol-home')), [])

    def test_reads_are_checked_as_her_user(self):
        src = W().path('private.txt')
        with open(src, 'w') as f:
            f.write('alice only\n')
        crfs('mkdir', '/alices')
        crfs('put', src, '/alices/private.txt')
        crfs('chmod', '600', '/alices/private.txt')
        r = self.carol('cat', '/alices/private.txt', check=False)
        self.assertIn('EACCES', r.stderr)
        self.assertNotIn('alice only', r.stdout)
        self.assertIn('private.txt', self.carol('ls', '/alices').stdout)  # 0755: she may list it
        crfs('chmod', '711', '/alices')
        r = self.carol('ls', '/alices', check=False)
        self.assertIn('EACCES', r.stderr)
        self.assertIn('Mode: 0600', self.carol('stat', '/alices/private.txt').stdout)  # search is enough for stat
        crfs('chmod', '700', '/alices')
        r = self.carol('stat', '/alices/private.txt', check=False)
        self.assertIn('EACCES', r.stderr)
        crfs('rm', '-r', '/alices')

    def test_refused_where_she_may_not_and_nothing_changes(self):
        # The tenant root's directory (0755, uid 100000): no entries for carol.
        r = self.carol('mkdir', '/not-carols', check=False)
        self.assertIn('EACCES', r.stderr)
        self.assertFalse(os.path.lexists(acme('not-carols')))
        # Someone else's file: no chmod, no writes, no xattrs.
        crfs('mkdir', '/shared')
        os.chmod(acme('shared'), 0o777)
        src = W().path('alice.txt')
        with open(src, 'w') as f:
            f.write('alice\n')
        crfs('put', src, '/shared/alice.txt')
        for args, errname in ((('chmod', '666', '/shared/alice.txt'), 'EPERM'),
                              (('put', src, '/shared/alice.txt'), 'EACCES'),
                              (('setfattr', '-n', 'user.x', '-v', '1', '/shared/alice.txt'), 'EACCES')):
            r = self.carol(*args, check=False)
            self.assertIn(errname, r.stderr, args)
        self.assertEqual(stat.S_IMODE(os.lstat(acme('shared', 'alice.txt')).st_mode), 0o644)
        # rm -r of a tree with one directory she cannot write: refused whole.
        self.carol('mkdir', '/shared/tree')
        self.carol('mkdir', '/shared/tree/mine')
        self.carol('put', src, '/shared/tree/mine/f')
        os.mkdir(acme('shared', 'tree', 'roots'))
        open(acme('shared', 'tree', 'roots', 'x'), 'w').close()
        r = self.carol('rm', '-r', '/shared/tree', check=False)
        self.assertIn('EACCES', r.stderr)
        self.assertTrue(os.path.exists(acme('shared', 'tree', 'mine', 'f')))  # nothing was removed
        self.assertTrue(os.path.exists(acme('shared', 'tree', 'roots', 'x')))
        # A world-writable directory inside one she cannot search: out of reach.
        os.makedirs(acme('locked', 'open'))
        os.chown(acme('locked'), 100000, 100000)
        os.chmod(acme('locked'), 0o700)
        os.chmod(acme('locked', 'open'), 0o777)
        r = self.carol('mkdir', '/locked/open/x', check=False)
        self.assertIn('EACCES', r.stderr)
        self.assertEqual(os.listdir(acme('locked', 'open')), [])
        # In a sticky directory she cannot remove alice's file, only her own.
        os.chmod(acme('shared'), 0o1777)
        r = self.carol('rm', '/shared/alice.txt', check=False)
        self.assertIn('EPERM', r.stderr)
        self.assertTrue(os.path.exists(acme('shared', 'alice.txt')))
        self.carol('put', src, '/shared/carols.txt')
        self.carol('rm', '/shared/carols.txt')
        self.assertFalse(os.path.exists(acme('shared', 'carols.txt')))


class TenantRootIsRootOnlyInsideItsMap(unittest.TestCase):
    """The id map works like a user namespace (SECURITY.md §3.5): the tenant's root (alice) has
    root's powers over objects whose owner uid and gid are both in acme's map, and over anything
    else (owned by host root, by beta's range, half-mapped) only what the mode bits give the
    ordinary user 100000:100000 with no supplementary groups. Each refusal changes nothing."""

    @classmethod
    def setUpClass(cls):
        d = acme('adm')
        os.makedirs(os.path.join(d, 'private'))
        os.chmod(os.path.join(d, 'private'), 0o700)
        for name, mode, owner, data in (('tool', 0o755, (0, 0), b'#!/bin/sh\n'),
                                        ('secret', 0o600, (0, 0), b'host secret\n'),
                                        ('open', 0o666, (0, 0), b'anyone\n'),
                                        ('group', 0o660, (0, 0), b'root group\n')):
            with open(os.path.join(d, name), 'wb') as f:
                f.write(data)
            os.chmod(os.path.join(d, name), mode)
        for name, owner in (('beta-owned', (200000, 200000)), ('half-mapped', (100000, 0)),
                            ('carols', (101000, 101000))):
            with open(acme(name), 'wb') as f:
                f.write(b'original\n')
            os.chown(acme(name), *owner)
            os.chmod(acme(name), 0o644 if name != 'carols' else 0o600)
        os.setxattr(acme('adm', 'secret'), 'user.tag', b'x')
        cls.src = W().path('overwrite.txt')
        with open(cls.src, 'w') as f:
            f.write('overwritten\n')

    def snapshot(self):
        out = {}
        for p in ('adm', 'adm/tool', 'adm/secret', 'adm/open', 'adm/group', 'adm/private', 'beta-owned',
                  'half-mapped'):
            st = os.lstat(acme(p))
            data = W().read(acme(p)) if stat.S_ISREG(st.st_mode) else None
            out[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, data,
                      sorted(os.listdir(acme(p))) if stat.S_ISDIR(st.st_mode) else None,
                      os.listxattr(acme(p)))
        return out

    def refused(self, errname, *args):
        before = self.snapshot()
        r = crfs(*args, check=False)
        self.assertNotEqual(r.returncode, 0, args)
        self.assertIn(errname, r.stderr, args)
        self.assertEqual(self.snapshot(), before, f'{args} changed something')

    def test_no_power_over_objects_owned_outside_the_map(self):
        self.refused('EPERM', 'chmod', '4755', '/adm/tool')  # no setuid-root binary made by a tenant
        # Plain mode changes too (the shipped policy allows them: only the map refuses these).
        self.refused('EPERM', 'chmod', '0777', '/adm/tool')
        self.refused('EPERM', 'chmod', '0600', '/beta-owned')
        self.refused('EPERM', 'chown', '0:0', '/beta-owned')
        self.refused('EPERM', 'chown', '0', '/adm/tool')
        self.refused('EPERM', 'touch', '/beta-owned', '1000')
        self.refused('EACCES', 'put', self.src, '/beta-owned')
        self.refused('EACCES', 'truncate', '0', '/beta-owned')
        self.refused('EACCES', 'setfattr', '-n', 'user.x', '-v', '1', '/adm/tool')
        self.refused('EPERM', 'ln', '/beta-owned', '/beta-link')  # protected_hardlinks: not hers to link
        self.refused('EACCES', 'mkdir', '/adm/x')
        self.refused('EACCES', 'rm', '/adm/tool')
        self.refused('EACCES', 'mv', '/adm/tool', '/tool')
        self.refused('EACCES', 'rm', '-r', '/adm')
        # The group of host root is not hers either (crfsd keeps no supplementary groups).
        self.refused('EACCES', 'truncate', '0', '/adm/group')

    def test_reads_need_the_mode_bits_too(self):
        r = crfs('cat', '/adm/secret', check=False)
        self.assertIn('EACCES', r.stderr)
        self.assertNotIn('host secret', r.stdout)
        out = crfs('stat', '/adm/secret').stdout  # the inode is visible (search permission on adm)
        self.assertIn('Mode: 0600', out)
        self.assertIn('Xattrs: not shown: EACCES', out)  # its contents are not
        self.assertNotIn('user.tag', out)
        for args in (('ls', '/adm/private'), ('cat', '/adm/group'), ('find', '/adm/private')):
            r = crfs(*args, check=False)
            self.assertIn('EACCES', r.stderr, args)
        self.assertEqual(crfs('cat', '/adm/open').stdout, 'anyone\n')
        self.assertIn('tool', crfs('ls', '/adm').stdout)

    def test_what_the_modes_allow_and_what_is_hers(self):
        before = os.lstat(acme('adm', 'open'))
        crfs('put', self.src, '/adm/open')  # world-writable: anyone may write
        self.assertEqual(W().read(acme('adm', 'open')), b'overwritten\n')
        self.assertEqual((os.lstat(acme('adm', 'open')).st_uid, stat.S_IMODE(os.lstat(acme('adm', 'open')).st_mode)),
                         (before.st_uid, 0o666))
        # Removing an entry is the directory's business: her root directory, anyone's entry.
        shutil_copy = acme('beta-copy')
        with open(shutil_copy, 'wb') as f:
            f.write(b'x')
        os.chown(shutil_copy, 200000, 200000)
        crfs('rm', '/beta-copy')
        self.assertFalse(os.path.lexists(shutil_copy))
        # Half-mapped (uid hers, gid host root's): she is its owner, not root over it.
        crfs('chmod', '600', '/half-mapped')
        self.assertEqual(stat.S_IMODE(os.lstat(acme('half-mapped')).st_mode), 0o600)
        self.refused('EPERM', 'chown', '5:5', '/half-mapped')
        crfs('chown', ':0', '/half-mapped')  # her own group: allowed to the owner
        self.assertEqual(os.lstat(acme('half-mapped')).st_gid, 100000)
        # Over objects inside the map she is root: another user's 0600 file.
        self.assertEqual(crfs('cat', '/carols').stdout, 'original\n')
        crfs('chmod', '0700', '/carols')  # (not setuid: the shipped policy refuses that to anyone)
        crfs('chown', '7:7', '/carols')
        crfs('truncate', '3', '/carols')
        crfs('touch', '/carols', '1000')
        st = os.lstat(acme('carols'))
        self.assertEqual((st.st_uid, st.st_gid, st.st_size, st.st_mtime), (100007, 100007, 3, 1000))


class Protocol(unittest.TestCase):
    """Transactions as frames: retransmission, staleness, durability."""

    def test_retransmission_returns_the_original_answer(self):
        if os.path.lexists(acme('some-dir')):
            os.rmdir(acme('some-dir'))
        s, gen = hello_session()
        t = example_mkdir(gen, 42)
        s.sendall(t)
        _, info, typ, reply = recv_reply(s)
        self.assertEqual((typ, info), (TRANS_REPLY, 0), reply)
        _, info, typ, text = recv_reply(s)
        self.assertEqual((typ, info), (FINAL_REPLY, 0), text)
        new_gen, flags = struct.unpack_from('<QI', reply, 0)
        self.assertGreater(new_gen, gen)
        self.assertEqual(flags & 1, 1)  # APPLIED
        # Every FINAL_REPLY says the generation it was answered at: here, the commit's.
        self.assertEqual(struct.unpack_from('<Q', text, 0)[0], new_gen)
        ino = os.lstat(acme('some-dir')).st_ino
        # The same transaction again (a lost reply): the same answer, not applied twice.
        s.sendall(t)
        _, info, typ, reply2 = recv_reply(s)
        self.assertEqual((typ, info, reply2), (TRANS_REPLY, 0, reply))
        _, info, typ, _ = recv_reply(s)
        self.assertEqual((typ, info), (FINAL_REPLY, 0))
        self.assertEqual(os.lstat(acme('some-dir')).st_ino, ino)
        # A new transaction from the same (now stale) view: ESTALE, nothing changed.
        s.sendall(example_mkdir(gen, 43))
        _, info, typ, text = recv_reply(s)
        self.assertEqual((typ, info), (FINAL_REPLY, ESTALE), text)
        # SYNC: DURABLE names a generation at least the transaction's.
        s.sendall(frame(SYNC, b'', 44))
        _, info, typ, payload = recv_reply(s)
        self.assertEqual(typ, DURABLE)
        self.assertGreaterEqual(struct.unpack('<Q', payload)[0], new_gen)
        s.close()
        os.rmdir(acme('some-dir'))

    def test_durability_is_reported_in_the_reply(self):
        # At the default durability ("power") a transaction's journal record is on
        # stable storage before it is applied: applied is durable. (At "crash" an
        # unsolicited DURABLE follows: reliability_test.py:Durability.)
        if os.path.lexists(acme('some-dir')):
            os.rmdir(acme('some-dir'))
        s, gen = hello_session()
        s.sendall(example_mkdir(gen, 70))
        _, info, typ, reply = recv_frame(s)
        self.assertEqual((typ, info), (TRANS_REPLY, 0), reply)
        new_gen, flags = struct.unpack_from('<QI', reply, 0)
        self.assertEqual(flags, 3)  # APPLIED | DURABLE
        self.assertEqual(recv_frame(s)[2], FINAL_REPLY)
        s.close()
        os.rmdir(acme('some-dir'))

    def test_a_base_from_another_epoch_or_the_future_is_stale(self):
        s, gen = hello_session()
        for i, base_gen in enumerate((7, gen + 1000, 0)):
            s.sendall(example_mkdir(base_gen, 50 + i))
            _, info, typ, text = recv_reply(s)
            self.assertEqual((typ, info), (FINAL_REPLY, ESTALE), text)
        self.assertFalse(os.path.lexists(acme('some-dir')))
        s.close()


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
