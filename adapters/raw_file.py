#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""A qvet exec adapter around a plain raw file, in the Python standard library only.

    qvet soak --target 'exec:python3 adapters/raw_file.py'

It is the smallest complete example of qvet's exec protocol (docs/targets.md): it reads
one request at a time from stdin and answers on stdout. Copy it and replace the class
RawDisk with calls into your engine; the framing (serve) stays as it is.

The disk is the file qvet names in its hello (created, or opened). Discard zeroes the
whole 512-byte sectors inside the range (the granularity the hello reports as
cluster_size); snapshots are copies of the file in a private temporary directory.
"""
import os
import shutil
import struct
import sys
import tempfile

MAGIC = b"QVX1"
REQUEST = struct.Struct("<4sIQQII")     # magic, op, offset, length, flags, payload length
ANSWER = struct.Struct("<4siII")        # magic, status, payload length, reserved
OPS = ["hello", "read", "write", "zero", "discard", "flush", "snapshot-create",
       "snapshot-apply", "snapshot-delete", "snapshot-read", "resize", "reopen", "check",
       "size", "close"]
SECTOR = 512


class Refused(Exception):
    """A documented refusal: the disk is unchanged (status 1)."""


class RawDisk:
    """The implementation under test: a raw file. Each method is one protocol op."""

    def __init__(self, hello):
        self.path = hello["path"]
        if hello.get("mode") == "create":
            with open(self.path, "wb") as f:
                f.truncate(int(hello["size"]))
        self.read_only = hello.get("read_only") == "1"
        self.file = open(self.path, "rb" if self.read_only else "r+b")
        self.snapshot_dir = tempfile.mkdtemp(prefix="qvet-raw-snapshots.")
        self.snapshots = {}
        self.next_id = 1

    def facts(self):
        caps = "" if self.read_only else \
            "write,zero,discard,flush,snapshot,snapshot-read,resize,reopen,check"
        return {"name": "raw_file.py", "caps": caps, "format": "raw",
                "size": self.size(), "cluster_size": SECTOR}

    def size(self):
        return os.fstat(self.file.fileno()).st_size

    def read(self, offset, length):
        self.file.seek(offset)
        data = self.file.read(length)
        return data + bytes(length - len(data))

    def write(self, offset, data):
        self.file.seek(offset)
        self.file.write(data)

    def zero(self, offset, length, may_unmap):
        self.write(offset, bytes(length))

    def discard(self, offset, length):
        first = -(-offset // SECTOR) * SECTOR
        end = (offset + length) // SECTOR * SECTOR
        if end > first:
            self.write(first, bytes(end - first))

    def flush(self):
        self.file.flush()
        os.fsync(self.file.fileno())

    def snapshot_create(self, name):
        self.flush()
        sid = str(self.next_id)
        self.next_id += 1
        copy = os.path.join(self.snapshot_dir, sid)
        shutil.copyfile(self.path, copy)
        self.snapshots[sid] = copy
        return sid

    def snapshot_apply(self, sid):
        self.file.close()
        shutil.copyfile(self.snapshots[sid], self.path)
        self.file = open(self.path, "r+b")

    def snapshot_delete(self, sid):
        os.remove(self.snapshots.pop(sid))

    def snapshot_read(self, sid, offset, length):
        with open(self.snapshots[sid], "rb") as f:
            f.seek(offset)
            data = f.read(length)
        return data + bytes(length - len(data))

    def resize(self, size):
        self.file.flush()
        self.file.truncate(size)

    def reopen(self):
        self.file.close()
        self.file = open(self.path, "rb" if self.read_only else "r+b")

    def check(self):
        return "0 0 0\n"

    def close(self):
        self.file.close()
        shutil.rmtree(self.snapshot_dir, ignore_errors=True)


def read_exactly(stream, n):
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def answer(out, status, payload=b""):
    out.write(ANSWER.pack(MAGIC, status, len(payload), 0) + payload)
    out.flush()


def dispatch(disk, op, offset, length, flags, payload):
    """One request: returns the answer's payload (bytes) or raises."""
    text = payload.decode(errors="replace")
    if op == "read":
        return disk.read(offset, length)
    if op == "write":
        disk.write(offset, payload)
    elif op == "zero":
        disk.zero(offset, length, bool(flags & 1))
    elif op == "discard":
        disk.discard(offset, length)
    elif op == "flush":
        disk.flush()
    elif op == "snapshot-create":
        return disk.snapshot_create(text).encode()
    elif op == "snapshot-apply":
        disk.snapshot_apply(text)
    elif op == "snapshot-delete":
        disk.snapshot_delete(text)
    elif op == "snapshot-read":
        return disk.snapshot_read(text, offset, length)
    elif op == "resize":
        disk.resize(length)
    elif op == "reopen":
        disk.reopen()
    elif op == "check":
        return disk.check().encode()
    elif op == "size":
        return struct.pack("<Q", disk.size())
    else:
        raise OSError(95, "operation not supported: " + op)
    return b""


def serve(make_disk, stdin=None, stdout=None):
    """Answers qvet's requests until close; make_disk(hello dict) builds the disk."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    disk = None
    while True:
        try:
            magic, op_no, offset, length, flags, n = REQUEST.unpack(
                read_exactly(stdin, REQUEST.size))
            payload = read_exactly(stdin, n)
        except EOFError:
            break
        if magic != MAGIC or op_no >= len(OPS):
            answer(stdout, -71, b"not a qvet request")
            break
        op = OPS[op_no]
        try:
            if op == "hello":
                hello = dict(line.split("=", 1) for line in payload.decode().splitlines())
                disk = make_disk(hello)
                facts = "".join("%s=%s\n" % kv for kv in disk.facts().items())
                answer(stdout, 0, facts.encode())
            elif op == "close":
                disk.close()
                answer(stdout, 0)
                break
            else:
                answer(stdout, 0, dispatch(disk, op, offset, length, flags, payload))
        except Refused as e:
            answer(stdout, 1, str(e).encode())
        except KeyError as e:
            answer(stdout, -2, ("no snapshot %s" % e).encode())
        except OSError as e:
            answer(stdout, -(e.errno or 5), str(e).encode())


if __name__ == "__main__":
    serve(RawDisk)
