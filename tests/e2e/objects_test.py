#!/usr/bin/env python3
"""End-to-end tests of objectids: every name of an object, and a bounded object table.

The fixture is crfsd_test's (a btrfs image on a loop device, a CA, tenants
acme and beta, crfsd by PID). An objectid a client holds must keep naming
its object while the object lives (a FUSE or kernel client caches them):
  - an object with several names (hard links) reports every one as
    INODE_REF items, keeps answering when any of them goes, and names made
    or removed behind crfsd's back are found (btrfs's back references);
  - objectids answer after a restart of crfsd, before anything is listed;
  - access through any name: a user who can search the path to one of the
    names reaches the object, not otherwise;
  - the table crfsd keeps is bounded (limits.max_known_objects_per_tenant):
    past it entries are dropped and relearned on demand, never a wrong
    object and never ENOENT for a live one.
Needs root.

usage: objects_test.py BUILD_DIR SOURCE_DIR [unittest args]
"""
import os
import re
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crfsd_test as base  # noqa: E402  (parses BUILD_DIR SOURCE_DIR)
import reliability_test as rel  # noqa: E402
from crfsd_test import FINAL_REPLY, ITEM_QUERY, ITEM_RANGE, frame, key, recv_frame  # noqa: E402
from transactions_test import W, acme, crfs, setUpModule, tearDownModule  # noqa: E402,F401


def refs(oid):
    """The INODE_REF names the server reports for objectid `oid`: {(parent, index, name)}."""
    out, parent = set(), None
    for line in crfs('items', f'@{oid}').stdout.splitlines():
        m = re.search(r'key \((\d+)\.r\.(\d+)\)', line)
        if m:
            parent = int(m.group(2))
            continue
        m = re.search(r"iref index (\d+) len \d+ name '(.*)'", line)
        if m:
            out.add((parent, int(m.group(1)), m.group(2)))
        elif 'key (' in line:
            parent = None
    return out


def ino(*p):
    return os.lstat(acme(*p)).st_ino


def put(path, text):
    src = W().path('objects-src')
    with open(src, 'w') as f:
        f.write(text)
    crfs('put', src, path)


class EveryName(unittest.TestCase):
    def test_every_name_is_reported_and_any_one_keeps_the_object(self):
        crfs('mkdir', '/n1')
        crfs('mkdir', '/n2')
        put('/n1/f', 'linked\n')
        crfs('ln', '/n1/f', '/n2/g')
        crfs('ln', '/n1/f', '/n1/f2')
        oid, n1, n2 = ino('n1', 'f'), ino('n1'), ino('n2')
        got = refs(oid)
        self.assertEqual({(p, n) for p, _, n in got}, {(n1, 'f'), (n1, 'f2'), (n2, 'g')})
        self.assertTrue(all(i >= 2 for _, i, _ in got), got)  # real directory indexes
        self.assertEqual(len({i for p, i, _ in got if p == n1}), 2)
        # Each crfs run is a new session: none has looked anything up.
        crfs('rm', '/n2/g')
        self.assertEqual(crfs('cat', f'@{oid}').stdout, 'linked\n')
        self.assertEqual({n for _, _, n in refs(oid)}, {'f', 'f2'})
        crfs('rm', '/n1/f')  # the name it was first seen by
        self.assertIn('Links: 1', crfs('stat', f'@{oid}').stdout)
        self.assertEqual({(p, n) for p, _, n in refs(oid)}, {(n1, 'f2')})
        crfs('rm', '/n1/f2')
        r = crfs('stat', f'@{oid}', check=False)
        self.assertIn('ENOENT', r.stderr)  # gone with its last name
        crfs('rm', '-r', '/n1')
        crfs('rm', '-r', '/n2')

    def test_names_made_and_removed_behind_crfsds_back(self):
        crfs('mkdir', '/b1')
        put('/b1/f', 'behind\n')
        oid = ino('b1', 'f')
        self.assertEqual({n for _, _, n in refs(oid)}, {'f'})
        # The admin links it into a directory crfsd never listed, then removes the
        # name crfsd knows.
        os.makedirs(acme('b2', 'deep'))
        base.give(acme('b2'))
        os.link(acme('b1', 'f'), acme('b2', 'deep', 'h'))
        self.assertEqual({(p, n) for p, _, n in refs(oid)}, {(ino('b1'), 'f'), (ino('b2', 'deep'), 'h')})
        os.unlink(acme('b1', 'f'))
        self.assertEqual(crfs('cat', f'@{oid}').stdout, 'behind\n')
        self.assertEqual({(p, n) for p, _, n in refs(oid)}, {(ino('b2', 'deep'), 'h')})
        crfs('rm', '-r', '/b1')
        crfs('rm', '-r', '/b2')

    def test_objectids_answer_after_a_restart_before_any_listing(self):
        os.makedirs(acme('r1', 'r2'))
        with open(acme('r1', 'r2', 'file'), 'w') as f:
            f.write('after restart\n')
        base.give(acme('r1'))
        oid = ino('r1', 'r2', 'file')
        rel.restart_with(rel.write_config('same-port.json', listen=f'127.0.0.1:{W().port}'))
        self.assertEqual(crfs('cat', f'@{oid}').stdout, 'after restart\n')
        self.assertEqual(refs(oid), {(ino('r1', 'r2'), refs(oid).pop()[1], 'file')})
        r = crfs('stat', '@999999', check=False)
        self.assertIn('ENOENT', r.stderr)  # no such object in the tenant
        undo = os.lstat(acme('.crfs-undo')).st_ino
        r = crfs('stat', f'@{undo}', check=False)
        self.assertIn('ENOENT', r.stderr)  # crfsd's own, not the tenant's
        crfs('rm', '-r', '/r1')

    def test_access_through_any_searchable_name(self):
        crfs('mkdir', '/locked')
        crfs('mkdir', '/public')
        put('/locked/f', 'reachable\n')
        crfs('chmod', '644', '/locked/f')
        crfs('chmod', '700', '/locked')
        oid = ino('locked', 'f')
        r = crfs('cat', f'@{oid}', client='carol', check=False)
        self.assertIn('EACCES', r.stderr)  # the only name is in a directory she cannot search
        crfs('ln', '/locked/f', '/public/g')
        self.assertEqual(crfs('cat', f'@{oid}', client='carol').stdout, 'reachable\n')
        crfs('rm', '/public/g')
        r = crfs('cat', f'@{oid}', client='carol', check=False)
        self.assertIn('EACCES', r.stderr)
        crfs('rm', '-r', '/locked')
        crfs('rm', '-r', '/public')


class BoundedTable(unittest.TestCase):
    """With limits.max_known_objects_per_tenant = 64, listing 400 entries makes the table
    drop entries; every objectid still answers with its own object."""
    N = 400

    @classmethod
    def setUpClass(cls):
        rel.restart_with(rel.write_config('bounded.json', limits__max_known_objects_per_tenant=64,
                                          listen=f'127.0.0.1:{W().port}'))

    @classmethod
    def tearDownClass(cls):
        rel.restart_with(rel.write_config('same-port.json', listen=f'127.0.0.1:{W().port}'))

    def test_every_objectid_answers_after_the_table_dropped_it(self):
        rel.make_flat_tree(acme('many'), self.N)
        base.give(acme('many'))
        names = sorted(os.listdir(acme('many')))
        self.assertEqual(len(crfs('ls', '/many').stdout.splitlines()), self.N)
        self.assertIn('object table over 64 names', W().logtext())
        oids = {os.lstat(acme('many', n)).st_ino: n for n in names}
        s = base.session()
        for batch in range(0, len(oids), 50):
            chunk = list(oids)[batch:batch + 50]
            for oid in chunk:
                q = key(oid, 1, 0) + key(oid, 1, 0) + key(oid, 12, 2**64 - 1) + struct.pack('<I', 65536)
                s.sendall(frame(ITEM_QUERY, q, oid))
            for oid in chunk:
                got_refs = []
                while True:
                    req_id, info, typ, payload = recv_frame(s)
                    self.assertEqual(req_id, oid)
                    if typ == FINAL_REPLY:
                        self.assertEqual(info, 0, payload)
                        break
                    self.assertEqual(typ, ITEM_RANGE)
                    nr = struct.unpack_from('<I', payload, 34)[0]
                    for i in range(nr):
                        koid, ktype, koff, off, size = struct.unpack_from('<QBQII', payload, 42 + i * 25)
                        self.assertEqual(koid, oid)
                        if ktype == 12:
                            n = payload[off + 10:off + size]
                            got_refs.append(n.decode())
                self.assertEqual(got_refs, [oids[oid]], f'objectid {oid}')
        s.close()
        crfs('rm', '-r', '/many')
        self.assertFalse(os.path.exists(acme('many')))


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
