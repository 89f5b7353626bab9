#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""A deliberately broken exec adapter: adapters/raw_file.py that drops every Nth write
(answers "done" without writing). Each dropped write's offset and length are appended
to the file named by the second argument, so the test can hold qvet's report to them.

    broken_adapter.py N LOG
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "adapters"))
import raw_file  # noqa: E402

every, log = int(sys.argv[1]), sys.argv[2]


class DroppingDisk(raw_file.RawDisk):
    writes = 0

    def write(self, offset, data):
        DroppingDisk.writes += 1
        if DroppingDisk.writes % every == 0:
            with open(log, "a") as f:
                f.write("%d %d\n" % (offset, len(data)))
            return
        super().write(offset, data)


raw_file.serve(DroppingDisk)
