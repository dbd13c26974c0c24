#!/usr/bin/env python3
"""End-to-end tests of the policy (docs/policy.md): real crfsd, real TLS, real btrfs.

The fixture is crfsd_test's; its crfsd.json names a copy of the shipped
policy (policy/examples/default.json) in the fixture directory. Each test
writes the policy it needs there and reloads crfsd with SIGHUP, as an admin
would, waits for the log line that names the new policy's SHA-256, and puts
the shipped policy back afterwards. Refusals are checked twice: the client's
error (errno and rule id) and the btrfs below crfsd (nothing changed). Needs
root.

usage: policy_test.py BUILD_DIR SOURCE_DIR [unittest args]
"""
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crfsd_test as base  # noqa: E402  (parses BUILD_DIR SOURCE_DIR)
from crfsd_test import CRFSCTL, CRFSD, SRC, run  # noqa: E402

DEFAULT = os.path.join(SRC, 'policy', 'examples', 'default.json')


def setUpModule():
    base.setUpModule()


def tearDownModule():
    base.tearDownModule()


def W():
    return base.W


def acme(*p):
    return os.path.join(W().mnt, 'tenants', 'acme', *p)


def crfs(*args, client='alice', check=True, stdin=None):
    crt, key = W().cert('acme', client)
    r = subprocess.run([base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'), '--cert', crt,
                        '--key', key, *args], capture_output=True, text=True, input=stdin)
    if check and r.returncode != 0:
        raise AssertionError(f'crfs {" ".join(args)}: exit {r.returncode}: {r.stderr}')
    return r


def load(text):
    """Writes `text` as the policy and reloads crfsd; returns once crfsd says so."""
    with open(W().path('policy.json.new'), 'w') as f:
        f.write(text)
    os.rename(W().path('policy.json.new'), W().path('policy.json'))  # an admin's atomic replace
    sha = hashlib.sha256(text.encode()).hexdigest()
    before = len(W().logtext())
    W().crfsd.send_signal(signal.SIGHUP)
    for _ in range(200):
        new = W().logtext()[before:]
        if f'-> {sha}' in new or f'unchanged (sha256 {sha})' in new:
            return new
        if 'reload refused' in new:
            return new
        time.sleep(0.025)
    raise AssertionError('crfsd did not reload the policy: ' + W().logtext()[before:])


def policy(rules, limits=None, tenants=None):
    doc = {'version': 1, 'rules': rules}
    if limits:
        doc['limits'] = limits
    if tenants:
        doc['tenants'] = tenants
    return json.dumps(doc, indent=2) + '\n'


ALLOW_REST = {'id': 'allow-the-rest', 'effect': 'allow'}


class PolicyCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='crfs-policy.')

    def tearDown(self):
        with open(DEFAULT) as f:
            log = load(f.read())
        self.assertNotIn('reload refused', log)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def local(self, name, data=b'x', mode=0o644):
        p = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb') as f:
            f.write(data)
        os.chmod(p, mode)
        return p

    def tenant_file(self, rel, data=b'data\n', mode=0o644):
        p = acme(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb') as f:
            f.write(data)
        os.chmod(p, mode)
        os.chown(p, 100000, 100000)
        os.chown(os.path.dirname(p), 100000, 100000)
        return p


class ShippedPolicy(PolicyCase):
    def test_setuid_is_refused_with_eperm_naming_the_rule(self):
        p = self.tenant_file('pol/tool', b'#!/bin/sh\n', 0o755)
        r = crfs('chmod', '4755', '/pol/tool', check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('EPERM', r.stderr)
        self.assertIn('no-setuid', r.stderr)
        self.assertIn('setuid files are not allowed', r.stderr)  # the rule's reason
        self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o755)
        self.assertIn('transaction refused', W().logtext())
        # Setgid on a directory stays allowed (group inheritance); on a file it is not.
        os.makedirs(acme('pol', 'team'), exist_ok=True)
        os.chown(acme('pol', 'team'), 100000, 100000)
        crfs('chmod', '2775', '/pol/team')
        self.assertEqual(stat.S_IMODE(os.stat(acme('pol', 'team')).st_mode), 0o2775)
        r = crfs('chmod', '2755', '/pol/tool', check=False)
        self.assertIn('no-setgid-files', r.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o755)

    def test_a_denied_create_denies_the_whole_transaction(self):
        # One import, one transaction: three plain files and one setuid file.
        src = os.path.join(self.tmp, 'tree')
        for i in range(3):
            self.local(f'tree/sub/f{i}')
        self.local('tree/sub/zz-setuid', b'x', 0o4755)
        r = crfs('import', src, '/imported', check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn('no-setuid', r.stderr)
        # (The top directory is its own transaction, before the rest.)
        self.assertEqual(os.listdir(acme('imported')), [], 'part of a refused transaction was applied')

    def test_a_world_writable_file_is_allowed_and_warned(self):
        self.tenant_file('pol/open.txt')
        before = len(W().logtext())
        crfs('chmod', '666', '/pol/open.txt')
        self.assertEqual(stat.S_IMODE(os.stat(acme('pol', 'open.txt')).st_mode), 0o666)
        self.assertIn('policy rule warn-world-writable-files warns: chmod /pol/open.txt', W().logtext()[before:])


class PathRules(PolicyCase):
    def test_reads_below_a_denied_subtree_are_refused(self):
        self.tenant_file('vault/secret.txt', b'top secret\n')
        self.tenant_file('public/readme', b'hello\n')
        load(policy([{'id': 'vault-closed', 'effect': 'deny', 'ops': ['read', 'readdir', 'open'],
                      'path': '/vault/**', 'reason': 'the vault is closed'}, ALLOW_REST]))
        r = crfs('cat', '/vault/secret.txt', check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('EACCES', r.stderr)
        self.assertIn('vault-closed', r.stderr)
        self.assertNotIn('top secret', r.stdout)
        r = crfs('ls', '/vault', check=False)
        self.assertIn('vault-closed', r.stderr)
        self.assertNotIn('secret.txt', r.stdout)
        # find walks the tree and leaves out what it may not list.
        # find walks the tree, shows /vault itself, and says it could not list it (as find(1)).
        r = crfs('find', '/', check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('/public/readme', r.stdout)
        self.assertRegex(r.stdout, r' /vault\n')
        self.assertNotIn('secret.txt', r.stdout)
        self.assertIn('crfs: /vault: server error: EACCES (13): denied by policy rule vault-closed', r.stderr)
        # stat of the directory itself is not a read of its contents.
        self.assertEqual(crfs('stat', '/vault').returncode, 0)
        self.assertEqual(crfs('cat', '/public/readme').stdout, 'hello\n')
        # The same decisions after a reload that lifts the rule: the session caches are dropped.
        load(policy([ALLOW_REST]))
        self.assertEqual(crfs('cat', '/vault/secret.txt').stdout, 'top secret\n')

    def test_writes_into_a_read_only_subtree(self):
        self.tenant_file('ro/keep.txt', b'keep\n')
        load(policy([{'id': 'ro-tree', 'effect': 'deny', 'errno': 'EROFS',
                      'ops': ['create', 'mkdir', 'write', 'truncate', 'unlink', 'rename', 'chmod', 'setxattr'],
                      'path': ['/ro', '/ro/**']}, ALLOW_REST]))
        src = self.local('new.txt', b'new\n')
        for args in (('put', src, '/ro/new.txt'), ('mkdir', '/ro/d'), ('rm', '/ro/keep.txt'), ('truncate', '0',
                     '/ro/keep.txt'), ('mv', '/ro/keep.txt', '/ro/moved.txt'), ('chmod', '600', '/ro/keep.txt'),
                     ('setfattr', '-n', 'user.x', '-v', '1', '/ro/keep.txt')):
            r = crfs(*args, check=False)
            self.assertIn('EROFS', r.stderr, args)
            self.assertIn('ro-tree', r.stderr, args)
        self.assertEqual(sorted(os.listdir(acme('ro'))), ['keep.txt'])
        with open(acme('ro', 'keep.txt'), 'rb') as f:
            self.assertEqual(f.read(), b'keep\n')
        self.assertEqual(stat.S_IMODE(os.stat(acme('ro', 'keep.txt')).st_mode), 0o644)
        # Outside it, the same operations work.
        crfs('put', src, '/elsewhere.txt')
        crfs('rm', '/elsewhere.txt')

    def test_renames_are_decided_on_both_ends(self):
        self.tenant_file('drafts/a.txt')
        os.makedirs(acme('releases'), exist_ok=True)
        os.chown(acme('releases'), 100000, 100000)
        load(policy([{'id': 'no-renames-into-releases', 'effect': 'deny', 'ops': ['rename', 'link'],
                      'path2': '/releases/**'}, ALLOW_REST]))
        for args in (('mv', '/drafts/a.txt', '/releases/a.txt'), ('ln', '/drafts/a.txt', '/releases/a.txt')):
            r = crfs(*args, check=False)
            self.assertIn('no-renames-into-releases', r.stderr, args)
        self.assertEqual(os.listdir(acme('releases')), [])
        self.assertTrue(os.path.exists(acme('drafts', 'a.txt')))
        crfs('mv', '/drafts/a.txt', '/drafts/b.txt')  # the other end decides: allowed

    def test_every_name_of_a_hard_linked_file_is_checked(self):
        p = self.tenant_file('locked/orig.txt', b'orig\n')
        os.makedirs(acme('open'), exist_ok=True)
        os.chown(acme('open'), 100000, 100000)
        os.link(p, acme('open', 'alias.txt'))
        load(policy([{'id': 'locked', 'effect': 'deny', 'ops': ['write', 'truncate', 'chmod'],
                      'path': '/locked/**'}, ALLOW_REST]))
        r = crfs('truncate', '0', '/open/alias.txt', check=False)
        self.assertIn('locked', r.stderr)
        self.assertIn('/locked/orig.txt', r.stderr)
        with open(p, 'rb') as f:
            self.assertEqual(f.read(), b'orig\n')

    def test_rules_for_one_client(self):
        load(policy([{'id': 'carol-reads-only', 'effect': 'deny',
                      'ops': ['create', 'mkdir', 'write', 'truncate', 'unlink', 'rename', 'chmod'],
                      'client': 'spiffe://crfs.test/tenant/acme/client/carol'}, ALLOW_REST]))
        src = self.local('c.txt')
        os.chmod(acme(), 0o777)
        try:
            r = crfs('put', src, '/by-carol.txt', client='carol', check=False)
            self.assertIn('carol-reads-only', r.stderr)
            self.assertFalse(os.path.exists(acme('by-carol.txt')))
            crfs('put', src, '/by-alice.txt')
            crfs('rm', '/by-alice.txt')
        finally:
            os.chmod(acme(), 0o755)

    def test_default_deny(self):
        # A policy without an allow rule denies everything it does not name.
        load(policy([{'id': 'reads', 'effect': 'allow', 'ops': ['read', 'readdir', 'open']}]))
        r = crfs('mkdir', '/not-allowed', check=False)
        self.assertIn('EACCES', r.stderr)
        self.assertIn('no rule allows', r.stderr)
        self.assertFalse(os.path.exists(acme('not-allowed')))
        crfs('ls', '/')


class Limits(PolicyCase):
    def test_max_file_size_exactly_and_one_byte_over(self):
        load(policy([ALLOW_REST], tenants={'acme': {'limits': {'max_file_size': 4096}}}))
        crfs('put', self.local('at-limit', b'a' * 4096), '/at-limit')
        self.assertEqual(os.path.getsize(acme('at-limit')), 4096)
        r = crfs('put', self.local('over', b'a' * 4097), '/over', check=False)
        self.assertIn('EFBIG', r.stderr)
        self.assertIn('max_file_size', r.stderr)
        self.assertFalse(os.path.exists(acme('over')))
        r = crfs('truncate', '4097', '/at-limit', check=False)
        self.assertIn('EFBIG', r.stderr)
        self.assertEqual(os.path.getsize(acme('at-limit')), 4096)
        crfs('truncate', '10', '/at-limit')  # smaller is fine
        self.assertEqual(os.path.getsize(acme('at-limit')), 10)
        # beta has no such limit.
        crt, key = W().cert('beta', 'bob')
        run(base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'), '--cert', crt, '--key',
            key, 'put', self.local('beta-big', b'b' * 8192), '/big')
        self.assertEqual(os.path.getsize(os.path.join(W().mnt, 'tenants', 'beta', 'big')), 8192)

    def test_max_transaction_ops(self):
        load(policy([ALLOW_REST], limits={'max_transaction_ops': 8}))
        for i in range(10):
            self.local(f'many/f{i}')
        r = crfs('import', os.path.join(self.tmp, 'many'), '/many', check=False)
        self.assertIn('E2BIG', r.stderr)
        self.assertIn('max_transaction_ops', r.stderr)
        self.assertEqual(os.listdir(acme('many')), [])  # the top directory went first, alone
        crfs('mkdir', '/few')  # a small one passes

    def test_transactions_per_second(self):
        load(policy([ALLOW_REST], tenants={'acme': {'limits': {'transactions_per_second': 1}}}))
        time.sleep(1.1)  # a full bucket
        # Five changes in one session, milliseconds apart: the first passes, then EAGAIN.
        r = crfs('shell', stdin=''.join(f'mkdir /rate{i}\n' for i in range(5)), check=False)
        self.assertIn('EAGAIN', r.stderr)
        self.assertIn('transactions_per_second', r.stderr)
        made = [n for n in os.listdir(acme()) if n.startswith('rate')]
        self.assertGreaterEqual(len(made), 1)
        self.assertLess(len(made), 5)


class Reload(PolicyCase):
    def test_a_broken_policy_is_refused_and_the_old_one_stays(self):
        load(policy([{'id': 'no-mkdir', 'effect': 'deny', 'ops': ['mkdir']}, ALLOW_REST]))
        log = load('{"version": 1,\n "rules": [\n  {"id": "x", "effect": "alow"}]}\n')
        self.assertIn('reload refused', log)
        self.assertIn('line 3: /rules/0/effect', log)
        r = crfs('mkdir', '/still-denied', check=False)
        self.assertIn('no-mkdir', r.stderr)
        self.assertFalse(os.path.exists(acme('still-denied')))

    def test_diff_over_the_audit_log_is_a_dry_run_of_what_was_recorded(self):
        crfs('mkdir', '/dry-run-dir')
        crfs('put', self.local('f'), '/dry-run-file')
        new = self.local('new.json', policy([{'id': 'no-mkdir', 'effect': 'deny', 'ops': ['mkdir'],
                                              'type': ['dir']}, ALLOW_REST]).encode())
        r = run(CRFSCTL, 'policy', 'diff', '--config', W().path('crfsd.json'), new, '--audit', W().path('audit'))
        self.assertIn('decided differently: acme mkdir /dry-run-dir: allow (rule allow-the-rest) -> deny (rule '
                      'no-mkdir)', r.stdout)
        self.assertNotIn('/dry-run-file', r.stdout)
        self.assertRegex(r.stdout, r'dry run: [1-9][0-9]* of [0-9]+ audited operations decided differently')
        self.assertIn('decision records read from', r.stdout)
        r = run(CRFSCTL, 'policy', 'diff', DEFAULT, DEFAULT, '--audit', self.tmp, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('records.jsonl', r.stderr)
        os.rmdir(acme('dry-run-dir'))
        os.remove(acme('dry-run-file'))

    def test_check_config_reports_policy_errors_with_lines(self):
        bad = W().path('bad-policy.json')
        with open(bad, 'w') as f:
            f.write('{"version": 1,\n "rules": [\n  {"id": "a", "effect": "deny", "ops": ["rmdir"],\n'
                    '   "type": ["file"]},\n  {"id": "b", "effect": "allow", "colour": 1}]}\n')
        with open(W().path('crfsd.json')) as f:
            cfg = json.load(f)
        cfg['policy'] = bad
        with open(W().path('crfsd-bad.json'), 'w') as f:
            json.dump(cfg, f)
        r = run(CRFSD, '--config', W().path('crfsd-bad.json'), '--check-config', check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('line 3: /rules/0: can never match: "type"', r.stderr)
        self.assertIn('line 5: /rules/1/colour: unknown key', r.stderr)
        # And the good one passes, naming its hash.
        r = run(CRFSD, '--config', W().path('crfsd.json'), '--check-config', check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(DEFAULT, 'rb') as f:
            self.assertIn(hashlib.sha256(f.read()).hexdigest(), r.stderr)


def audit_records():
    with open(W().path('audit', 'records.jsonl'), 'rb') as f:
        return [json.loads(line) for line in f.read().splitlines()]


class AdminSocket(PolicyCase):
    """crfsctl policy apply|show|reload and status over crfsd's admin socket (docs/crfsd.md): the
    fixture's crfsd.json names the admin group `staff`; the socket is the default,
    <storage_root>/crfsd.sock."""

    def sock(self):
        return os.path.join(W().mnt, 'crfsd.sock')

    def ctl(self, *args, as_user=None, groups=(), check=True):
        cmd = [CRFSCTL, *args]
        if as_user is not None:
            cmd = ['setpriv', f'--reuid={as_user}', f'--regid={as_user}',
                   f'--groups={",".join(map(str, groups))}' if groups else '--clear-groups'] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f'{" ".join(cmd)}: exit {r.returncode}: {r.stdout}{r.stderr}')
        return r

    def test_apply_puts_a_policy_in_force_keeps_it_in_the_file_and_records_who(self):
        text = policy([{'id': 'no-mkdir-here', 'effect': 'deny', 'ops': ['mkdir'], 'path': '/applied/*'},
                       ALLOW_REST])
        new = self.local('new.json', text.encode())
        r = self.ctl('policy', 'apply', new, '--config', W().path('crfsd.json'))
        sha = hashlib.sha256(text.encode()).hexdigest()
        self.assertIn(f'policy in force: sha256 {sha}', r.stdout)
        crfs('mkdir', '/applied')
        r = crfs('mkdir', '/applied/x', check=False)
        self.assertIn('no-mkdir-here', r.stderr)
        self.assertFalse(os.path.exists(acme('applied', 'x')))
        with open(W().path('policy.json')) as f:
            self.assertEqual(f.read(), text, 'a restart keeps what was applied')
        shown = self.ctl('policy', 'show', '--socket', self.sock())
        self.assertEqual(shown.stdout, text)
        self.assertIn(sha, shown.stderr)
        rec = [x for x in audit_records() if x['ev'] == 'policy.reload'][-1]
        self.assertEqual(rec['new'], sha)
        self.assertEqual((rec['by']['uid'], rec['by']['via'], rec['by']['cmd']), (0, 'admin socket', 'policy.apply'))
        self.assertGreater(rec['by']['pid'], 0)
        self.assertEqual(rec['by']['command'], 'crfsctl')
        # Applying it again changes nothing.
        self.assertIn('policy unchanged', self.ctl('policy', 'apply', new, '--socket', self.sock()).stdout)
        os.rmdir(acme('applied'))

    def test_a_broken_policy_is_refused_and_the_one_in_force_stays(self):
        before = open(W().path('policy.json')).read()
        bad = self.local('bad.json', b'{"version": 1,\n "rules": [\n  {"id": "x", "effect": "alow"}]}\n')
        r = self.ctl('policy', 'apply', bad, '--socket', self.sock(), check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('line 3: /rules/0/effect', r.stderr)
        self.assertIn('crfsd refused the policy', r.stderr)
        self.assertEqual(open(W().path('policy.json')).read(), before)
        self.assertFalse(os.path.exists(W().path('policy.json.crfsd-new')))
        rec = [x for x in audit_records() if x['ev'] == 'policy.refused'][-1]
        self.assertEqual(rec['by']['cmd'], 'policy.apply')
        # Still the shipped policy: setuid refused.
        r = crfs('put', self.local('s', mode=0o4755), '/suid', check=False)
        self.assertIn('no-setuid', r.stderr)

    def test_only_root_and_the_admin_group_may_ask_and_refusals_are_recorded(self):
        staff = 50
        self.assertEqual(stat.S_IMODE(os.stat(self.sock()).st_mode), 0o660)
        self.assertEqual(os.stat(self.sock()).st_gid, staff)
        # (The fixture's directory is root's 0700: others may pass through it for this test.)
        os.chmod(W().dir, 0o711)
        self.addCleanup(os.chmod, W().dir, 0o700)
        # The admin group's members may (the socket file lets them in, crfsd checks them again).
        r = self.ctl('status', '--socket', self.sock(), as_user=65534, groups=[staff])
        self.assertIn('acme', r.stdout)
        self.assertIn('TENANT', r.stdout)
        # Anyone else: the socket file keeps them out; opened up by mistake, crfsd refuses them itself.
        r = self.ctl('status', '--socket', self.sock(), as_user=65534, check=False)
        self.assertIn('Permission denied', r.stderr)
        os.chmod(self.sock(), 0o666)
        try:
            before = len(audit_records())
            r = self.ctl('policy', 'apply', DEFAULT, '--socket', self.sock(), as_user=65534, check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn('serves root and group staff only', r.stderr)
            refused = [x for x in audit_records()[before:] if x['ev'] == 'admin.refused']
            self.assertEqual(len(refused), 1, audit_records()[before:])
            self.assertEqual((refused[0]['by']['uid'], refused[0]['by']['gid']), (65534, 65534))
        finally:
            os.chmod(self.sock(), 0o660)

    def test_bad_requests_are_answered_and_a_silent_peer_blocks_nobody(self):
        import socket as so
        silent = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        silent.connect(self.sock())  # sends nothing, keeps it open
        try:
            crfs('ls', '/')  # crfsd serves on
            self.assertIn('TENANT', self.ctl('status', '--socket', self.sock()).stdout)
            for req in (b'', b'not json', b'{"cmd":"rm"}', b'{"cmd":"status","x":1}', b'\xff' * 100):
                c = so.socket(so.AF_UNIX, so.SOCK_STREAM)
                c.connect(self.sock())
                c.sendall(req)
                c.shutdown(so.SHUT_WR)
                answer = json.loads(c.makefile('rb').read())
                c.close()
                self.assertFalse(answer['ok'], req)
                self.assertIn('admin request', answer['error'])
        finally:
            silent.close()


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
