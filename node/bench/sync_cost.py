#!/usr/bin/env python3
"""What one log sync costs on this machine's disk, in wall time and in this process's CPU.

Appends a 2,000-byte record to files pre-filled with zeros (as the raft log's zero
top-ups leave them) and syncs, ROUNDS times per mode:
  - one file, fdatasync after each append (one replica's log);
  - four files, one fdatasync each per round (four groups' logs on one node, as before
    session 17);
  - four files, one syncfs per round (a node-wide group commit across its logs; rejected:
    syncfs flushes the whole filesystem);
  - one file taking all four appends, one fdatasync per round (one log per node, as
    raft/src/storage/node_log.rs does since session 17).

    python3 node/bench/sync_cost.py [DIR]     # DIR on the disk to measure (default: .)

Prints figures; asserts nothing. Removes its files.
"""
import ctypes
import os
import sys
import tempfile
import time

ROUNDS = 400
FILES = 4
RECORD = b"x" * 2000
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "."
    with tempfile.TemporaryDirectory(dir=base, prefix="sync-cost-") as d:
        fds = []
        for i in range(FILES):
            fd = os.open(os.path.join(d, f"log{i}"), os.O_RDWR | os.O_CREAT, 0o644)
            os.pwrite(fd, b"\0" * (4 << 20), 0)
            os.fsync(fd)
            fds.append(fd)
        offsets = [0] * FILES

        def append(i):
            os.pwrite(fds[i], RECORD, offsets[i])
            offsets[i] += len(RECORD)

        def syncfs():
            if libc.syncfs(fds[0]) != 0:
                raise OSError(ctypes.get_errno(), "syncfs")

        def one_file():
            append(0)
            os.fdatasync(fds[0])

        def four_fdatasyncs():
            for i in range(FILES):
                append(i)
                os.fdatasync(fds[i])

        def four_files_one_syncfs():
            for i in range(FILES):
                append(i)
            syncfs()

        def one_log_per_node():
            for _ in range(FILES):
                append(0)
            os.fdatasync(fds[0])

        modes = [
            ("1 file, 1 fdatasync", one_file),
            ("4 files, 4 fdatasyncs", four_fdatasyncs),
            ("4 files, 1 syncfs", four_files_one_syncfs),
            ("1 file, 4 appends, 1 fdatasync", one_log_per_node),
        ]
        print(f"directory {base}, {ROUNDS} rounds per mode, each mode twice, interleaved")
        for name, step in modes * 2:
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(ROUNDS):
                step()
            wall = (time.perf_counter() - wall) / ROUNDS * 1e3
            cpu = (time.process_time() - cpu) / ROUNDS * 1e6
            print(f"{name:32} {wall:6.3f} ms wall, {cpu:5.0f} µs CPU per round")
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    main()
