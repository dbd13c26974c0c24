#!/usr/bin/python3
"""crfsctl policy check|diff|explain, and the JSON Schema against the parser.

Offline: no crfsd, no root. Run with Debian's python3 (python3-jsonschema).

usage: crfsctl_policy_test.py CRFSCTL SOURCE_DIR [unittest args]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import jsonschema

CRFSCTL, SRC = sys.argv[1], sys.argv[2]
EXAMPLES = os.path.join(SRC, 'policy', 'examples')


def ctl(*args):
    return subprocess.run([CRFSCTL, 'policy', *args], capture_output=True, text=True, timeout=60)


class Case(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, 'w') as f:
            f.write(text if isinstance(text, str) else json.dumps(text, indent=1))
        return path


class Check(Case):
    def test_the_examples_are_valid(self):
        for name in ('default.json', 'tenants.json'):
            r = ctl('check', os.path.join(EXAMPLES, name))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('valid:', r.stdout)
            self.assertRegex(r.stdout, r'sha256 [0-9a-f]{64}')
            self.assertEqual(r.stderr, '')

    def test_errors_have_lines_and_exit_1(self):
        p = self.write('bad.json', '{"version": 1,\n "rules": [\n  {"id": "a", "effect": "alow"},\n'
                                   '  {"id": "a", "effect": "deny", "colour": 2}]}\n')
        r = ctl('check', p)
        self.assertEqual(r.returncode, 1)
        self.assertIn('line 3: /rules/0/effect: every rule has an "effect"', r.stderr)
        self.assertIn('line 4: /rules/1/colour: unknown key', r.stderr)
        self.assertIn('refused', r.stdout)

    def test_warnings_do_not_fail(self):
        p = self.write('shadow.json', {'version': 1, 'rules': [
            {'id': 'all', 'effect': 'deny', 'path': '/x/**'},
            {'id': 'part', 'effect': 'deny', 'ops': ['write'], 'path': '/x/y/**'}]})
        r = ctl('check', p)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('rule part never decides anything: rule all', r.stderr)
        self.assertIn('1 warnings', r.stdout)

    def test_missing_file_and_usage(self):
        r = ctl('check', os.path.join(self.dir.name, 'nope.json'))
        self.assertEqual(r.returncode, 1)
        self.assertIn('cannot open', r.stderr)
        self.assertEqual(ctl('check').returncode, 2)
        self.assertEqual(ctl('check', 'a', 'b').returncode, 2)
        self.assertEqual(ctl('frobnicate').returncode, 2)
        self.assertEqual(ctl('check', '--sample', 'x', 'y').returncode, 2)


OLD = {'version': 1,
       'rules': [{'id': 'no-setuid', 'effect': 'deny', 'errno': 'EPERM', 'mode': ['setuid']},
                 {'id': 'ro', 'effect': 'deny', 'ops': ['write'], 'path': '/ro/**'},
                 {'id': 'gone', 'effect': 'deny', 'ops': ['mkdir'], 'path': '/nomk/**'}],
       'tenants': {'acme': {'rules': [{'id': 'acme-tmp', 'effect': 'allow', 'path': '/tmp/**'}],
                            'limits': {'max_file_size': 1000}}},
       'defaults': [{'id': 'rest', 'effect': 'allow'}]}


class Diff(Case):
    def new(self):
        new = json.loads(json.dumps(OLD))
        new['rules'][1]['path'] = '/ro2/**'                                  # changed
        del new['rules'][2]                                                   # removed
        new['rules'].insert(0, {'id': 'no-fifo', 'effect': 'deny', 'ops': ['mknod'], 'type': ['fifo']})  # added
        new['rules'][1]['comment'] = 'a comment changes nothing'
        new['tenants']['acme']['limits']['max_file_size'] = 2000
        return new

    def test_rules_and_limits(self):
        r = ctl('diff', self.write('old.json', OLD), self.write('new.json', self.new()))
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn('global: added rule no-fifo at position 1', out)
        self.assertIn('global: removed rule gone', out)
        self.assertIn('global: changed rule ro:', out)
        self.assertIn('/ro2/**', out)
        self.assertNotIn('changed rule no-setuid', out)
        self.assertIn('tenant acme limits: max_file_size 1000 -> max_file_size 2000', out)
        self.assertNotIn('reordered', out)

    def test_reordering_is_a_change(self):
        new = json.loads(json.dumps(OLD))
        new['rules'][0], new['rules'][1] = new['rules'][1], new['rules'][0]
        r = ctl('diff', self.write('old.json', OLD), self.write('new.json', new))
        self.assertIn('global: rules reordered; now: ro, no-setuid, gone', r.stdout)

    def test_same_policy(self):
        p = self.write('old.json', OLD)
        r = ctl('diff', p, p)
        self.assertEqual(r.returncode, 0)
        self.assertIn('no rule or limit changes', r.stdout)

    def test_against_the_running_config(self):
        pol = self.write('policy.json', OLD)
        cfg = self.write('crfsd.json', {
            'listen': '127.0.0.1:0', 'storage_root': '/srv/crfs', 'policy': 'policy.json',
            'audit': {'dir': 'audit', 'key': 'audit.key', 'origin': 't/audit'},
            'trust_domain': 't', 'tls': {'ca': '/a', 'crl': '/b', 'cert': '/c', 'key': '/d'},
            'tenants': {'acme': {'id_map': {'uid_base': 100000, 'gid_base': 100000, 'count': 65536}}}})
        r = ctl('diff', '--config', cfg, self.write('new.json', self.new()))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f'--- {pol}', r.stdout)
        self.assertIn('added rule no-fifo', r.stdout)

    def test_sample_dry_run(self):
        sample = self.write('ops.jsonl', '\n'.join([
            '# what acme did today',
            json.dumps({'tenant': 'acme', 'op': 'write', 'path': '/ro/f', 'type': 'file', 'size': 10}),
            json.dumps({'tenant': 'acme', 'op': 'write', 'path': '/ro2/f', 'type': 'file', 'size': 10}),
            json.dumps({'tenant': 'beta', 'op': 'mkdir', 'path': '/nomk/d', 'type': 'dir', 'mode': '755'}),
            json.dumps({'tenant': 'beta', 'op': 'mknod', 'path': '/p', 'type': 'fifo', 'mode': '644'}),
            json.dumps({'tenant': 'beta', 'op': 'read', 'path': '/x', 'type': 'file'}),
            '']))
        r = ctl('diff', self.write('old.json', OLD), self.write('new.json', self.new()), '--sample', sample)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('decided differently: acme write /ro/f: deny (rule ro) -> allow (rule rest)', r.stdout)
        self.assertIn('decided differently: acme write /ro2/f: allow (rule rest) -> deny (rule ro)', r.stdout)
        self.assertIn('decided differently: beta mkdir /nomk/d: deny (rule gone) -> allow (rule rest)', r.stdout)
        self.assertIn('decided differently: beta mknod /p: allow (rule rest) -> deny (rule no-fifo)', r.stdout)
        self.assertIn('dry run: 4 of 5 sampled operations decided differently', r.stdout)

    def test_bad_samples_name_the_line(self):
        old, new = self.write('old.json', OLD), self.write('new.json', OLD)
        for line, says in (('not json', 'not a JSON object'), ('{"op": "read", "path": "/"}', '"tenant" is required'),
                           ('{"tenant": "a", "op": "delete", "path": "/"}', "unknown operation 'delete'"),
                           ('{"tenant": "a", "op": "read", "path": "x"}', "path must start with '/'"),
                           ('{"tenant": "a", "op": "read", "path": "/", "mode": 755}', '"mode" must be a string of octal digits'),
                           ('{"tenant": "a", "op": "read", "path": "/", "mode": "9"}', 'mode must be octal'),
                           ('{"tenant": "a", "op": "read", "path": "/", "uid": "-1"}', 'uid must be'),
                           ('{"tenant": "a", "op": "read", "path": "/", "colour": "x"}', "unknown key 'colour'")):
            sample = self.write('bad.jsonl', '# one comment\n' + line + '\n')
            r = ctl('diff', old, new, '--sample', sample)
            self.assertEqual(r.returncode, 1, line)
            self.assertIn('bad.jsonl: line 2: ' + says, r.stderr, line)

    def test_an_invalid_side_is_refused(self):
        r = ctl('diff', self.write('old.json', OLD), self.write('new.json', '{"version": 2}'))
        self.assertEqual(r.returncode, 1)
        self.assertIn('new.json is not a valid policy', r.stderr)


class Explain(Case):
    def test_allowed_denied_and_why(self):
        p = os.path.join(EXAMPLES, 'tenants.json')
        r = ctl('explain', p, '--tenant', 'acme', 'chmod', '/bin/tool', '--mode', '4755', '--type', 'file')
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn('denied by policy rule no-setuid: chmod /bin/tool mode 4755', r.stdout)
        self.assertIn('rule no-setuid at /rules/0, line 5', r.stdout)
        self.assertIn('errno EPERM', r.stdout)
        r = ctl('explain', p, '--tenant', 'acme', 'write', '/releases/v1.tar', '--type', 'file', '--client',
                'spiffe://example.org/tenant/acme/client/ci-1')
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn('allowed by policy rule acme-ci-writes-releases', r.stdout)
        r = ctl('explain', p, '--tenant', 'acme', 'write', '/releases/v1.tar', '--type', 'file', '--client',
                'spiffe://example.org/tenant/acme/client/laptop')
        self.assertEqual(r.returncode, 3)
        self.assertIn('acme-releases-read-only', r.stdout)
        self.assertIn('errno EROFS', r.stdout)
        r = ctl('explain', p, '--tenant', 'acme', 'write', '/big', '--type', 'file', '--size', str(2 << 30))
        self.assertEqual(r.returncode, 0)
        self.assertIn('warned by rule acme-warn-big-files', r.stdout)

    def test_bad_arguments(self):
        p = os.path.join(EXAMPLES, 'default.json')
        self.assertEqual(ctl('explain', p, 'read', '/x').returncode, 2)  # no tenant
        self.assertEqual(ctl('explain', p, '--tenant', 'a', 'delete', '/x').returncode, 2)
        self.assertEqual(ctl('explain', p, '--tenant', 'a', 'read', 'x').returncode, 2)
        self.assertEqual(ctl('explain', p, '--tenant', 'a', '--mode', '99', 'chmod', '/x').returncode, 2)
        self.assertEqual(ctl('explain', p, '--tenant', 'a', '--tenant', 'b', 'read', '/x').returncode, 2)
        self.assertEqual(ctl('explain', p, '--tenant', 'a', '--config', 'c', 'read', '/x').returncode, 2)


# Policies the parser refuses whose fault the schema can express too: the
# schema must refuse them as well (and accept every example).
SCHEMA_BAD = [
    {'rules': []},
    {'version': 2},
    {'version': 1, 'rulez': []},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'alow'}]},
    {'version': 1, 'rules': [{'effect': 'deny'}]},
    {'version': 1, 'rules': [{'id': 'a b', 'effect': 'deny'}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'colour': 1}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'ops': ['delete']}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'ops': []}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'path': 'relative'}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'name': 'a/b'}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'client': 'http://x'}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'type': ['pipe']}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'mode': []}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'size': {'least': 1}}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'uid': -1}]},
    {'version': 1, 'rules': [{'id': 'a', 'effect': 'deny', 'errno': 'ENOENT'}]},
    {'version': 1, 'limits': {'max_file_size': 0}},
    {'version': 1, 'limits': {'max_bytes': 10}},
    {'version': 1, 'tenants': {'Acme': {}}},
    {'version': 1, 'tenants': {'acme': {'rulez': []}}},
    {'version': 1, 'defaults': {}},
]


class Schema(Case):
    def test_schema_and_parser_agree(self):
        with open(os.path.join(SRC, 'policy', 'policy.schema.json')) as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        v = jsonschema.Draft202012Validator(schema)
        for name in ('default.json', 'tenants.json'):
            with open(os.path.join(EXAMPLES, name)) as f:
                v.validate(json.load(f))
        for i, doc in enumerate(SCHEMA_BAD):
            self.assertFalse(v.is_valid(doc), f'schema accepts {doc}')
            r = ctl('check', self.write(f'bad{i}.json', doc))
            self.assertEqual(r.returncode, 1, f'parser accepts {doc}')


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
