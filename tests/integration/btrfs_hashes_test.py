#!/usr/bin/env python3
"""The protocol's hashes and checksums are the ones btrfs itself computes.

Creates a btrfs image file, loop-mounts it, lets the kernel create entries
with awkward names, xattrs and a multi-block file, unmounts, and reads the
keys btrfs wrote with `btrfs inspect-internal dump-tree`. Then checks:
  - every DIR_ITEM offset equals `crfsctl hash NAME` (btrfs_name_hash),
  - every XATTR_ITEM offset equals `crfsctl hash XATTR-NAME`,
  - every data checksum in the csum tree equals `crfsctl csum FILE` (full
    blocks; btrfs checksums a short last block zero-padded, the protocol
    checksums only the bytes it carries).
Names are matched to items by inode number (from our own stat), so the test
never has to parse names out of dump-tree. Needs root (mount, losetup).

usage: btrfs_hashes_test.py CRFSCTL
"""
import os
import random
import re
import subprocess
import sys
import tempfile

CRFSCTL = sys.argv[1]


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw).stdout


def crfs_hash(name: bytes) -> int:
    out = run(CRFSCTL, 'hash', name)
    return int(out.split(b'\t', 1)[0])


def names():
    rng = random.Random(2008)
    yield b'default'  # the btrfs root tree's own "default" entry hashes to 2378154706
    yield b'some-dir'
    yield b'with space'
    yield b'.hidden'
    yield b'x' * 255
    yield 'héllo-wörld-日本語'.encode()
    yield b'\xff\xfe-not-utf8'
    yield b'-'
    alphabet = bytes(c for c in range(1, 256) if c not in (ord('/'),))
    for i in range(200):
        yield bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 40))).replace(b'.', b'_') + b'-%d' % i


def main():
    work = tempfile.mkdtemp(prefix='crfs-hash-test.')
    img, mnt = os.path.join(work, 'btrfs.img'), os.path.join(work, 'mnt')
    os.mkdir(mnt)
    with open(img, 'wb') as f:
        f.truncate(256 << 20)
    run('mkfs.btrfs', '-q', img)
    loop = run('losetup', '--find', '--show', img).decode().strip()
    mounted = False
    try:
        run('mount', '-o', 'noatime', loop, mnt)
        mounted = True
        by_ino, xattr_by_ino = {}, {}
        for i, name in enumerate(names()):
            path = os.path.join(mnt.encode(), name)
            if i % 3 == 0:
                os.mkdir(path)
            else:
                open(path, 'wb').close()
            ino = os.stat(path).st_ino
            by_ino[ino] = name
            if i % 5 == 0:
                xname = b'user.crfs-test-%d' % i
                os.setxattr(path, xname, b'v' * i)
                xattr_by_ino[ino] = xname
        data_path = os.path.join(mnt, 'blocks')
        with open(data_path, 'wb') as f:
            rng = random.Random(7)
            f.write(bytes(rng.getrandbits(8) for _ in range(6 * 4096)))
        data_ino = os.stat(data_path).st_ino
        want_csums = [int(l.split()[1], 16) for l in run(CRFSCTL, 'csum', data_path).split(b'\n') if l]
        run('umount', mnt)
        mounted = False

        dump = run('btrfs', 'inspect-internal', 'dump-tree', '-t', 'fs', loop)
        dir_items = re.findall(rb'key \(256 DIR_ITEM (\d+)\)[^\n]*\n\s+location key \((\d+) INODE_ITEM 0\)', dump)
        xattrs = re.findall(rb'key \((\d+) XATTR_ITEM (\d+)\)', dump)
        extent = re.search(rb'key \(%d EXTENT_DATA 0\)[^\n]*\n[^\n]*\n\s+extent data disk byte (\d+) nr (\d+)'
                           % data_ino, dump)
        csum_dump = run('btrfs', 'inspect-internal', 'dump-tree', '-t', 'csum', '--csum-items', loop)
    finally:
        if mounted:
            subprocess.run(['umount', mnt])
        subprocess.run(['losetup', '-d', loop])
        subprocess.run(['rm', '-rf', work])

    failures = 0
    checked_dirs = 0
    for h, ino in dir_items:
        ino = int(ino)
        if ino == data_ino:
            continue
        name = by_ino[ino]
        got = crfs_hash(name)
        checked_dirs += 1
        if got != int(h):
            print(f'DIR_ITEM {name!r}: btrfs {int(h)} crfs {got}')
            failures += 1
    checked_x = 0
    for ino, h in xattrs:
        xname = xattr_by_ino[int(ino)]
        got = crfs_hash(xname)
        checked_x += 1
        if got != int(h):
            print(f'XATTR_ITEM {xname!r}: btrfs {int(h)} crfs {got}')
            failures += 1
    if not extent:
        print('no regular extent found for the data file')
        return 1
    disk = int(extent.group(1))
    btrfs_csums = {int(a): int.from_bytes(bytes.fromhex(c.decode()), 'little')
                   for a, c in re.findall(rb'\[(\d+)\] 0x([0-9a-f]{8})', csum_dump)}
    for i, want in enumerate(want_csums):
        got = btrfs_csums.get(disk + i * 4096)
        if got != want:
            print(f'data block {i}: btrfs {got} crfs {want}')
            failures += 1

    expected_dirs = len(by_ino)
    print(f'checked {checked_dirs} DIR_ITEM hashes (created {expected_dirs}), {checked_x} XATTR_ITEM hashes '
          f'(set {len(xattr_by_ino)}), {len(want_csums)} data block checksums; {failures} mismatches')
    if checked_dirs != expected_dirs or checked_x != len(xattr_by_ino) or len(want_csums) != 6:
        print('FAIL: did not find every item the test created')
        return 1
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
