#!/usr/bin/env python3
"""End-to-end tests of the audit log (docs/audit.md): real crfsd, real TLS, real btrfs.

The fixture is crfsd_test's: its crfsd.json has an audit section (the log in
FIXTURE/audit, checkpointed every 200 ms, signed with a key made by
`crfs-audit keygen`). Tenants act through the `crfs` CLI; what the log says
is read back three ways: with `crfs-audit` (verify, query, prove,
consistency), and with a verifier written here from docs/audit.md alone
(hashlib and python3-cryptography: RFC 9162 hashing, the C2SP signed note),
which must agree with it. Tampering is done on copies of the log. Fail
closed: the log moved onto a small tmpfs that a test fills. Needs root.

usage: audit_test.py BUILD_DIR SOURCE_DIR [unittest args]
"""
import base64
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crfsd_test as base  # noqa: E402  (parses BUILD_DIR SOURCE_DIR)
from crfsd_test import CRFS_AUDIT, run  # noqa: E402
from policy_test import acme, crfs  # noqa: E402  (acme's paths; `crfs` as an acme client)


def setUpModule():
    base.setUpModule()


def tearDownModule():
    base.tearDownModule()


def W():
    return base.W


def audit(*args, check=True):
    r = run(CRFS_AUDIT, *args, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f'crfs-audit {" ".join(args)}: exit {r.returncode}: {r.stdout}{r.stderr}')
    return r


def logdir():
    return W().path('audit')


def records(d=None):
    with open(os.path.join(d or logdir(), 'records.jsonl'), 'rb') as f:
        return [json.loads(line) for line in f.read().splitlines()]


def checkpointed(d=None, timeout=10):
    """Waits until the latest checkpoint covers every record (crfsd signs every 200 ms here)."""
    d = d or logdir()
    for _ in range(int(timeout / 0.05)):
        with open(os.path.join(d, 'records.jsonl'), 'rb') as f:
            n = len(f.read().splitlines())
        with open(os.path.join(d, 'checkpoint')) as f:
            size = int(f.read().split('\n')[1])
        if size == n:
            return n
        time.sleep(0.05)
    raise AssertionError('no checkpoint covers the log')


# --- an independent verifier, from docs/audit.md -------------------------------------------------

def leaf(line):
    return hashlib.sha256(b'\x00' + line).digest()


def node(a, b):
    return hashlib.sha256(b'\x01' + a + b).digest()


def mth(hs):
    if not hs:
        return hashlib.sha256(b'').digest()
    if len(hs) == 1:
        return hs[0]
    k = 1
    while k * 2 < len(hs):
        k *= 2
    return node(mth(hs[:k]), mth(hs[k:]))


def open_note(note, vkey):
    """The text of a C2SP signed note if vkey's signature on it verifies (c2sp.org/signed-note)."""
    name, keyid, key = vkey.split('+', 2)
    raw = base64.b64decode(key, validate=True)
    assert raw[0] == 1 and len(raw) == 33, 'an Ed25519 verifier key'
    assert hashlib.sha256(name.encode() + b'\n' + raw).digest()[:4].hex() == keyid, 'key id'
    text, sep, sigs = note.rpartition('\n\n')
    assert sep, 'a note has a blank line before its signatures'
    text += '\n'
    for line in sigs.rstrip('\n').split('\n'):
        dash, signer, blob = line.split(' ')
        assert dash == '\u2014'
        blob = base64.b64decode(blob, validate=True)
        if signer == name and blob[:4].hex() == keyid:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], text.encode())  # raises if bad
            return text
    raise AssertionError('no signature by ' + name)


def verify_inclusion(index, size, h, proof, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, h
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(m, n, old, new, proof):
    """RFC 9162 §2.1.4.2."""
    if m == n:
        return not proof and old == new
    if m == 0 or m > n:
        return False
    if m & (m - 1) == 0:  # a power of two: the old root is the first node
        proof = [old] + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    if not proof:
        return False
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old and sr == new and sn == 0


def independent_verify(d, vkey, allow_tail=False):
    """Every record re-hashed and chained; the latest checkpoint's signature and root, covering every
    record unless allow_tail. Returns its size."""
    with open(os.path.join(d, 'records.jsonl'), 'rb') as f:
        lines = f.read().split(b'\n')
    assert lines[-1] == b'', 'the last record ends in a newline'
    lines = lines[:-1]
    prev = '0' * 64
    for i, line in enumerate(lines):
        r = json.loads(line)
        assert r['i'] == i and r['prev'] == prev, f'record {i} is chained'
        assert json.dumps(r, sort_keys=True, separators=(',', ':'), ensure_ascii=True).encode() == line, \
            f'record {i} is canonical'
        prev = leaf(line).hex()
    with open(os.path.join(d, 'checkpoint')) as f:
        text = open_note(f.read(), vkey)
    origin, size, root = text.rstrip('\n').split('\n')
    assert origin == vkey.split('+')[0]
    size = int(size)
    assert mth([leaf(x) for x in lines[:size]]) == base64.b64decode(root), 'the checkpoint is the root of the log'
    assert allow_tail or size == len(lines), 'every record is covered by the latest checkpoint'
    return size


class AuditCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='audit-test.', dir=W().dir)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def local(self, name, data=b'x\n'):
        p = os.path.join(self.tmp, name)
        with open(p, 'wb') as f:
            f.write(data)
        return p

    def copy_log(self):
        d = os.path.join(self.tmp, 'copy')
        shutil.copytree(logdir(), d)
        return d


class Records(AuditCase):
    def test_sessions_and_transactions_are_recorded_with_who_what_and_the_rule(self):
        before = len(records())
        crfs('put', self.local('a.txt'), '/audited.txt')
        r = crfs('chmod', '4755', '/audited.txt', check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('no-setuid', r.stderr)
        new = records()[before:]
        starts = [x for x in new if x['ev'] == 'session.start']
        self.assertGreaterEqual(len(starts), 2)
        self.assertEqual(starts[0]['tenant'], 'acme')
        self.assertEqual(starts[0]['client'], 'spiffe://crfs.test/tenant/acme/client/alice')
        with open(W().path('pki/clients/acme/alice.crt')) as f:
            der = subprocess.run(['openssl', 'x509', '-outform', 'DER'], input=f.read().encode(),
                                 capture_output=True, check=True).stdout
        self.assertEqual(starts[0]['cert'], hashlib.sha256(der).hexdigest())
        # The put: allowed, its operations with their paths, then its result.
        allowed = [x for x in new if x['ev'] == 'transaction' and x['decision'] == 'allow'
                   and any(op.get('path') == '/audited.txt' for op in x['ops'])]
        self.assertEqual(len(allowed), 1, new)
        a = allowed[0]
        self.assertEqual(a['session'], starts[0]['session'])
        self.assertIn({'op': 'create', 'path': '/audited.txt', 'type': 'file', 'perms': '0644'}, a['ops'])
        with open(W().path('policy.json'), 'rb') as f:
            self.assertEqual(a['policy'], hashlib.sha256(f.read()).hexdigest())
        result = [x for x in new if x['ev'] == 'transaction.result' and x['of'] == a['i']]
        self.assertEqual(len(result), 1)
        self.assertTrue(result[0]['applied'])
        self.assertGreater(result[0]['gen'], 0)
        # The chmod: refused by the policy, with the rule, the errno and the reason.
        denied = [x for x in new if x['ev'] == 'transaction' and x['decision'] == 'deny']
        self.assertEqual(len(denied), 1, new)
        d = denied[0]
        self.assertEqual((d['by'], d['rule'], d['errno']), ('policy', 'no-setuid', 'EPERM'))
        self.assertEqual(d['ops'], [{'op': 'chmod', 'path': '/audited.txt', 'type': 'file', 'perms': '4755'}])
        self.assertIn('nothing changed', d['reason'])
        self.assertFalse([x for x in new if x['ev'] == 'transaction.result' and x['of'] == d['i']])
        # Ended sessions say so.
        ends = [x for x in new if x['ev'] == 'session.end']
        self.assertTrue(any(e['session'] == starts[0]['session'] for e in ends))
        crfs('rm', '/audited.txt')

    def test_refusals_by_permissions_and_limits_say_which_check(self):
        before = len(records())
        # carol (uid 1000) may not write into the tenant root's directory.
        r = crfs('mkdir', '/carol-was-here', client='carol', check=False)
        self.assertNotEqual(r.returncode, 0)
        new = [x for x in records()[before:] if x['ev'] == 'transaction']
        self.assertEqual([(x['decision'], x['by'], x['errno']) for x in new], [('deny', 'permissions', 'EACCES')])
        self.assertEqual(new[0]['uid'], 1000)
        self.assertFalse(os.path.exists(acme('carol-was-here')))

    def test_a_refused_session_is_recorded(self):
        before = len(records())
        crt, key = W().cert('nobody', 'eve')
        r = subprocess.run([base.CRFS, '--server', f'127.0.0.1:{W().port}', '--ca', W().path('pki/ca.crt'),
                            '--cert', crt, '--key', key, 'ls', '/'], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        for _ in range(100):
            refused = [x for x in records()[before:] if x['ev'] == 'session.refused']
            if refused:
                break
            time.sleep(0.05)
        self.assertEqual(len(refused), 1)
        self.assertIn("unknown tenant 'nobody'", refused[0]['reason'])
        self.assertEqual(refused[0]['client'], 'spiffe://crfs.test/tenant/nobody/client/eve')

    def test_a_policy_reload_is_recorded_with_both_hashes(self):
        with open(W().path('policy.json'), 'rb') as f:
            old = f.read()
        new = json.loads(old)
        new['rules'].append({'id': 'audit-test-extra', 'effect': 'warn', 'name': '*.audit-test'})
        text = json.dumps(new, indent=1).encode()
        before = len(records())
        try:
            with open(W().path('policy.json'), 'wb') as f:
                f.write(text)
            W().crfsd.send_signal(signal.SIGHUP)
            for _ in range(200):
                got = [x for x in records()[before:] if x['ev'] == 'policy.reload']
                if got:
                    break
                time.sleep(0.05)
            self.assertEqual(len(got), 1)
            self.assertEqual(got[0]['old'], hashlib.sha256(old).hexdigest())
            self.assertEqual(got[0]['new'], hashlib.sha256(text).hexdigest())
        finally:
            with open(W().path('policy.json'), 'wb') as f:
                f.write(old)
            W().crfsd.send_signal(signal.SIGHUP)
            for _ in range(200):
                if sum(x['ev'] == 'policy.reload' for x in records()[before:]) == 2:
                    break
                time.sleep(0.05)


class Verification(AuditCase):
    def test_crfs_audit_and_an_independent_verifier_agree(self):
        crfs('mkdir', '/verify-me')
        crfs('rm', '/verify-me')
        n = checkpointed()
        r = audit('verify', logdir(), '--key', W().vkey)
        self.assertIn(f'verified: {n} records', r.stdout)
        self.assertEqual(independent_verify(logdir(), W().vkey), n)
        # The checkpoint crfs-audit prints is the one on disk, verified.
        cp = audit('checkpoint', logdir(), '--key', W().vkey).stdout
        self.assertEqual(open_note(cp, W().vkey).split('\n')[1], str(n))

    def test_inclusion_proofs_verify_independently(self):
        n = checkpointed()
        with open(os.path.join(logdir(), 'records.jsonl'), 'rb') as f:
            lines = f.read().splitlines()
        for i in sorted({0, 1, n // 2, n - 1}):
            out = audit('prove', logdir(), str(i), '--key', W().vkey).stdout
            head, _, note = out.partition('\n\n')
            parts = head.split('\n')
            self.assertEqual(parts[0], 'c2sp.org/tlog-proof@v1')
            self.assertEqual(parts[1], f'index {i}')
            proof = [base64.b64decode(p, validate=True) for p in parts[2:]]
            origin, size, root = open_note(note, W().vkey).rstrip('\n').split('\n')
            root = base64.b64decode(root)
            self.assertTrue(verify_inclusion(i, int(size), leaf(lines[i]), proof, root), i)
            self.assertFalse(verify_inclusion(i, int(size), leaf(lines[i] + b' '), proof, root), i)
        r = audit('prove', logdir(), str(10 ** 9), '--key', W().vkey, check=False)
        self.assertEqual(r.returncode, 1)

    def test_the_log_only_grows_and_consistency_proofs_verify_independently(self):
        checkpointed()
        kept = os.path.join(self.tmp, 'kept-checkpoint')
        shutil.copy(os.path.join(logdir(), 'checkpoint'), kept)
        with open(kept) as f:
            old_size, old_root = open_note(f.read(), W().vkey).rstrip('\n').split('\n')[1:]
        crfs('mkdir', '/grow')
        crfs('rm', '/grow')
        checkpointed()
        out = audit('consistency', logdir(), kept, '--key', W().vkey).stdout.split('\n')
        words = out[0].split()
        self.assertEqual(words[0], 'consistent:')
        new_size = int(words[-1])
        self.assertGreater(new_size, int(old_size))
        proof = [base64.b64decode(p) for p in out[1:] if p]
        with open(os.path.join(logdir(), 'checkpoint')) as f:
            _, size, root = open_note(f.read(), W().vkey).rstrip('\n').split('\n')
        self.assertGreaterEqual(int(size), new_size)
        self.assertTrue(verify_consistency(int(old_size), new_size, base64.b64decode(old_root),
                                           base64.b64decode(root), proof))
        self.assertEqual(audit('verify', logdir(), '--key', W().vkey, '--checkpoint', kept,
                               '--allow-unsigned-tail').returncode, 0)

    def test_query_finds_refusals_by_rule_and_path(self):
        crfs('put', self.local('q'), '/query-me')
        crfs('chmod', '6755', '/query-me', check=False)
        crfs('rm', '/query-me')
        out = audit('query', logdir(), '--key', W().vkey, '--decision', 'deny', '--rule', 'no-setuid',
                    '--path', '/query-me').stdout
        got = [json.loads(x) for x in out.splitlines()]
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0]['ops'][0]['perms'], '6755')
        table = audit('query', logdir(), '--key', W().vkey, '--path', '/query-me', '--format', 'table').stdout
        self.assertIn('EPERM', table)
        self.assertIn('chmod /query-me', table)


class Export(AuditCase):
    def test_query_exports_file_events_in_ecs_and_ocsf(self):
        crfs('mkdir', '/exported')
        crfs('rm', '/exported')
        checkpointed()
        ecs = [json.loads(x) for x in audit('query', logdir(), '--key', W().vkey, '--path', '/exported',
                                            '--format', 'ecs').stdout.splitlines()]
        made = [e for e in ecs if e['event']['action'] == 'mkdir']
        self.assertTrue(made, ecs)
        self.assertEqual(made[-1]['event']['category'], ['file'])
        self.assertEqual(made[-1]['event']['type'], ['creation'])
        self.assertEqual(made[-1]['event']['outcome'], 'success')
        self.assertEqual(made[-1]['file']['path'], '/exported')
        self.assertEqual(made[-1]['file']['type'], 'dir')
        self.assertEqual(made[-1]['crfs']['tenant'], 'acme')
        self.assertIn('deletion', [e['event']['type'][0] for e in ecs])
        ocsf = [json.loads(x) for x in audit('query', logdir(), '--key', W().vkey, '--path', '/exported',
                                             '--format', 'ocsf').stdout.splitlines()]
        self.assertEqual({e['class_uid'] for e in ocsf}, {1001})
        self.assertIn((1, 'Create', 100101), [(e['activity_id'], e['activity_name'], e['type_uid']) for e in ocsf])
        self.assertIn(4, [e['activity_id'] for e in ocsf])
        self.assertTrue(all(e['file']['path'] == '/exported' and e['status_id'] == 1 for e in ocsf))

    def test_follow_prints_records_as_they_come_and_stops_at_a_forged_one(self):
        """follow on a copy of the log that the test extends with the live log's new records (a
        follower of the real log sees the same), then with a forged one."""
        checkpointed()
        d = self.copy_log()
        path = os.path.join(d, 'records.jsonl')
        with open(path, 'rb') as f:
            kept = f.read()
        kept = kept[:kept.rfind(b'\n') + 1]  # whole lines only
        with open(path, 'wb') as f:
            f.write(kept)
        n = kept.count(b'\n')
        # --from: whenever follow reads the file, it prints from record n on.
        follow = subprocess.Popen([CRFS_AUDIT, 'follow', d, '--key', W().vkey, '--event', 'transaction',
                                   '--from', str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            crfs('mkdir', '/followed')
            checkpointed()
            with open(os.path.join(logdir(), 'records.jsonl'), 'rb') as f:
                new = f.read().splitlines(keepends=True)[n:]
            with open(path, 'ab') as f:
                f.write(b''.join(new))
            shutil.copy(os.path.join(logdir(), 'checkpoint'), os.path.join(d, 'checkpoint'))
            ready, _, _ = select.select([follow.stdout], [], [], 60)
            self.assertTrue(ready, 'follow printed nothing in 60 s')
            line = json.loads(follow.stdout.readline())
            self.assertEqual(line['ev'], 'transaction')
            self.assertEqual(line['ops'][0]['path'], '/followed')
            forged = dict(json.loads(new[-1]), i=n + len(new), ev='transaction', tenant='acme')
            with open(path, 'ab') as f:
                f.write(json.dumps(forged, sort_keys=True, separators=(',', ':')).encode() + b'\n')
            follow.wait(10)
            self.assertEqual(follow.returncode, 1)
            self.assertIn(f'record {n + len(new)}', follow.stderr.read())
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
            follow.stdout.close()
            follow.stderr.close()
            crfs('rm', '/followed', check=False)


class Tampering(AuditCase):
    def verify(self, d, *extra):
        return audit('verify', d, '--key', W().vkey, *extra, check=False)

    def test_every_change_to_a_copy_is_named(self):
        checkpointed()
        cases = []

        def edit(name, fn, finding):
            cases.append((name, fn, finding))

        def flip(lines):
            i = len(lines) // 2
            lines[i] = lines[i].replace(b'"acme"', b'"acmf"', 1) if b'"acme"' in lines[i] else lines[i][:-2] + b'0}'
            return lines

        edit('a byte changed', flip, 'record ')
        edit('a record deleted', lambda ls: ls[:3] + ls[4:], 'record 3 (line 4)')
        edit('two records swapped', lambda ls: ls[:1] + [ls[2], ls[1]] + ls[3:], 'record 1 (line 2)')
        edit('the tail cut off', lambda ls: ls[:-2], 'records were removed from the end')

        def forge(ls):
            last = json.loads(ls[-1])
            rec = {'ev': 'transaction', 'decision': 'allow', 'i': last['i'] + 1, 'prev': leaf(ls[-1]).hex(),
                   't': last['t'], 'tenant': 'acme'}
            return ls + [json.dumps(rec, sort_keys=True, separators=(',', ':')).encode()]

        edit('a well-formed record appended', forge, 'not covered by a signed checkpoint')
        for name, fn, finding in cases:
            d = self.copy_log()
            p = os.path.join(d, 'records.jsonl')
            with open(p, 'rb') as f:
                lines = f.read().splitlines()
            with open(p, 'wb') as f:
                f.write(b'\n'.join(fn(lines)) + b'\n')
            r = self.verify(d)
            self.assertEqual(r.returncode, 1, name)
            self.assertIn(finding, r.stderr, name)
            self.assertRaises(AssertionError, independent_verify, d, W().vkey)
            shutil.rmtree(d)

    def test_a_rewrite_signed_with_the_real_key_is_caught_by_a_kept_checkpoint(self):
        checkpointed()
        kept = os.path.join(self.tmp, 'kept')
        shutil.copy(os.path.join(logdir(), 'checkpoint'), kept)
        # The operator has the key: a fresh, self-consistent history, signed by crfsd itself.
        d = self.copy_log()
        shutil.rmtree(d)
        key = W().path('audit.key')
        # crfs-audit has no signing command (only crfsd signs): the rewritten log is signed with
        # openssl and the real key, as an operator who holds it could.
        lines = [json.dumps({'ev': 'crfsd.start', 'i': 0, 'prev': '0' * 64, 't': '2026-01-01T00:00:00.000Z'},
                            sort_keys=True, separators=(',', ':')).encode()]
        os.mkdir(d)
        with open(os.path.join(d, 'records.jsonl'), 'wb') as f:
            f.write(b'\n'.join(lines) + b'\n')
        name = W().vkey.split('+')[0]
        text = f'{name}\n1\n{base64.b64encode(mth([leaf(lines[0])])).decode()}\n'
        msg = os.path.join(self.tmp, 'msg')
        with open(msg, 'w') as f:
            f.write(text)
        sig = subprocess.run(['openssl', 'pkeyutl', '-sign', '-inkey', key, '-rawin', '-in', msg],
                             capture_output=True, check=True).stdout
        keyid = bytes.fromhex(W().vkey.split('+')[1])
        note = text + '\n\u2014 ' + name + ' ' + base64.b64encode(keyid + sig).decode() + '\n'
        with open(os.path.join(d, 'checkpoint'), 'w') as f:
            f.write(note)
        with open(os.path.join(d, 'checkpoints.jsonl'), 'w') as f:
            f.write(json.dumps({'note': note}, sort_keys=True, separators=(',', ':')) + '\n')
        self.assertEqual(self.verify(d).returncode, 0, 'self-consistent on its own: ' + self.verify(d).stderr)
        r = self.verify(d, '--checkpoint', kept)
        self.assertEqual(r.returncode, 1)
        self.assertIn('history was removed', r.stderr + r.stdout)
        r = audit('consistency', d, kept, '--key', W().vkey, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('NOT CONSISTENT', r.stderr)

    def test_another_keys_checkpoint_is_refused(self):
        checkpointed()
        other = os.path.join(self.tmp, 'other.key')
        other_vkey = audit('keygen', other, '--origin', W().vkey.split('+')[0]).stdout.strip()
        r = audit('verify', logdir(), '--key', other_vkey, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('not signed by', r.stderr)


class FailClosed(AuditCase):
    def test_a_full_audit_disk_refuses_transactions_and_nothing_changes(self):
        """The log on a 1 MiB tmpfs that the test fills: a transaction whose record cannot be written
        is refused and not applied; once space is back, everything works and the log verifies."""
        fixture = W()
        d = logdir()
        saved = os.path.join(fixture.dir, 'audit-saved')
        fixture.crfsd.send_signal(signal.SIGTERM)
        fixture.crfsd.wait(10)
        shutil.copytree(d, saved)
        # Room for the log and about 200 KiB more.
        size = sum(os.path.getsize(os.path.join(saved, n)) for n in os.listdir(saved)) + (200 << 10)
        run('mount', '-t', 'tmpfs', '-o', f'size={size // 1024 + 4}k,mode=0700', 'crfs-audit-test', d)
        mounted = True
        shell = None
        try:
            for n in os.listdir(saved):
                shutil.copy2(os.path.join(saved, n), os.path.join(d, n))
            fixture.start()
            # One session, opened while there is room (a new session must be recorded too).
            crt, key = fixture.cert('acme', 'alice')
            shell = subprocess.Popen([base.CRFS, '--server', f'127.0.0.1:{fixture.port}', '--ca',
                                      fixture.path('pki/ca.crt'), '--cert', crt, '--key', key, 'shell'],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
            shell.stdin.write('ping\n')
            shell.stdin.flush()
            self.assertIn('crfsd at', shell.stdout.readline())
            checkpointed()
            with open(os.path.join(d, 'filler'), 'wb', buffering=0) as f:
                try:
                    while True:
                        f.write(b'\0' * 4096)
                except OSError:
                    pass
            names = [f'/full-{i}' for i in range(40)]
            out, err = shell.communicate(''.join(f'mkdir {n}\n' for n in names), timeout=60)
            shell = None
            failed = {int(x.split()[2].rstrip(':')) - 2 for x in err.splitlines() if ' failed: ' in x}
            self.assertTrue(failed, 'some transaction must fail once the log cannot grow: ' + err)
            self.assertIn('the audit log cannot be written', err)
            for i, n in enumerate(names):
                self.assertEqual(os.path.isdir(acme(n[1:])), i not in failed, f'{n}: {err}')
            # A new session is refused while its start cannot be recorded.
            r = crfs('ls', '/', check=False)
            self.assertNotEqual(r.returncode, 0)
            # Space again: it works, and the log (cut back where a write failed) verifies.
            os.remove(os.path.join(d, 'filler'))
            crfs('mkdir', '/after-full')
            self.assertTrue(os.path.isdir(acme('after-full')))
            checkpointed()
            self.assertEqual(audit('verify', d, '--key', fixture.vkey).returncode, 0)
            independent_verify(d, fixture.vkey)
            for n in names + ['/after-full']:
                crfs('rm', n, check=False)
        finally:
            if shell:
                shell.kill()
                shell.wait()
            if fixture.crfsd.poll() is None:
                fixture.crfsd.send_signal(signal.SIGTERM)
                fixture.crfsd.wait(10)
            if mounted:
                keep = os.path.join(fixture.dir, 'audit-after')
                shutil.copytree(d, keep, ignore=shutil.ignore_patterns('filler'))
                subprocess.run(['umount', d], capture_output=True)
                shutil.rmtree(d)
                shutil.copytree(keep, d)
                shutil.rmtree(keep)
            shutil.rmtree(saved, ignore_errors=True)
            fixture.start()
        self.assertEqual(audit('verify', d, '--key', fixture.vkey, '--allow-unsigned-tail').returncode, 0)


class PowerCut(AuditCase):
    def test_decisions_the_log_lost_are_restored_from_the_intent_journal(self):
        """A transaction's decision record is not fdatasync'ed on its own: the intent journal's BEGIN carries
        it (and is synced). A power cut that loses the log's unsynced tail -- emulated: crfsd SIGKILLed,
        records.jsonl cut back to its latest checkpoint -- loses no decision: the next start appends each
        again ("restored") with its result, and the log verifies."""
        fixture = W()
        path = fixture.path('crfsd.json')
        with open(path) as f:
            original = f.read()
        c = json.loads(original)
        c['audit']['checkpoint_interval_ms'] = 3600 * 1000  # none between the start and the kill
        fixture.crfsd.send_signal(signal.SIGTERM)
        fixture.crfsd.wait(10)
        fixture.log.close()
        names = [f'/cut-{i}' for i in range(3)]
        try:
            with open(path, 'w') as f:
                json.dump(c, f)
            fixture.start()

            def signed():
                with open(os.path.join(logdir(), 'checkpoint')) as f:
                    return int(f.read().split('\n')[1])
            at_start = signed()
            for n in names:
                crfs('mkdir', n)
            crfs('rm', names[2])
            self.assertEqual(signed(), at_start)
            decisions = [r for r in records()[at_start:] if r['ev'] == 'transaction' and r['decision'] == 'allow']
            self.assertEqual(len(decisions), 4, 'three mkdirs and an rm, decided after the checkpoint')
            fixture.crfsd.send_signal(signal.SIGKILL)
            fixture.crfsd.wait()
            fixture.log.close()
            # The power cut: what no checkpoint covers is gone.
            with open(os.path.join(logdir(), 'records.jsonl'), 'rb') as f:
                kept = f.read().splitlines(keepends=True)[:at_start]
            with open(os.path.join(logdir(), 'records.jsonl'), 'wb') as f:
                f.write(b''.join(kept))
            fixture.start()
            fixture.crfsd.send_signal(signal.SIGTERM)  # a clean stop signs everything
            fixture.crfsd.wait(10)
            fixture.log.close()
            after = records()
            restored = [r for r in after[at_start:] if 'restored' in r]
            self.assertEqual([r['restored']['i'] for r in restored], [d['i'] for d in decisions])
            for r, d in zip(restored, decisions):
                self.assertEqual({k: v for k, v in r.items() if k not in ('i', 'prev', 't', 'restored')},
                                 {k: v for k, v in d.items() if k not in ('i', 'prev', 't')})
                self.assertEqual(r['restored'], {'from': 'journal', 'i': d['i'], 'prev': d['prev'], 't': d['t']})
                result = [x for x in after if x['ev'] == 'transaction.result' and x['of'] == r['i']]
                self.assertEqual(len(result), 1, r)
                self.assertEqual(result[0]['by'], 'journal')
                self.assertTrue(result[0]['applied'])
            self.assertIn('restored from the journal', open(fixture.path('crfsd.log')).read())
            self.assertEqual(audit('verify', logdir(), '--key', fixture.vkey).returncode, 0)
            independent_verify(logdir(), fixture.vkey)
        finally:
            if fixture.crfsd.poll() is None:
                fixture.crfsd.send_signal(signal.SIGTERM)
                fixture.crfsd.wait(10)
                fixture.log.close()
            with open(path, 'w') as f:
                f.write(original)
            fixture.start()
            for n in names:
                crfs('rm', n, check=False)


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
